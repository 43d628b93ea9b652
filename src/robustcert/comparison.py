"""Every defense against the undefended model on the same poisons, as backdoor benchmarks compare them.

For each result of a defense that reports ``accuracy``, ``asr`` and ``ra`` (docs/metrics.md), and
each result of the baseline method (:data:`BASELINE`) on the same dataset and attack, the comparison
adds BackdoorBench's defense effectiveness rate ``der`` and robust improvement rate ``rir``
(:mod:`robustcert.metrics`) as tidy rows, and :func:`backdoorbench_summary` lays the same numbers out
in the columns of BackdoorBench's ``metric_summary.csv``. Results without a trigger (no ``asr`` row)
and experiments without a baseline get no comparison.
"""

from __future__ import annotations

import pandas as pd

from robustcert import metrics
from robustcert.presentation import VARIANT_PARAMS
from robustcert.results import COLUMNS, KEYS, NO_AXIS, SEED, Metric, parse_params, tidy_rows, without_seed

BASELINE = "undefended"
COMPARED = ("accuracy", "asr", "ra")
BACKDOORBENCH_COLUMNS = ("clean_accuracy_attack", "clean_accuracy_defense", "asr_attack", "asr_defense",
                         "ra_attack", "ra_defense", "der", "rir")
RESULT = (*KEYS, "params")


def compared_results(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per result that has every metric of :data:`COMPARED`: its keys, params, seed and those values."""
    scalars = rows[(rows["axis"] == NO_AXIS) & rows["metric"].isin(COMPARED)]
    table = scalars.pivot_table(index=list(RESULT), columns="metric", values="value", aggfunc="first")
    table = table.reindex(columns=list(COMPARED)).dropna().reset_index()
    return table.assign(**{SEED: table["params"].map(lambda text: parse_params(text).get(SEED, ""))})


def pairs_with_baseline(rows: pd.DataFrame) -> pd.DataFrame:
    """Each defense result beside the baseline result of its dataset, attack and seed (the same
    poisons; suffixes ``_d``, ``_u``)."""
    results = compared_results(rows)
    if results.empty:
        return pd.DataFrame()
    baseline = results[results["method"] == BASELINE]
    defended = results[results["method"] != BASELINE]
    return defended.merge(baseline, on=["dataset", "attack", "attack_type", SEED], suffixes=("_d", "_u"))


def against_baseline(rows: pd.DataFrame) -> pd.DataFrame:
    """The tidy ``der`` and ``rir`` rows of every defense result that has a baseline (params: the
    defense's, plus ``baseline=<the baseline's defense entry>``)."""
    frames = [tidy_rows(_keys(pair), {**parse_params(pair.params_d), "baseline": pair.defense_u}, _rates(pair))
              for pair in pairs_with_baseline(rows).itertuples(index=False)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def backdoorbench_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per defense result × attack in the columns of BackdoorBench's ``metric_summary.csv``
    (the attack columns are the baseline's), after the experiment's names and the parameters that tell
    a defense's experiments apart (:data:`robustcert.presentation.VARIANT_PARAMS` that any row has);
    replicates (seeds) as the mean of their numbers, with their count in ``n_seeds`` (before
    BackdoorBench's columns)."""
    records = []
    for pair in pairs_with_baseline(rows).itertuples(index=False):
        der, rir = (m.value for m in _rates(pair))
        params = parse_params(pair.params_d)
        records.append({**_keys(pair), **{p: params.get(p, "") for p in VARIANT_PARAMS},
                        "params": without_seed(pair.params_d),
                        "clean_accuracy_attack": pair.accuracy_u, "clean_accuracy_defense": pair.accuracy_d,
                        "asr_attack": pair.asr_u, "asr_defense": pair.asr_d, "ra_attack": pair.ra_u,
                        "ra_defense": pair.ra_d, "der": der, "rir": rir})
    columns = [*KEYS, *VARIANT_PARAMS, "params", *BACKDOORBENCH_COLUMNS]
    table = pd.DataFrame(records, columns=columns)
    grouped = table.groupby([*KEYS, *VARIANT_PARAMS, "params"], sort=False)
    summary = grouped[list(BACKDOORBENCH_COLUMNS)].mean().assign(n_seeds=grouped.size()).reset_index()
    variants = [p for p in VARIANT_PARAMS if (summary[p] != "").any()]
    return summary[[*KEYS, *variants, "n_seeds", *BACKDOORBENCH_COLUMNS]]



def _keys(pair) -> dict[str, str]:
    return {"dataset": pair.dataset, "attack": pair.attack, "attack_type": pair.attack_type,
            "defense": pair.defense_d, "method": pair.method_d, "certificate": pair.certificate_d}


def _rates(pair) -> list[Metric]:
    return [
        Metric("der", metrics.defense_effectiveness_rate(pair.asr_u, pair.accuracy_u, pair.asr_d, pair.accuracy_d)),
        Metric("rir", metrics.robust_improvement_rate(pair.ra_u, pair.accuracy_u, pair.ra_d, pair.accuracy_d)),
    ]
