"""The results table: tidy rows, one number each, and the dense wide view of one method.

``results/tables/all.tsv`` has the fixed columns :data:`COLUMNS`: the experiment's names
(``dataset attack attack_type defense method certificate``), ``params`` (the parameters that change
a number, as ``key=value`` pairs joined by ``;``), then ``metric``, ``axis`` and ``at`` (where on the
axis: a poisoning budget, an L2 radius; both ``-`` for a metric without an axis) and ``value``. A
number that is not defined (the attack success rate of an attack without a trigger) has no row, so
no cell is empty. ``docs/metrics.md`` defines every metric. A new method adds rows, never columns.
The rows of an attack alone (its budget) have the defense, method and certificate :data:`NO_DEFENSE`.

``results/tables/<method>.tsv`` is the wide view of one method's rows: one row per experiment, its
parameters as columns, then one column per metric (``metric`` or ``metric@axis=at``). Each certified
accuracy column (:data:`CERTIFIED_SHARES`) is followed by its 95% Clopper–Pearson interval over the
experiment's ``n_test`` points (``<column>:ci_low``, ``<column>:ci_high``). The attack's budget
joins every experiment row of its dataset and attack as columns, so each row says how large the attack was.
Replicates of an experiment (an experiment grid's ``seeds``: rows that differ only in the ``seed``
parameter) are one row of the wide view: each metric's mean over the seeds and its standard deviation
(``<column>:sd``), with ``seeds`` and ``n_seeds`` in place of ``seed``; all.tsv keeps every seed's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustcert.artifacts import Column, TsvFormat, write_tsv

KEYS = ("dataset", "attack", "attack_type", "defense", "method", "certificate")
COLUMNS = (*KEYS, "params", "metric", "axis", "at", "value")
NO_AXIS = "-"
NO_DEFENSE = "-"
CERTIFIED_SHARES = ("cert_acc", "cert_acc_clean")
CONFIDENCE = 0.95
SEED = "seed"  # the parameter that tells replicates apart
SD = ":sd"  # the suffix of a metric's standard deviation over replicates
COUNTS = ("n_test",)  # the same in every replicate: no standard deviation
ROWS = TsvFormat("results rows", {**{c: Column("str") for c in COLUMNS[:-1]}, "value": Column("float", finite=False)})


@dataclass(frozen=True)
class Metric:
    """One number of a result: ``name`` (at ``at`` on ``axis``, if it has one) = ``value``."""

    name: str
    value: float
    axis: str = NO_AXIS
    at: float | None = None


def on_axis(name: str, axis: str, points: Sequence[float], values: Iterable[float]) -> list[Metric]:
    """A metric at several points of one axis (certified accuracy at each budget or radius)."""
    return [Metric(name, float(v), axis, p) for p, v in zip(points, values)]


def format_params(params: Mapping[str, Any]) -> str:
    """``key=value`` pairs in the given order, joined by ``;`` (``-`` for none)."""
    return ";".join(f"{key}={value}" for key, value in params.items()) or NO_AXIS


def parse_params(text: str) -> dict[str, str]:
    """The pairs of :func:`format_params`."""
    return {} if text == NO_AXIS else dict(pair.split("=", 1) for pair in text.split(";"))


def without_seed(text: str) -> str:
    """Formatted params less the replicate's ``seed`` (what replicates of one experiment share)."""
    return format_params({key: value for key, value in parse_params(text).items() if key != SEED})


