"""The results tables (rules/table.smk): ``all.tsv`` in long form from every method's row files and
each defense's comparison with the undefended model (:mod:`robustcert.comparison`), the wide table
of each method (:mod:`robustcert.results` describes both), and the comparison in BackdoorBench's
columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.workflow import log

ALL = "<results>/tables/all.tsv"
WIDE = "<results>/tables/{method}.tsv"
COMPACT = "<results>/tables/paper/{method}.tsv"
HTML = "<results>/tables/html/{method}.html"
BACKDOORBENCH_HTML = "<results>/tables/html/backdoorbench.html"
BACKDOORBENCH = "<results>/tables/backdoorbench.csv"
HEADLINE = "<results>/plots/headline.{ext}"
# the numbers of the overview figure: what each defense certifies at the attack's own budget, and
# what the attack achieves against it; whether more is better, which the panel's title and colours say
HEADLINE_METRICS = {"certified_vs_attack": ("certified accuracy at the attack's budget", "higher"),
                    "asr": ("attack success rate", "lower")}
# what the patch defenses certify at a backdoor's own budget: the triggered images certified against a
# patch as large as the trigger (docs/metrics.md), shown in the headline's certified panel
HEADLINE_ALIASES = {"trigger_within_certified": "certified_vs_attack"}
# certificates whose name ends so are estimates, not certificates (RAB's radius without its Hoeffding term)
NOT_CERTIFICATES = ("_expected",)


def wide_tables(result_rows: Mapping[str, Sequence[str]]) -> list[str]:
    """The wide table, the paper-shaped table and their HTML page of every method that has rows."""
    return [path.format(method=method) for method, rows in result_rows.items() if rows
            for path in (WIDE, COMPACT, HTML)]


def compact_columns(wildcards: Any) -> str:
    """What each column of a method's paper-shaped table means, as an RST list (for the caption)."""
    from robustcert.presentation import COMPACT as SHAPES, meaning

    return "\n".join(f"- **{c.header.format(at='…')}**: {meaning(c.source.replace('*', '…'))}"
                      for c in SHAPES.get(wildcards.method, ()))


def tabulate_results(row_paths: Sequence[str], output: str) -> None:
    """Concatenate the tidy rows of every result into all.tsv, with each defense's ``der`` and ``rir``
    against the undefended model on the same poisons."""
    from robustcert import comparison, results

    table = results.concatenate(results.read_rows(p) for p in row_paths)
    compared = comparison.against_baseline(table)
    log.info("%d rows from %d results, %d comparison rows", len(table), len(row_paths), len(compared))
    results.write_rows(output, results.concatenate([table, compared]))


def export_backdoorbench(table_path: str, output: str) -> None:
    """Each defense × attack of all.tsv in the columns of BackdoorBench's ``metric_summary.csv``."""
    from robustcert import comparison, results
    from robustcert.artifacts import atomic_path

    summary = comparison.backdoorbench_summary(results.read_rows(table_path))
    with atomic_path(output) as tmp:
        summary.to_csv(tmp, index=False)


def tabulate_method(row_paths: Sequence[str], method: str, wide_output: str, compact_output: str,
                    html_output: str) -> None:
    """The tables of one method's results (robustcert.presentation): the wide table (one row per
    experiment, one column per metric, rounded), the paper-shaped one, and both as an HTML page for the
    report with what is the same in every row and what each column means."""
    from robustcert import presentation, results

    rows = results.concatenate(results.read_rows(p) for p in row_paths)
    shown, constants = presentation.write_tables(rows, method, wide_output, compact_output)
    page = presentation.render_html(f"{method}: results", shown, constants, presentation.compact(shown, method))
    presentation.write_html(page, html_output)


def render_backdoorbench(table_path: str, output: str) -> None:
    """backdoorbench.csv as an HTML page (rounded, with its columns explained)."""
    import pandas as pd

    from robustcert import presentation

    shown = pd.read_csv(table_path, keep_default_na=False).apply(presentation.round_column)
    page = presentation.render_html("Every defense against the undefended model (BackdoorBench's columns)", shown,
                                    {}, presentation.compact(shown, "backdoorbench"))
    presentation.write_html(page, output)


def plot_headline(table_path: str, outputs: Sequence[str]) -> None:
    """The overview figure: :data:`HEADLINE_METRICS` of every experiment (:func:`headline_cells`; the
    mean over replicates), a panel per metric."""
    from robustcert import plot, results

    cells = headline_cells(results.read_rows(table_path))
    means = cells.groupby(["row", "column", "metric"], sort=False)["value"].mean().reset_index()
    plot.plot_headline(means, HEADLINE_METRICS, outputs)


def headline_cells(rows: Any) -> Any:
    """The headline's cells of all.tsv's rows: ``row`` (dataset · defense · certificate and the
    parameters that tell a defense's experiments apart, :data:`robustcert.presentation.VARIANT_PARAMS`),
    ``column`` (the attack), ``metric`` (:data:`HEADLINE_ALIASES` renamed), ``seed`` and ``value``; no
    estimate that is not a certificate (:data:`NOT_CERTIFICATES`). Two rows with one cell and seed are an error naming them."""
    from robustcert.presentation import VARIANT_PARAMS
    from robustcert.results import NO_AXIS, SEED, parse_params

    rows = rows.assign(metric=rows["metric"].replace(HEADLINE_ALIASES))
    rows = rows[(rows["axis"] == NO_AXIS) & rows["metric"].isin(list(HEADLINE_METRICS))
                & ~rows["certificate"].str.endswith(NOT_CERTIFICATES)]
    params = rows["params"].map(parse_params)
    variants = params.map(lambda p: ", ".join(_variant(key, p[key]) for key in VARIANT_PARAMS if key in p))
    names = [" · ".join([dataset, defense, *([certificate] if certificate not in (defense, "uncertified") else [])])
             for dataset, defense, certificate in zip(rows["dataset"], rows["defense"], rows["certificate"])]
    cells = rows.assign(row=[f"{n} ({v})" if v else n for n, v in zip(names, variants)], column=rows["attack"],
                        seed=params.map(lambda p: p.get(SEED, "")))[["row", "column", "metric", "seed", "value"]]
    twice = cells[cells.duplicated(["row", "column", "metric", "seed"], keep=False)]
    if len(twice):
        shown = twice.drop_duplicates(["row", "column", "metric"]).head(5).to_dict("records")
        raise ValueError(f"the headline would show two numbers in one cell: {shown}; the experiments differ "
                         "in a parameter that is not among robustcert.presentation.VARIANT_PARAMS")
    return cells


def _variant(key: str, value: str) -> str:
    """How a variant parameter reads in a headline row: σ for the noise, the ablation as it is."""
    return {"sigma": f"σ={value}", "sigma_train": f"σ={value}", "ablation": value}.get(key, f"{key}={value}")
