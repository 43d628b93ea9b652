"""The papers' claims set beside the workflow's numbers: one row per claim of a config's ``claims``.

A claim names the paper, says the claim in one sentence, gives the paper's number and its setting,
and says which number of ``all.tsv`` checks it (``ours``: a selector of metric rows, the mean over
replicates; ``versus``: a second selector, then ours is the difference ``ours − versus``; ``per``:
ours divided by it, e.g. a median certificate as a share of k; a selector that picks no row leaves ours
empty, ``does not hold``, and says so in ``measured``). Its verdict follows a rule stated in
the row: ``holds`` when ours meets the ``holds`` thresholds, ``holds in direction`` when it meets
only the ``direction`` thresholds, else ``does not hold``. Where ours is one share of the test points
(:data:`PROPORTIONS`), the row gives its 95% Clopper–Pearson interval over the test points (those of
every replicate pooled); elsewhere the interval cells are ``-``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from robustcert.artifacts import Column, TsvFormat
from robustcert.results import NO_AXIS, clopper_pearson, parse_params, without_seed

HOLDS, DIRECTION, FAILS = "holds", "holds in direction", "does not hold"
VERDICTS = (HOLDS, DIRECTION, FAILS)
# metrics that are a share of the experiment's n_test points (its interval is over them)
PROPORTIONS = ("accuracy", "cert_acc", "cert_acc_clean", "adversarial_accuracy")
CLAIMS = TsvFormat("claims", {
    "paper": Column("str"), "claim": Column("str"), "paper_number": Column("str"), "paper_setting": Column("str"),
    "ours": Column("float", nan=True), "ours_ci_low": Column("float", nan=True), "ours_ci_high": Column("float", nan=True),
    "measured": Column("str"), "rule": Column("str"), "verdict": Column("str", allowed=VERDICTS),
})


@dataclass(frozen=True)
class Threshold:
    """Bounds a number must meet: at least ``at_least`` and at most ``at_most`` (either may be absent)."""

    at_least: float | None = None
    at_most: float | None = None

    def met(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        return (self.at_least is None or value >= self.at_least) and (self.at_most is None or value <= self.at_most)

    def text(self) -> str:
        """The bounds in words: ``ours ≥ 0.9``, ``ours ≤ 0``, ``0.2 ≤ ours ≤ 0.5``."""
        low = f"{self.at_least:g} ≤ " if self.at_least is not None else ""
        high = f" ≤ {self.at_most:g}" if self.at_most is not None else ""
        return f"{low}ours{high}" if low or high else "any value"


def threshold(spec: Mapping[str, float]) -> Threshold:
    """A :class:`Threshold` from a claim's ``holds``/``direction`` mapping."""
    return Threshold(spec.get("at_least"), spec.get("at_most"))


def verdict(value: float, holds: Threshold, direction: Threshold) -> str:
    """``holds`` when ``value`` meets ``holds``, ``holds in direction`` when it meets only ``direction``,
    else ``does not hold`` (and ``does not hold`` for a value that is not a number)."""
    if pd.isna(value):
        return FAILS
    if holds.met(value):
        return HOLDS
    return DIRECTION if direction.met(value) else FAILS


def rule_text(holds: Threshold, direction: Threshold) -> str:
    """The verdict rule of a row, in words."""
    return f"holds if {holds.text()}; holds in direction if {direction.text()}; else does not hold"