def tidy_rows(keys: Mapping[str, str], params: Mapping[str, Any], metrics: Iterable[Metric]) -> pd.DataFrame:
    """The rows of one result: one per metric whose value is defined (not NaN)."""
    missing = [key for key in KEYS if key not in keys]
    if missing:
        raise ValueError(f"a result row needs the keys {list(KEYS)}; missing {missing}")
    rows = [
        {**{key: keys[key] for key in KEYS}, "params": format_params(params), "metric": m.name,
         "axis": m.axis, "at": NO_AXIS if m.at is None else f"{m.at:g}", "value": float(m.value)}
        for m in metrics
        if not math.isnan(float(m.value))
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_rows(path: str | Path, rows: pd.DataFrame) -> None:
    """Write tidy rows (a row file of one result, or all.tsv); whole numbers without a decimal point."""
    write_tsv(rows[list(COLUMNS)].assign(value=rows["value"].map(format_number)), path)


def format_number(value: float) -> str:
    """The shortest text that reads back as ``value`` (``360`` for 360.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def read_rows(path: str | Path) -> pd.DataFrame:
    """Tidy rows, checked against :data:`ROWS` (the fixed header, no empty cell, a number in ``value``,
    at least one row)."""
    return ROWS.read(path, min_rows=1)


def concatenate(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several results, in order."""
    frames = list(frames)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def wide(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment (keys and params), its parameters as columns, one column per metric;
    the attack's budget rows as columns of each experiment on that attack (alone where there is none);
    replicates over seeds as one row (:func:`over_seeds`); certified accuracies with their intervals."""
    params = {name for text in rows["params"].unique() for name in parse_params(text)}
    return with_intervals(over_seeds(per_seed(rows), params))


def per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment and seed (keys and params): the wide view before replicates are merged."""
    alone = rows["defense"] == NO_DEFENSE
    if alone.all() or not alone.any():
        return _pivot(rows)
    defended, budgets = _pivot(rows[~alone]), _pivot(rows[alone])
    on = [c for c in ("dataset", "attack", SEED) if c in defended and c in budgets]
    budgets = budgets[[*on, *(c for c in budgets.columns if c in set(rows.loc[alone, "metric"]))]]
    return defended.merge(budgets, on=on, how="left")


def over_seeds(table: pd.DataFrame, params: Iterable[str]) -> pd.DataFrame:
    """Replicates (rows equal but for their ``seed``) as one row: each metric's mean over the seeds,
    followed by its sample standard deviation (``<metric>:sd``, empty for one seed; none for the
    :data:`COUNTS`), and ``seeds``
    (the seeds, space-separated) and ``n_seeds`` where ``seed`` was. A table without replicates is
    returned as it is."""
    params = set(params)
    if SEED not in table:
        return table
    by = [c for c in table.columns if c in KEYS or (c in params and c != SEED)]
    grouped = table.groupby(by, dropna=False, sort=False)
    if (grouped.size() == 1).all():
        return table
    metrics = [c for c in table.columns if c not in by and c != SEED]
    mean, sd = grouped[metrics].mean(), grouped[metrics].std(ddof=1)
    seeds = grouped[SEED].agg(lambda s: " ".join(str(v) for v in sorted(s)))
    columns: dict[str, pd.Series] = {}
    keys = mean.index.to_frame(index=False)
    for column in table.columns:
        if column in by:
            columns[column] = keys[column]
        elif column == SEED:
            columns["seeds"], columns["n_seeds"] = seeds.to_numpy(), grouped.size().to_numpy()
        else:
            columns[column] = _numeric_if_possible(pd.Series(mean[column].to_numpy()))
            if column not in COUNTS:
                columns[f"{column}{SD}"] = sd[column].to_numpy()
    return pd.DataFrame(columns)


def _pivot(rows: pd.DataFrame) -> pd.DataFrame:
    """One record per keys and params, a column per metric (and point on its axis)."""
    records: dict[tuple, dict[str, Any]] = {}
    for row in rows.itertuples(index=False):
        key = (*(getattr(row, k) for k in KEYS), row.params)
        record = records.setdefault(key, {**dict(zip(KEYS, key)), **parse_params(row.params)})
        column = row.metric if row.axis == NO_AXIS else f"{row.metric}@{row.axis}={row.at}"
        record[column] = row.value
    table = pd.DataFrame(list(records.values()))
    for column in table.columns:
        if column not in KEYS:
            table[column] = _numeric_if_possible(table[column])
    return table


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Each certified-accuracy column followed by its Clopper–Pearson interval over ``n_test`` points
    (over the ``n_test`` · ``n_seeds`` certifications pooled, for the mean of replicates)."""
    if "n_test" not in table:
        return table
    points = table["n_test"] * table["n_seeds"] if "n_seeds" in table else table["n_test"]
    columns: dict[str, pd.Series] = {}
    for column in table.columns:
        columns[column] = table[column]
        if column.split("@")[0] in CERTIFIED_SHARES and not column.endswith(SD):
            low, high = clopper_pearson(table[column], points)
            columns[f"{column}:ci_low"], columns[f"{column}:ci_high"] = low, high
    return pd.DataFrame(columns)


def clopper_pearson(share: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The exact two-sided :data:`CONFIDENCE` interval of a binomial share of ``n`` points (NaN where
    either is missing or n is 0)."""
    from statsmodels.stats.proportion import proportion_confint

    share, n = pd.to_numeric(share).astype(float), pd.to_numeric(n).astype(float)
    known = share.notna() & n.notna() & (n > 0)
    low, high = pd.Series(float("nan"), index=share.index), pd.Series(float("nan"), index=share.index)
    count = (share[known] * n[known]).round()
    bounds = proportion_confint(count.to_numpy(), n[known].to_numpy(), alpha=1 - CONFIDENCE, method="beta")
    low[known], high[known] = bounds
    return low, high


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """Numbers where every cell is one (whole numbers as nullable integers), else the text."""
    try:
        numbers = pd.to_numeric(column)
    except (ValueError, TypeError):
        return column
    known = numbers.dropna()
    return numbers.astype("Int64") if len(known) and (known % 1 == 0).all() else numbers
