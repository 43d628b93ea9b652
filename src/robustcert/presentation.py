"""The results as a reader sees them: the wide table of a method rounded to what its numbers support,
its paper-shaped compact table, and both rendered as HTML for the report.

``all.tsv`` and :func:`robustcert.results.wide` keep full precision; this module only presents them:

- :func:`present` — the wide view less the identity columns that are the same in every row (returned
  apart, as the table's constants), each interval as one ``[lo, hi]`` cell after the metrics, every
  fraction to :data:`DECIMALS` decimals;
- :func:`compact` — one small table per method in the shape of its paper (:data:`COMPACT`): shares as
  percentages with one decimal;
- :func:`render_html` — both tables, the constants and the meaning of every column, as one HTML page.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from robustcert.results import KEYS, SD, parse_params, wide

DECIMALS = 3  # a share of 360 test points moves in steps of 0.0028: three decimals hold it
INTERVAL = ":ci95"  # the suffix of a certified share's interval, as one "[lo, hi]" cell
LOW, HIGH = ":ci_low", ":ci_high"
# the parameters that tell experiments of one defense apart (each its own row and headline cell)
VARIANT_PARAMS = ("ablation", "training", "k", "d", "sigma_train", "sigma", "victim")
# identity columns the reader never needs in a method's table: the method is the table's, the attack
# type follows from the attack
REDUNDANT = ("method", "attack_type")
REPLICATES = ("seeds", "n_seeds")  # kept even when constant: they say a number is a mean of replicates


@dataclass(frozen=True)
class Column:
    """A column of a compact table: the wide table's ``source`` column (or every column matching it,
    ``at`` taken from the text after ``=``), its ``header`` (``{at}`` filled), and how its numbers
    read: ``percent`` (a share × 100, one decimal), ``decimal`` (:data:`DECIMALS`) or ``count``."""

    source: str
    header: str
    kind: str = "percent"


# Each method's compact table, in the shape of its paper's: Cohen et al.'s certified accuracy at radii,
# the DPA paper's median certificate and certified accuracy at budgets, BackdoorBench's C-Acc/ASR/RA/DER.
_BACKDOORBENCH = (Column("accuracy", "C-Acc (%)"), Column("asr", "ASR (%)"), Column("ra", "RA (%)"),
                  Column("der", "DER (%)"))
_AGGREGATION = (Column("accuracy", "clean acc. (%)"), Column("median_cert", "median cert.", "count"),
                Column("cert_acc@poison_samples=*", "cert. acc. at {at} poisons (%)"),
                Column("poison_size", "attack (ins.+del.)", "count"),
                Column("certified_vs_attack", "cert. acc. at attack (%)"), Column("asr", "ASR (%)"))
# the patch defenses' clean accuracy is their first column, so their BackdoorBench columns start at ASR
_PATCH_ATTACK = (Column("attack_acc@patch_size=*", "acc. under {at}×{at} attack (%)"),
                 Column("undefended_attack_acc@patch_size=*", "undefended under {at}×{at} attack (%)"))
COMPACT: dict[str, tuple[Column, ...]] = {
    "dpa": _AGGREGATION,
    "fa": _AGGREGATION,
    "smoothing": (Column("cert_acc@l2=*", "r = {at} (%)"), Column("acr", "ACR", "decimal"),
                  Column("accuracy", "PREDICT acc. (%)")),
    "bilevel": (Column("acr_clean", "ACR clean", "decimal"), Column("acr", "ACR poisoned", "decimal"),
                Column("acr_drop", "ACR drop (%)")),
    "rab": (Column("accuracy", "clean acc. (%)"), Column("cert_acc@l2=*", "cert. acc. r > {at} (%)"),
            Column("total_trigger_l2", "attack L2", "decimal"),
            Column("certified_vs_attack", "cert. acc. at attack (%)"), Column("asr", "ASR (%)"),
            Column("der", "DER (%)")),
    "patch": (Column("accuracy", "clean acc. (%)"), Column("cert_acc@patch_size=*", "cert. acc. {at}×{at} (%)"),
              *_PATCH_ATTACK, Column("trigger_side", "trigger side", "count"),
              Column("trigger_within_certified", "trigger within cert. (%)"), *_BACKDOORBENCH[1:]),
    "patchcleanser": (Column("accuracy", "clean acc. (%)"), Column("cert_acc@patch_size=*", "cert. acc. {at}×{at} (%)"),
                      *_PATCH_ATTACK, Column("trigger_within_certified", "trigger within cert. (%)"),
                      *_BACKDOORBENCH[1:]),
    "undefended": _BACKDOORBENCH[:3],
    "detection": (*_BACKDOORBENCH[:2], Column("adversarial_accuracy", "adv. acc. (%)"),
                  Column("true_target", "true target", "count"), Column("n_flagged", "labels flagged", "count"),
                  Column("detected", "detected (target flagged)", "count"),
                  Column("false_positive", "another label flagged", "count")),
    "backdoorbench": (Column("clean_accuracy_attack", "C-Acc undefended (%)"), Column("clean_accuracy_defense", "C-Acc (%)"),
                      Column("asr_attack", "ASR undefended (%)"), Column("asr_defense", "ASR (%)"),
                      Column("ra_attack", "RA undefended (%)"), Column("ra_defense", "RA (%)"), Column("der", "DER (%)"),
                      Column("rir", "RIR (%)")),
    "attacks": (Column("poisoned", "samples changed", "count"), Column("poison_fraction", "of the training set (%)"),
                Column("symmetric_difference", "ins.+del.", "count"), Column("poison_l2", "L2 of the change", "decimal"),
                Column("trigger_area", "trigger pixels", "count")),
}

# what a metric (the part of a column before "@") is; docs/metrics.md defines each exactly
MEANINGS = {
    "n_test": "test points evaluated", "accuracy": "clean accuracy (share of test points predicted correctly)",
    "base_accuracy": "mean accuracy of the base classifier over ablated positions",
    "base_accuracy_mean": "mean test accuracy of the base models",
    "cert_acc": "certified accuracy (correct and certified at least this far)",
    "cert_acc_clean": "certified accuracy of the victim trained on clean data",
    "cert_acc_attacked": "certified accuracy on the test points of the empirical patch attack",
    "clean_acc": "clean accuracy with the mask set of this patch size",
    "attacked_clean_acc": "clean accuracy on the test points of the patch attack",
    "attack_acc": "accuracy under the empirical patch attack of this size",
    "undefended_attacked_clean_acc": "the undefended model's clean accuracy on the test points of the patch attack",
    "undefended_attack_acc": "the undefended model's accuracy under the patch attack of this size",
    "median_cert": "median certified robustness (the DPA paper's: largest budget with certified accuracy ≥ 0.5)",
    "median_cert_ref": "median_cert + 1, the count the DPA reference code prints",
    "poison_size": "insertions plus deletions the attack made (2 × samples changed)",
    "certified_vs_attack": "certified accuracy at the attack's own budget",
    "asr": "attack success rate (triggered non-target images predicted as the target)",
    "asr_all": "attack success rate over all triggered images (TrojanZoo's)",
    "asr_base_mean": "mean attack success rate of the base models",
    "ra": "robust accuracy (triggered non-target images predicted as their true label)",
    "certified_ra": "triggered non-target images predicted correctly and certified for the attack's budget",
    "der": "defense effectiveness rate against the undefended model (BackdoorBench)",
    "rir": "robust improvement rate against the undefended model (BackdoorBench)",
    "abstain": "share of test points PREDICT abstains on", "certify_abstain": "share CERTIFY abstains on",
    "acr": "average certified radius", "acr_clean": "average certified radius of the clean victim",
    "acr_drop": "relative ACR drop, 1 − ACR(poisoned) / ACR(clean)",
    "certified_ratio": "share of test points with a positive certified radius",
    "poison_samples": "training samples the attack changed", "poison_l2_train": "L2 norm of the training-set change",
    "total_trigger_l2": "L2 norm of the whole trigger (training set and test input)",
    "trigger_side": "side of the trigger (pixels)",
    "trigger_within_certified": "share of test points certified against a patch as large as the trigger",
    "attack_points": "test points attacked",
    "adversarial_accuracy": "accuracy under the PGD attack of training", "clusters": "clusters of the label",
    "flagged": "label flagged (1) or not (0)", "n_flagged": "labels flagged",
    "true_target": "the attack's target label", "detected": "the backdoor's target label is flagged (1) or not (0)",
    "false_positive": "a label other than the target is flagged (1) or not (0)",
    "poisoned": "training samples changed", "poison_fraction": "their share of the training set",
    "target_class_fraction": "their share of the target class",
    "symmetric_difference": "insertions plus deletions", "labels_changed": "changed samples with a new label",
    "poison_l2": "L2 norm of the whole training-set change", "poison_linf": "largest change of one pixel",
    "trigger_area": "pixels the trigger covers", "trigger_l2": "mean L2 norm of the test trigger",
    "trigger_linf": "mean L∞ norm of the test trigger",
    "dataset": "dataset", "attack": "attack (config name)", "defense": "defense (config name)",
    "certificate": "certificate or voting rule", "seeds": "the seeds of the replicates", "n_seeds": "replicates",
    "k": "partitions", "d": "subsets per sample (FA)", "sigma_train": "training noise σ", "sigma_certify": "certification noise σ",
    "sigma": "noise σ", "ablation": "ablation (kind, size, count)", "skip": "every skip-th test point",
    "max": "at most this many test points", "test_indices": "given test indices",
    "n0": "Monte Carlo samples to select the class", "n": "Monte Carlo samples to estimate it", "alpha": "failure probability",
    "epochs": "training epochs", "arch": "architecture", "source": "source of the data", "delta": "L2 norm of the trigger",
    "baseline": "the undefended model compared with",
    "clean_accuracy_attack": "clean accuracy of the undefended model", "clean_accuracy_defense": "clean accuracy of the defense",
    "asr_attack": "attack success rate against the undefended model", "asr_defense": "attack success rate against the defense",
    "ra_attack": "robust accuracy of the undefended model", "ra_defense": "robust accuracy of the defense",
}


def present(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The wide view of ``rows`` (:func:`robustcert.results.wide`) as a reader's table, and the
    identity columns it leaves out because they are the same in every row (name → value).

    Identity columns (the keys and parameters) that never vary are left out (with :data:`REDUNDANT`
    ones), but not :data:`REPLICATES`; each certified share's Clopper–Pearson interval is one ``[lo, hi]`` cell (``<column>:ci95``)
    after all metrics; fractions are rounded to :data:`DECIMALS` decimals."""
    table = wide(rows)
    params = {name for text in rows["params"].unique() for name in parse_params(text)}
    identity = [c for c in table.columns if c in KEYS or c in params or c in REPLICATES]
    constant = {c: table[c].iloc[0] for c in identity
                if len(table) and table[c].nunique(dropna=False) == 1 and c not in REPLICATES}
    keep = [c for c in identity if c not in constant and c not in REDUNDANT]
    if not keep:  # a single experiment still says which it is
        keep = [c for c in ("attack", "defense", "certificate") if c in table]
    metrics = [c for c in table.columns if c not in identity and not c.endswith((LOW, HIGH))]
    intervals = {f"{c[:-len(LOW)]}{INTERVAL}": _interval(table[c], table[f"{c[:-len(LOW)]}{HIGH}"])
                 for c in table.columns if c.endswith(LOW)}
    shown = pd.concat([table[keep], table[metrics].apply(round_column), pd.DataFrame(intervals, index=table.index)],
                      axis=1)
    return shown, {c: _text(v) for c, v in constant.items() if c not in REDUNDANT}


