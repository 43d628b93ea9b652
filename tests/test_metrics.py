"""The metrics of the results tables, on cases whose answer is known (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import pytest

from robustcert import metrics


def test_certified_accuracy_counts_a_radius_at_r_when_it_is_at_least_r():
    radius = np.array([0, 1, 2, 3])
    correct = np.array([1, 1, 0, 1])
    assert metrics.certified_accuracy(radius, correct, [0, 1, 2, 3, 4]).tolist() == [0.75, 0.5, 0.25, 0.25, 0.0]
    assert np.isnan(metrics.certified_accuracy([], [], [0, 1])).all()


def test_an_abstention_is_never_correct_and_counts_in_the_acr_denominator():
    predict = np.array([1, metrics.ABSTAIN, 2, 0])
    label = np.array([1, 3, 2, 1])
    radius = np.array([0.5, 0.0, 0.25, 0.75])
    correct = predict == label
    assert metrics.average_certified_radius(radius, correct) == (0.5 + 0.25) / 4


def test_median_certified_both_conventions():
    # 4 points: radii of the correct ones 5, 3, 1; half (2) are correct with radius ≥ 3, not ≥ 4
    assert metrics.median_certified(np.array([5, 3, 1, 9]), np.array([1, 1, 1, 0])) == (3, 4)
    assert metrics.median_certified(np.array([5, 3]), np.array([0, 0])) == (-1, 0)
    assert metrics.median_certified(np.zeros(0), np.zeros(0, bool)) == (-1, 0)


def test_attack_success_with_and_without_the_target_class():
    # triggered copies of six test images of true classes 0, 1, 2, 7, 7, 3 (target 7), predicted as
    predict, label = np.array([7, 7, 2, 7, 1, 7]), np.array([0, 1, 2, 7, 7, 3])
    assert metrics.non_target(label, 7).tolist() == [True, True, True, False, False, True]
    assert metrics.attack_success_rate(predict, label, 7) == 0.75  # 3 of the 4 non-target images
    assert metrics.attack_success_rate_all(predict, 7) == pytest.approx(4 / 6)  # the target's 7→7, 7→1 count too
    assert metrics.trigger_metrics(predict, label, 7) == pytest.approx({"asr": 0.75, "asr_all": 4 / 6, "ra": 0.25})


def test_attack_success_of_an_empty_denominator_is_nan_not_zero():
    # only target-class images: asr and ra have no image to count, asr_all has two
    only_target = metrics.trigger_metrics(np.array([7, 1]), np.array([7, 7]), 7)
    assert np.isnan(only_target["asr"]) and np.isnan(only_target["ra"]) and only_target["asr_all"] == 0.5
    # no triggered image at all (an attack without a trigger): every rate undefined
    assert all(np.isnan(v) for v in metrics.trigger_metrics(np.zeros(0), np.zeros(0), -1).values())
    assert len(metrics.attack_success_per_model(np.zeros((2, 3, 4)), np.array([2, 2]), 2)) == 0


def test_attack_success_of_each_model_leaves_out_the_target_class():
    logits = np.zeros((3, 3, 4))
    logits[0, :, 2] = 1  # image 0 (class 1): every model says 2
    logits[1, 0, 2] = logits[1, 1, 0] = logits[1, 2, 2] = 1  # image 1 (class 0): models 0 and 2 say 2
    logits[2, :, 3] = 1  # image 2 is of the target class 2: left out, whatever the models say
    assert metrics.attack_success_per_model(logits, np.array([1, 0, 2]), 2).tolist() == [1.0, 0.5, 1.0]
    assert len(metrics.attack_success_per_model(np.zeros((0, 3, 4)), np.zeros(0), 2)) == 0


def test_robust_accuracy_and_its_certified_version():
    # four non-target images (target 7) and one of class 7 that must not count
    predict, label, radius = np.array([0, 1, 7, 2, 7]), np.array([0, 1, 2, 2, 7]), np.array([3, 1, 5, 2, 9])
    assert metrics.robust_accuracy(predict, label, 7) == 0.75  # idx 0, 1, 3
    assert metrics.certified_robust_accuracy(predict, label, radius, 2, 7) == 0.5  # idx 0 and 3
    # a budget per image, counted strictly (as RAB): idx 1 and 3
    assert metrics.certified_robust_accuracy(predict, label, radius, np.array([3, 0, 0, 0, 0]), 7, strict=True) == 0.5
    assert np.isnan(metrics.robust_accuracy([], [], 7)) and np.isnan(metrics.certified_robust_accuracy([], [], [], 1, 7))
    assert np.isnan(metrics.robust_accuracy([7], [7], 7))


def test_der_and_rir_as_backdoorbench_defines_them():
    # the defense removes 0.8 of ASR at a cost of 0.1 clean accuracy: DER = (0.8 − 0.1 + 1) / 2
    assert metrics.defense_effectiveness_rate(0.9, 0.95, 0.1, 0.85) == pytest.approx(0.85)
    # a defense that raises ASR and accuracy gets the neutral 0.5
    assert metrics.defense_effectiveness_rate(0.2, 0.8, 0.5, 0.9) == pytest.approx(0.5)
    assert metrics.robust_improvement_rate(0.05, 0.95, 0.7, 0.85) == pytest.approx((0.65 - 0.1 + 1) / 2)
    assert metrics.robust_improvement_rate(0.5, 0.9, 0.2, 0.95) == pytest.approx(0.5)


def test_wide_tables_carry_clopper_pearson_intervals_of_certified_accuracy():
    from scipy.stats import beta

    from robustcert import results
    from robustcert.results import Metric, on_axis, tidy_rows

    keys = dict(dataset="d", attack="a", attack_type="a", defense="x", method="x", certificate="c")
    rows = tidy_rows(keys, {}, [Metric("n_test", 40), *on_axis("cert_acc", "l2", [0, 1], [0.75, 0.0])])
    table = results.wide(rows).iloc[0]
    # the exact interval of 30 of 40: Beta(α/2; 30, 11) to Beta(1 − α/2; 31, 10)
    assert table["cert_acc@l2=0:ci_low"] == pytest.approx(beta.ppf(0.025, 30, 11))
    assert table["cert_acc@l2=0:ci_high"] == pytest.approx(beta.ppf(0.975, 31, 10))
    assert table["cert_acc@l2=1:ci_low"] == 0 and table["cert_acc@l2=1:ci_high"] == pytest.approx(1 - 0.025 ** (1 / 40))
    assert list(results.wide(rows).columns[-3:]) == ["cert_acc@l2=1", "cert_acc@l2=1:ci_low", "cert_acc@l2=1:ci_high"]
