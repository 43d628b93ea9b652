"""Each defense against the undefended model on the same poisons: DER, RIR and BackdoorBench's columns."""

from __future__ import annotations

import pandas as pd
import pytest

from robustcert import comparison, results
from robustcert.results import Metric, tidy_rows


def _result(attack: str, defense: str, method: str, certificate: str, **values: float) -> pd.DataFrame:
    keys = {"dataset": "digits", "attack": attack, "attack_type": attack, "defense": defense, "method": method,
            "certificate": certificate}
    return tidy_rows(keys, {"k": 20} if method == "dpa" else {}, [Metric(n, v) for n, v in values.items()])


def _table() -> pd.DataFrame:
    return results.concatenate([
        _result("backdoor", "plain", "undefended", "uncertified", accuracy=0.95, asr=0.9, ra=0.05, n_test=100),
        _result("backdoor", "dpa", "dpa", "dpa", accuracy=0.85, asr=0.2, ra=0.7),
        _result("backdoor", "dpa", "dpa", "dpa_roe", accuracy=0.97, asr=0.3, ra=0.6),
        _result("none", "plain", "undefended", "uncertified", accuracy=0.96),  # no trigger: no asr, no comparison
        _result("none", "dpa", "dpa", "dpa", accuracy=0.9),
        _result("label_flip", "dpa", "dpa", "dpa", accuracy=0.9, asr=0.1, ra=0.8),  # no baseline
    ])


def test_der_and_rir_rows_for_each_defense_result_with_a_baseline():
    rows = comparison.against_baseline(_table())
    assert list(rows.columns) == list(results.COLUMNS)
    wide = results.wide(rows).set_index("certificate")
    assert sorted(wide.index) == ["dpa", "dpa_roe"]
    assert wide.loc["dpa", "der"] == pytest.approx((0.7 - 0.1 + 1) / 2)
    assert wide.loc["dpa", "rir"] == pytest.approx((0.65 - 0.1 + 1) / 2)
    assert wide.loc["dpa_roe", "der"] == pytest.approx((0.6 + 1) / 2)  # higher accuracy costs nothing
    assert set(wide["baseline"]) == {"plain"} and set(wide["k"]) == {20}  # the defense's params, and the baseline


def test_backdoorbench_columns():
    summary = comparison.backdoorbench_summary(_table()).set_index("certificate")
    assert list(summary.columns[-8:]) == list(comparison.BACKDOORBENCH_COLUMNS)
    assert summary.loc["dpa", ["clean_accuracy_attack", "clean_accuracy_defense", "asr_attack", "asr_defense",
                               "ra_attack", "ra_defense"]].tolist() == pytest.approx([0.95, 0.85, 0.9, 0.2, 0.05, 0.7])


def test_nothing_to_compare_gives_no_rows():
    only_clean = _result("none", "dpa", "dpa", "dpa", accuracy=0.9)
    assert comparison.against_baseline(only_clean).empty
    assert comparison.backdoorbench_summary(only_clean).empty


def _replicate(seed: int, attack: str, defense: str, method: str, certificate: str, **values: float) -> pd.DataFrame:
    keys = {"dataset": "digits", "attack": attack, "attack_type": attack, "defense": defense, "method": method,
            "certificate": certificate}
    return tidy_rows(keys, {"seed": seed}, [Metric(n, v) for n, v in values.items()])


def test_replicates_are_compared_seed_by_seed_and_summarised_by_their_mean():
    """DER of seed s is the defense of seed s against the baseline of seed s (the same poisons); the
    BackdoorBench summary is the mean over the seeds."""
    table = results.concatenate([
        _replicate(0, "backdoor", "plain", "undefended", "uncertified", accuracy=0.9, asr=0.9, ra=0.1),
        _replicate(1, "backdoor", "plain", "undefended", "uncertified", accuracy=0.9, asr=0.5, ra=0.1),
        _replicate(0, "backdoor", "dpa", "dpa", "dpa", accuracy=0.9, asr=0.1, ra=0.5),
        _replicate(1, "backdoor", "dpa", "dpa", "dpa", accuracy=0.9, asr=0.3, ra=0.5),
    ])
    rows = comparison.against_baseline(table)
    der = rows[rows["metric"] == "der"].set_index("params")["value"]
    assert der.to_dict() == pytest.approx({"seed=0;baseline=plain": (0.8 + 1) / 2, "seed=1;baseline=plain": (0.2 + 1) / 2})
    summary = comparison.backdoorbench_summary(table).iloc[0]
    assert summary["n_seeds"] == 2 and summary["asr_attack"] == pytest.approx(0.7)
    assert summary["der"] == pytest.approx(((0.8 + 1) / 2 + (0.2 + 1) / 2) / 2)