def round_column(column: pd.Series) -> pd.Series:
    """Whole numbers as they are; other numbers to :data:`DECIMALS` decimals (all of the column's
    with the same count of decimals, as text); text as it is."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.isna().all() or not numbers[column.notna()].notna().all():
        return column
    known = numbers.dropna()
    if (known % 1 == 0).all():
        return numbers.astype("Int64")
    return numbers.map(lambda v: "" if pd.isna(v) else f"{v:.{DECIMALS}f}")


def _interval(low: pd.Series, high: pd.Series) -> pd.Series:
    return pd.Series([f"[{lo:.{DECIMALS}f}, {hi:.{DECIMALS}f}]" if not (pd.isna(lo) or pd.isna(hi)) else ""
                      for lo, hi in zip(low, high)], index=low.index)


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compact(shown: pd.DataFrame, method: str) -> pd.DataFrame:
    """The paper-shaped table of a method (:data:`COMPACT`) from its presented wide table
    (:func:`present`): the experiment's names and variant parameters (:data:`VARIANT_PARAMS`) that
    the wide table keeps, then the method's columns that it has, shares as percentages with one decimal.
    A method without a compact shape gets its identity columns alone."""
    identity = [c for c in shown.columns if (c in KEYS and c not in REDUNDANT) or c in VARIANT_PARAMS]
    columns = {c: shown[c] for c in identity}
    for spec in COMPACT.get(method, ()):
        for source, at in _matching(spec.source, shown.columns):
            columns[spec.header.format(at=at)] = _as(spec.kind, shown[source])
    return pd.DataFrame(columns, index=shown.index)


def _matching(pattern: str, columns: Iterable[str]) -> list[tuple[str, str]]:
    """The columns a compact column takes: ``name`` exactly, or ``name@axis=*`` each point of the axis."""
    if not pattern.endswith("*"):
        return [(pattern, "")] if pattern in columns else []
    prefix = pattern[:-1]
    return [(c, c[len(prefix):]) for c in columns if c.startswith(prefix) and ":" not in c[len(prefix):]]


def _as(kind: str, column: pd.Series) -> pd.Series:
    """A column of the presented table as the compact table shows it."""
    numbers = pd.to_numeric(column.replace("", float("nan")), errors="coerce")
    if kind == "percent":
        return numbers.map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
    if kind == "count":
        return numbers.map(lambda v: "" if pd.isna(v) else _text(float(v)) if float(v).is_integer() else f"{v:.1f}")
    return numbers.map(lambda v: "" if pd.isna(v) else f"{v:.{DECIMALS}f}")


def meaning(column: str) -> str:
    """What a column of a presented table holds, from :data:`MEANINGS` (``metric@axis=at``: the metric
    at that point of its axis; ``:sd`` its standard deviation over seeds; ``:ci95`` its interval)."""
    for suffix, text in ((SD, "standard deviation over seeds of "), (INTERVAL, "95% Clopper–Pearson interval of ")):
        if column.endswith(suffix):
            return text + meaning(column[: -len(suffix)])
    name, _, point = column.partition("@")
    base = MEANINGS.get(name, name.replace("_", " "))
    if point:
        axis, _, at = point.partition("=")
        return f"{base}, at {axis.replace('_', ' ')} = {at}"
    return base


def render_html(title: str, shown: pd.DataFrame, constants: Mapping[str, str], paper: pd.DataFrame,
                intro: str = "") -> str:
    """One HTML page: the title, ``intro``, the constants, the compact table, the wide table and a
    glossary of the wide table's columns. Empty cells show as "–" (the number is not defined there)."""
    same = "; ".join(f"{html.escape(k)} = {html.escape(v)}" for k, v in constants.items())
    glossary = "".join(f"<dt>{html.escape(c)}</dt><dd>{html.escape(meaning(c))}</dd>" for c in shown.columns)
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(intro)}</p>" if intro else "",
             f"<p><b>The same in every row:</b> {same}</p>" if same else "",
             "<h3>In the paper's shape</h3>", _table(paper),
             "<h3>Every number (the wide table)</h3>", _table(shown),
             "<h3>Columns</h3>", f"<dl>{glossary}</dl>"]
    return _PAGE.format(title=html.escape(title), body="\n".join(p for p in parts if p))


