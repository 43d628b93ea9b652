"""The results tables (rules/table.smk): ``all.tsv`` in long form from every method's row files and
each defense's comparison with the undefended model (:mod:`robustcert.comparison`), the wide table
of each method (:mod:`robustcert.results` describes both), and the comparison in BackdoorBench's
columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from robustcert.workflow import log

ALL = "<results>/tables/all.tsv"
WIDE = "<results>/tables/{method}.tsv"
BACKDOORBENCH = "<results>/tables/backdoorbench.csv"
HEADLINE = "<results>/plots/headline.{ext}"
# the numbers of the overview figure: what each defense certifies at the attack's own budget, and
# what the attack achieves against it
HEADLINE_METRICS = {"certified_vs_attack": "certified accuracy at the attack's budget",
                    "asr": "attack success rate"}


def wide_tables(result_rows: Mapping[str, Sequence[str]]) -> list[str]:
    """The wide table of every method that has rows."""
    return [WIDE.format(method=method) for method, rows in result_rows.items() if rows]


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


def tabulate_method(row_paths: Sequence[str], output: str) -> None:
    """The wide table of one method's results: one row per experiment, one column per metric."""
    from robustcert import results
    from robustcert.artifacts import write_tsv

    write_tsv(results.wide(results.concatenate(results.read_rows(p) for p in row_paths)), output)


def plot_headline(table_path: str, outputs: Sequence[str]) -> None:
    """The overview figure: :data:`HEADLINE_METRICS` over dataset · attack × defense · certificate (the
    mean over replicates)."""
    from robustcert import plot, results

    rows = results.read_rows(table_path)
    rows = rows[(rows["axis"] == results.NO_AXIS) & rows["metric"].isin(list(HEADLINE_METRICS))]
    cells = rows.assign(row=rows["dataset"] + " · " + rows["attack"],
                        column=rows["defense"] + " · " + rows["certificate"],
                        params=rows["params"].map(results.without_seed))
    means = cells.groupby(["row", "column", "params", "metric"], sort=False)["value"].mean().reset_index()
    plot.plot_headline(means[["row", "column", "metric", "value"]], HEADLINE_METRICS, outputs)