def select(table: pd.DataFrame, selector: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of all.tsv that a selector picks: every key it gives (``at`` as a number, ``params`` as
    a subset of the row's parameters) equal; an axis left out picks the rows without axis."""
    chosen = table["metric"] == selector["metric"]
    for key in ("dataset", "attack", "defense", "certificate"):
        if key in selector:
            chosen &= table[key] == str(selector[key])
    chosen &= table["axis"] == str(selector.get("axis", NO_AXIS))
    if "at" in selector:
        chosen &= pd.to_numeric(table["at"].where(table["at"] != NO_AXIS), errors="coerce") == float(selector["at"])
    wanted = {key: str(value) for key, value in selector.get("params", {}).items()}
    if wanted:
        chosen &= table["params"].map(lambda text: wanted.items() <= parse_params(text).items())
    return table[chosen]


def describe(selector: Mapping[str, Any]) -> str:
    """A selector in words: ``dpa_70 / none / dpa: cert_acc at poison_samples=10``."""
    names = " / ".join(str(selector[key]) for key in ("dataset", "defense", "attack", "certificate") if key in selector)
    where = f" at {selector['axis']}={selector['at']:g}" if "at" in selector else ""
    params = "".join(f", {key}={value}" for key, value in selector.get("params", {}).items())
    return f"{names}: {selector['metric']}{where}{params}"


def _one_experiment(table: pd.DataFrame, selector: Mapping[str, Any], claim: str) -> pd.DataFrame:
    """The rows of one selector, which must be one experiment's (its replicates' rows)."""
    rows = select(table, selector)
    if rows.empty:
        return rows
    experiments = rows[["dataset", "attack", "defense", "certificate"]].astype(str).agg("/".join, axis=1) + \
        " " + rows["params"].map(without_seed)
    if experiments.nunique() > 1:
        raise ValueError(f"claim {claim!r}: {describe(selector)} picks rows of {experiments.nunique()} experiments "
                         f"({', '.join(experiments.unique()[:3])}): name dataset, attack, defense, certificate or params")
    return rows


def _points(table: pd.DataFrame, rows: pd.DataFrame) -> float:
    """The test points behind a share (n_test of the same experiments, every replicate's pooled)."""
    counts = table[(table["metric"] == "n_test") & (table["axis"] == NO_AXIS)]
    keyed = counts.set_index(["dataset", "attack", "defense", "certificate", "params"])["value"]
    keys = list(zip(rows["dataset"], rows["attack"], rows["defense"], rows["certificate"], rows["params"]))
    found = [float(keyed[key]) for key in keys if key in keyed.index]
    return float(sum(found)) if len(found) == len(keys) else float("nan")


def missing(table: pd.DataFrame, claim: Mapping[str, Any]) -> list[str]:
    """The selectors of a claim that pick no row: a number the run did not define (docs/metrics.md: an
    undefined number has no row, e.g. an ACR drop when the clean ACR is 0) or not asked for."""
    return [describe(claim[side]) for side in ("ours", "versus") if side in claim and select(table, claim[side]).empty]


def measure(table: pd.DataFrame, claim: Mapping[str, Any]) -> tuple[float, float, float]:
    """Our number for a claim, and its 95% interval where it is one share of the test points (else NaN);
    NaN where a selector picks no row."""
    rows = _one_experiment(table, claim["ours"], claim["claim"])
    value = float(rows["value"].mean()) if len(rows) else float("nan")
    low = high = float("nan")
    if "versus" in claim:
        value -= float(_one_experiment(table, claim["versus"], claim["claim"])["value"].mean())
    elif claim["ours"]["metric"] in PROPORTIONS and len(rows):
        lows, highs = clopper_pearson(pd.Series([value]), pd.Series([_points(table, rows)]))
        low, high = float(lows.iloc[0]), float(highs.iloc[0])
    per = float(claim.get("per", 1))
    return value / per, low / per, high / per


def measured_text(table: pd.DataFrame, claim: Mapping[str, Any]) -> str:
    """What our number is, in words (a difference, a share of ``per``)."""
    text = describe(claim["ours"])
    if "versus" in claim:
        text = f"{text} − {describe(claim['versus'])}"
    if "per" in claim:
        text = f"({text}) / {claim['per']:g}"
    return text + "".join(f"; no row is {absent} (not defined in this run)" for absent in missing(table, claim))


def claims_table(table: pd.DataFrame, claims: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per claim: the paper's side, our number (interval), what it is, the rule and the verdict."""
    rows = []
    for claim in claims:
        value, low, high = measure(table, claim)
        holds, direction = threshold(claim["holds"]), threshold(claim["direction"])
        rows.append({"paper": claim["paper"], "claim": claim["claim"], "paper_number": claim["reference"]["number"],
                     "paper_setting": claim["reference"]["setting"], "ours": value, "ours_ci_low": low,
                     "ours_ci_high": high, "measured": measured_text(table, claim), "rule": rule_text(holds, direction),
                     "verdict": verdict(value, holds, direction)})
    return pd.DataFrame(rows, columns=list(CLAIMS.columns))