def render_claims_html(claims: pd.DataFrame) -> str:
    """The claims table (:data:`robustcert.claims.CLAIMS`) as one HTML page: per claim the paper, the
    claim, the paper's number and ours (3 decimals, with its 95% interval where it has one) and the
    verdict with its rule, then what ours measures and the paper's setting."""
    def number(value: float) -> str:
        return "–" if pd.isna(value) else f"{value:.3f}"

    shown = pd.DataFrame({
        "paper": claims["paper"], "claim": claims["claim"], "paper's number": claims["paper_number"],
        "ours": claims["ours"].map(number),
        "95% interval": [f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "–"
                         for lo, hi in zip(claims["ours_ci_low"], claims["ours_ci_high"])],
        "verdict": claims["verdict"], "rule": claims["rule"], "ours measures": claims["measured"],
        "paper's setting": claims["paper_setting"]})
    intro = ("Each row sets a paper's claim beside this run's number and says whether it holds, by the rule "
             "in its row. The setting differs from the paper's (fewer training images, smaller models, fewer "
             "epochs): docs/reproduction.md names every gap and why a claim that does not hold here fails.")
    body = ["<h2>The papers' claims beside this run</h2>", f"<p>{html.escape(intro)}</p>", _table(shown)]
    return _PAGE.format(title="The papers' claims", body="\n".join(body))


