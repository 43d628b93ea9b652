"""The results tables (rules/table.smk): ``all.tsv`` in long form from every method's row files, and
the wide table of each method (:mod:`robustcert.results` describes both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from robustcert.workflow import log

ALL = "results/tables/all.tsv"
WIDE = "results/tables/{method}.tsv"


def wide_tables(result_rows: Mapping[str, Sequence[str]]) -> list[str]:
    """The wide table of every method that has rows."""
    return [WIDE.format(method=method) for method, rows in result_rows.items() if rows]


def tabulate_results(row_paths: Sequence[str], output: str) -> None:
    """Concatenate the tidy rows of every result into all.tsv."""
    from robustcert import results

    table = results.concatenate(results.read_rows(p) for p in row_paths)
    log.info("%d rows from %d results", len(table), len(row_paths))
    results.write_rows(output, table)


def tabulate_method(row_paths: Sequence[str], output: str) -> None:
    """The wide table of one method's results: one row per experiment, one column per metric."""
    from robustcert import results
    from robustcert.artifacts import write_tsv

    write_tsv(results.wide(results.concatenate(results.read_rows(p) for p in row_paths)), output)