def _table(frame: pd.DataFrame) -> str:
    """An HTML table: a header row, numbers right-aligned, an empty cell as "–"."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA \
                or str(value) in ("", "nan", "<NA>") else str(value)
            numeric = re.fullmatch(r"-?[\d.]+(e-?\d+)?|\[.*\]|–", text) is not None
            cells.append(f'<td class="{"n" if numeric else "t"}">{html.escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ background: #f0f0f0; position: sticky; top: 0; font-weight: 600; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tbody tr:nth-child(even) {{ background: #fafafa; }}
dt {{ font-family: monospace; float: left; clear: left; width: 22em; }}
dd {{ margin-left: 23em; }}
</style></head>
<body>
{body}
</body></html>
"""


def write_html(page: str, output: str) -> None:
    """Write an HTML page atomically."""
    from robustcert.artifacts import atomic_path

    with atomic_path(output) as tmp:
        tmp.write_text(page)


def write_tables(rows: pd.DataFrame, method: str, wide_output: str,
                 compact_output: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Write a method's presented wide table and its compact table (TSVs); return :func:`present`'s
    table and constants."""
    from robustcert.artifacts import write_tsv

    shown, constants = present(rows)
    write_tsv(shown, wide_output)
    write_tsv(compact(shown, method), compact_output)
    return shown, constants

