"""Finite Aggregation and Run-Off Election certificates (robustcert.certify).

Three kinds of checks:
- brute force: on small ensembles (3 classes) every way an attacker can set the outputs of the
  models that ``certificate`` poisoned samples reach (one model per sample for DPA, the d models of
  a bucket for FA) leaves the prediction unchanged; DPA's certificate is exactly the brute-force
  minimum minus one;
- reference: per-point ports of the papers' certify scripts (wangwenxiao/FiniteAggregation
  FiniteAggregation_cerfity.py; k1rezaei/DPA-election dpa_roe_certify.py, fa_roe_certify.py,
  dp_calc.py) give the same predictions and certificates on random score matrices;
- hand-checked examples and input validation.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import robustcert.certify as certify_module
from robustcert.certify import (
    _greedy_cost,
    _two_rival_cost,
    dpa,
    finite_aggregation,
    finite_aggregation_run_off,
    run_off_election,
)

NUM_CLASSES = 3
# Attacker outputs of one model: a vote (one-hot logits) for plurality, or a strict order of the
# classes for ROE (its vote and its preference between any two classes in round two).
VOTES = np.eye(NUM_CLASSES)
ORDERS = np.array(
    [np.argsort(order) for order in itertools.permutations(range(NUM_CLASSES))], dtype=float
)


# --- independent predictions for the brute force, batched over attacks [A, m, C] ----------------


def _counts(logits: np.ndarray) -> np.ndarray:
    votes = logits.argmax(axis=2)
    return (votes[:, :, None] == np.arange(logits.shape[2])).sum(axis=1)


def predict_plurality(logits: np.ndarray) -> np.ndarray:
    return np.argsort(-_counts(logits), axis=1, kind="stable")[:, 0]


def predict_run_off(logits: np.ndarray) -> np.ndarray:
    order = np.argsort(-_counts(logits), axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]
    rows = np.arange(len(logits))
    for_first = (logits[rows, :, first] > logits[rows, :, second]).sum(axis=1)
    for_second = logits.shape[1] - for_first
    first_wins = (for_first > for_second) | ((for_first == for_second) & (first < second))
    return np.where(first_wins, first, second)


def attack_succeeds(point, groups, budget, outputs, predict) -> bool:
    """Some choice of `budget` groups (poisoned samples) and outputs of their models flips it.

    Sets of exactly `budget` groups suffice: fewer groups reach a subset of the same models.
    """
    original = predict(point[None])[0]
    budget = min(budget, len(groups))
    for chosen in itertools.combinations(range(len(groups)), budget):
        models = sorted(set().union(*(groups[g] for g in chosen)))
        choices = np.array(list(itertools.product(range(len(outputs)), repeat=len(models))))
        attacked = np.repeat(point[None], len(choices), axis=0)
        if models:
            attacked[:, models, :] = outputs[choices]
        if (predict(attacked) != original).any():
            return True
    return False


def fa_groups(num_models: int, shifts) -> list[list[int]]:
    """The models each bucket reaches: (h + s) mod k·d."""
    return [sorted({(h + s) % num_models for s in shifts}) for h in range(num_models)]


def random_logits(rng, n, num_models, num_classes=NUM_CLASSES, integer=False):
    """Score matrices with a favoured class per point, so certificates range over several values."""
    favoured = rng.integers(0, num_classes, n)
    strength = rng.uniform(0.0, 2.5, n)
    logits = rng.normal(size=(n, num_models, num_classes))
    logits[np.arange(n), :, favoured] += strength[:, None]
    return np.round(logits) if integer else logits


# --- reference implementations, ported per point ----------------------------------------------


def reference_finite_aggregation(scores, shifts):
    n, num_models, num_classes = scores.shape
    max_classes = scores.argmax(2)
    predictions = np.zeros((n, num_classes))
    for i in range(num_models):
        predictions[np.arange(n), max_classes[:, i]] += 1
    idx = np.argsort(-predictions, axis=1, kind="stable")[:, 0]
    shifted = np.array([[(h + s) % num_models for s in shifts] for h in range(num_models)])
    certs = np.zeros(n, dtype=int)
    for i in range(n):
        certs[i] = num_models
        label = idx[i]
        given_h = max_classes[i][shifted]
        for c in range(num_classes):
            if c == label:
                continue
            diff = predictions[i][label] - predictions[i][c] - (1 if c < label else 0)
            deltas = (1 + (given_h == label).astype(int) - (given_h == c).astype(int)).sum(1)
            deltas = -np.sort(-deltas)
            radius = 0
            while diff - deltas[radius] >= 0:
                diff -= deltas[radius]
                radius += 1
            certs[i] = min(certs[i], radius)
    return idx, certs


def reference_dp_table(size):
    table = np.zeros((size, size), dtype=int)
    for i in range(size):
        for j in range(size):
            if i == 0 and j == 0:
                table[i, j] = 0
            elif i <= 1 and j <= 2:
                table[i, j] = 1
            elif i <= 2 and j <= 1:
                table[i, j] = 1
            elif j <= 1:
                table[i, j] = (i + 1) // 2
            elif i <= 1:
                table[i, j] = (j + 1) // 2
            else:
                table[i, j] = 1 + min(table[i - 2, j - 1], table[i - 1, j - 2])
    return table


def _reference_run_off_rounds(scores_i, prediction, num_classes):
    num_models = scores_i.shape[0]
    ordered = np.argsort(-prediction, kind="stable")
    m1, m2 = int(ordered[0]), int(ordered[1])
    m1_election = np.array(
        [2 * (scores_i[:, m1] > scores_i[:, c]).sum() - num_models for c in range(num_classes)]
    )
    m2_election = np.array(
        [2 * (scores_i[:, m2] > scores_i[:, c]).sum() - num_models for c in range(num_classes)]
    )
    elec = m1_election[m2]
    if elec > 0:
        c_pred = m1
    elif elec == 0:
        c_pred = min(m1, m2)
    else:
        c_pred = m2
    return m1, m2, m1_election, m2_election, c_pred


def reference_run_off_election(scores):
    n, num_models, num_classes = scores.shape
    dp = reference_dp_table(num_models + 3)
    max_classes = scores.argmax(2)
    idx, certs = np.zeros(n, dtype=int), np.zeros(n, dtype=int)

    def ceil(a, b):
        return (max(0, a) + b - 1) // b

    for i in range(n):
        prediction = np.bincount(max_classes[i], minlength=num_classes)
        m1, m2, m1_election, m2_election, c_pred = _reference_run_off_rounds(
            scores[i], prediction, num_classes
        )
        c_sec = m1 + m2 - c_pred
        r2 = m1_election if c_pred == m1 else m2_election
        cert_r1 = 10**9
        for c1 in range(num_classes):
            if c1 == c_pred:
                continue
            for c2 in range(num_classes):
                if c2 == c_pred or c2 == c1:
                    continue
                gap1 = max(prediction[c_pred] - prediction[c1] + (c1 > c_pred), 0)
                gap2 = max(prediction[c_pred] - prediction[c2] + (c2 > c_pred), 0)
                cert_r1 = min(cert_r1, dp[gap1][gap2])
        cert_r2 = 10**9
        for c in range(num_classes):
            if c == c_pred:
                continue
            first = ceil(prediction[c_sec] - prediction[c] + (c > c_sec), 2)
            second = ceil(r2[c] + (c > c_pred), 2)
            cert_r2 = min(cert_r2, max(first, second))
        assert cert_r1 > 0 and cert_r2 > 0
        idx[i], certs[i] = c_pred, min(cert_r1, cert_r2) - 1
    return idx, certs


def reference_finite_aggregation_run_off(scores, shifts):
    n, num_models, num_classes = scores.shape
    d = len(shifts)
    max_classes = scores.argmax(2)
    shifted = np.array([[(h + s) % num_models for s in shifts] for h in range(num_models)])
    idx, certs = np.zeros(n, dtype=int), np.zeros(n, dtype=int)

    def sample_cert(gap, reducers):
        reducers = -np.sort(-reducers)
        cert = 0
        while gap > 0:
            gap -= reducers[cert]
            cert += 1
        return cert

    for i in range(n):
        prediction = np.bincount(max_classes[i], minlength=num_classes)
        m1, m2, m1_election, m2_election, c_pred = _reference_run_off_rounds(
            scores[i], prediction, num_classes
        )
        c_sec = m1 + m2 - c_pred
        given_h = max_classes[i][shifted]
        m1_to, m2_to = np.zeros(num_classes), np.zeros(num_classes)
        for m3 in range(num_classes):
            gap = prediction[m1] - prediction[m3] + (m3 > m1)
            pw = (1 + (given_h == m1).astype(int) - (given_h == m3).astype(int)).sum(1)
            m1_to[m3] = sample_cert(gap, pw)
            gap = prediction[m2] - prediction[m3] + (m3 > m2)
            pw = (1 + (given_h == m2).astype(int) - (given_h == m3).astype(int)).sum(1)
            m2_to[m3] = sample_cert(gap, pw)
        m1_given_h = [(scores[i, shifted, m1] > scores[i, shifted, c]) for c in range(num_classes)]
        m2_given_h = [(scores[i, shifted, m2] > scores[i, shifted, c]) for c in range(num_classes)]
        if c_pred == m1:
            r1, r1_sec, r2_gaps, r2_pw = m1_to, m2_to, m1_election, m1_given_h
        else:
            r1, r1_sec, r2_gaps, r2_pw = m2_to, m1_to, m2_election, m2_given_h
        cert_r1 = 10**9
        for c1 in range(num_classes):
            if c1 == c_pred:
                continue
            for c2 in range(c1):
                if c2 == c_pred:
                    continue
                gap = (
                    prediction[c_pred] - prediction[c1] + (c1 > c_pred)
                    + prediction[c_pred] - prediction[c2] + (c2 > c_pred)
                )
                pw = (
                    1
                    + 2 * (given_h == c_pred).astype(int)
                    - (given_h == c1).astype(int)
                    - (given_h == c2).astype(int)
                ).sum(1)
                cert_r1 = min(cert_r1, max(r1[c1], r1[c2], sample_cert(gap, pw)))
        cert_r2 = 10**9
        for c in range(num_classes):
            if c == c_pred:
                continue
            second = sample_cert(r2_gaps[c] + (c > c_pred), 2 * r2_pw[c].sum(1))
            cert_r2 = min(cert_r2, max(r1_sec[c], second))
        assert cert_r1 > 0 and cert_r2 > 0
        idx[i], certs[i] = c_pred, min(cert_r1, cert_r2) - 1
    assert d == shifted.shape[1]
    return idx, certs


# --- FA = DPA at d = 1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("num_models,num_classes", [(1, 2), (7, 3), (50, 10), (101, 4)])
def test_finite_aggregation_with_one_shift_is_dpa(num_models, num_classes, integer):
    rng = np.random.default_rng(num_models * 10 + num_classes)
    logits = random_logits(rng, 300, num_models, num_classes, integer=integer)
    for shift in {0, num_models - 1}:
        prediction, certificate = finite_aggregation(logits, [shift])
        expected_prediction, expected_certificate = dpa(logits)
        np.testing.assert_array_equal(prediction, expected_prediction)
        np.testing.assert_array_equal(certificate, expected_certificate)


# --- brute force ----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_models", [1, 2, 3, 4, 5, 6, 7])
def test_dpa_certificate_is_brute_force_minimum_minus_one(num_models):
    rng = np.random.default_rng(num_models)
    logits = random_logits(rng, 40, num_models)
    prediction, certificate = dpa(logits)
    groups = [[j] for j in range(num_models)]
    for point, predicted, cert in zip(logits, prediction, certificate):
        assert predict_plurality(point[None])[0] == predicted
        smallest = next(
            budget
            for budget in range(1, num_models + 1)
            if attack_succeeds(point, groups, budget, VOTES, predict_plurality)
        )
        assert cert == smallest - 1


@pytest.mark.parametrize("k,d", [(2, 2), (3, 2), (2, 3), (4, 2), (3, 3)])
def test_finite_aggregation_is_sound(k, d):
    rng = np.random.default_rng(100 * k + d)
    shifts = rng.choice(k * d, size=d, replace=False)
    logits = random_logits(rng, 40, k * d)
    prediction, certificate = finite_aggregation(logits, shifts)
    groups = fa_groups(k * d, shifts)
    for point, predicted, cert in zip(logits, prediction, certificate):
        assert predict_plurality(point[None])[0] == predicted
        assert not attack_succeeds(point, groups, cert, VOTES, predict_plurality)
    assert certificate.max() >= 1  # the check covered non-trivial certificates


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("num_models", [2, 3, 4, 5, 6, 7, 8])
def test_run_off_election_is_sound(num_models, integer):
    rng = np.random.default_rng(200 + num_models)
    logits = random_logits(rng, 40, num_models, integer=integer)
    prediction, certificate = run_off_election(logits)
    groups = [[j] for j in range(num_models)]
    for point, predicted, cert in zip(logits, prediction, certificate):
        assert predict_run_off(point[None])[0] == predicted
        assert not attack_succeeds(point, groups, cert, ORDERS, predict_run_off)
    if num_models >= 4:
        assert certificate.max() >= 1


# Keeps the enumeration (6 orders per affected model) small: at most 6 models are attacked.
FA_ROE_MAX_MODELS = 6


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("k,d", [(3, 1), (5, 1), (2, 2), (3, 2), (4, 2), (2, 3), (3, 3)])
def test_finite_aggregation_run_off_is_sound(k, d, integer):
    rng = np.random.default_rng(300 + 10 * k + d)
    shifts = rng.choice(k * d, size=d, replace=False)
    logits = random_logits(rng, 60, k * d, integer=integer)
    prediction, certificate = finite_aggregation_run_off(logits, shifts)
    groups = fa_groups(k * d, shifts)
    checked = 0
    for point, predicted, cert in zip(logits, prediction, certificate):
        assert predict_run_off(point[None])[0] == predicted
        if cert * d <= FA_ROE_MAX_MODELS:
            assert not attack_succeeds(point, groups, cert, ORDERS, predict_run_off)
            checked += cert > 0
    assert checked >= 3


# --- reference implementations -----------------------------------------------------------------


@pytest.mark.parametrize("k,d,num_classes", [(5, 4, 3), (10, 3, 5), (8, 8, 4)])
def test_finite_aggregation_matches_reference(k, d, num_classes):
    rng = np.random.default_rng(k * d)
    logits = random_logits(rng, 60, k * d, num_classes)
    random.seed(999999999 + 208)
    shifts = random.sample(range(k * d), d)
    prediction, certificate = finite_aggregation(logits, shifts)
    expected_prediction, expected_certificate = reference_finite_aggregation(logits, shifts)
    np.testing.assert_array_equal(prediction, expected_prediction)
    np.testing.assert_array_equal(certificate, expected_certificate)


@pytest.mark.parametrize("num_models,num_classes", [(2, 2), (5, 3), (20, 4), (50, 10)])
def test_run_off_election_matches_reference(num_models, num_classes):
    rng = np.random.default_rng(num_models + num_classes)
    logits = random_logits(rng, 60, num_models, num_classes)
    prediction, certificate = run_off_election(logits)
    expected_prediction, expected_certificate = reference_run_off_election(logits)
    np.testing.assert_array_equal(prediction, expected_prediction)
    np.testing.assert_array_equal(certificate, expected_certificate)


@pytest.mark.parametrize("k,d,num_classes", [(4, 1, 3), (5, 4, 3), (10, 3, 5), (6, 5, 10)])
def test_finite_aggregation_run_off_matches_reference(k, d, num_classes):
    rng = np.random.default_rng(1000 + k * d)
    logits = random_logits(rng, 40, k * d, num_classes)
    random.seed(999999999 + 208)
    shifts = random.sample(range(k * d), d)
    prediction, certificate = finite_aggregation_run_off(logits, shifts)
    expected_prediction, expected_certificate = reference_finite_aggregation_run_off(logits, shifts)
    np.testing.assert_array_equal(prediction, expected_prediction)
    np.testing.assert_array_equal(certificate, expected_certificate)


def test_two_rival_cost_is_the_reference_dynamic_program():
    size = 60
    table = reference_dp_table(size)
    first, second = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    np.testing.assert_array_equal(_two_rival_cost(first, second), table)
    # Negative gaps (the rival already wins) are clamped as in the reference.
    np.testing.assert_array_equal(_two_rival_cost(np.array([-3]), np.array([4])), [table[0, 4]])


def test_run_off_on_finite_aggregation_with_one_shift_is_at_least_dpa_run_off():
    rng = np.random.default_rng(7)
    logits = random_logits(rng, 400, 9, 4)
    fa_prediction, fa_certificate = finite_aggregation_run_off(logits, [3])
    prediction, certificate = run_off_election(logits)
    np.testing.assert_array_equal(fa_prediction, prediction)
    assert (fa_certificate >= certificate).all()


# --- hand-checked examples ------------------------------------------------------------------------


def test_greedy_cost_examples():
    reductions = np.array([[3, 1, 2, 2]] * 4)
    # Largest first: 3, 2, 2, 1; gap 7 needs three buckets, gap 0 none, gap 9 > 8 is out of reach.
    np.testing.assert_array_equal(_greedy_cost(np.array([7, 0, -2, 9]), reductions), [3, 0, 0, 5])
    np.testing.assert_array_equal(_greedy_cost(np.array([1, 3]), np.zeros((2, 3), int) + [0, 0, 1]),
                                  [1, 4])


def one_hot_logits(votes, num_classes=NUM_CLASSES):
    return np.eye(num_classes)[np.array(votes)][None].astype(float)


def test_finite_aggregation_examples():
    # k = 2, d = 2: bucket h reaches models h and h + 1 (mod 4).
    # Four votes for 0: one bucket turns two models, 2:2 still goes to 0; two buckets reach 3.
    assert finite_aggregation(one_hot_logits([0, 0, 0, 0]), [0, 1])[1].tolist() == [1]
    assert dpa(one_hot_logits([0, 0, 0, 0]))[1].tolist() == [2]
    # Votes 0, 0, 0, 1: bucket 0 turns models 0, 1 to class 1 → 1:3.
    assert finite_aggregation(one_hot_logits([0, 0, 0, 1]), [1, 0])[1].tolist() == [0]
    # Prediction is the plurality vote, ties to the smaller class.
    prediction, _ = finite_aggregation(one_hot_logits([2, 1, 1, 2]), [0, 2])
    assert prediction.tolist() == [1]


def test_run_off_election_example_beats_dpa():
    # Votes 0, 0, 0 | 1, 1 | 2, 2; the voters of 2 prefer 0 to 1, so round two is 5:2 for 0.
    logits = np.array(
        [[[3.0, 2.0, 1.0]] * 3 + [[1.0, 3.0, 0.0]] * 2 + [[2.0, 1.0, 3.0]] * 2]
    )
    assert dpa(logits)[0].tolist() == [0] and dpa(logits)[1].tolist() == [0]
    # R1: rivals 1 and 2 both need gap 2 closed: max(1, 1, ⌈4/3⌉) = 2 models.
    # R2: class 1 needs round two 5:2 → ⌈(10 − 7 + 1)/2⌉ = 2; class 2 needs max(1, 2) = 2.
    assert run_off_election(logits)[0].tolist() == [0]
    assert run_off_election(logits)[1].tolist() == [1]
    assert finite_aggregation_run_off(logits, [0])[1].tolist() == [1]


def test_run_off_election_second_round_decides():
    # Round one 1:1:1 → finalists 0 and 1; models 1 and 2 prefer 1 to 0, so 1 wins round two.
    logits = np.array([[[3.0, 2.0, 0.0], [0.0, 2.0, 3.0], [0.0, 3.0, 1.0]]])
    prediction, certificate = run_off_election(logits)
    assert prediction.tolist() == [1] and certificate.tolist() == [0]
    assert dpa(logits)[0].tolist() == [0]


def test_run_off_election_two_classes():
    # With two classes round one never eliminates; round two 2:1 survives no change.
    logits = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    assert run_off_election(logits)[1].tolist() == [0]
    logits = np.array([[[1.0, 0.0]] * 5])
    # Round two 5:0: ⌈(10 − 5 + 1)/2⌉ = 3 changes needed → certificate 2.
    assert run_off_election(logits)[1].tolist() == [2]


def test_certificates_do_not_depend_on_chunking(monkeypatch):
    rng = np.random.default_rng(11)
    logits = random_logits(rng, 700, 60, 10).astype(np.float32)
    shifts = [0, 7, 31]
    certifiers = (
        lambda x: finite_aggregation(x, shifts),
        lambda x: finite_aggregation_run_off(x, shifts),
        run_off_election,
    )
    whole = [certify(logits) for certify in certifiers]
    monkeypatch.setattr(certify_module, "_CHUNK_ELEMENTS", 97 * 60 * 10)  # chunks of 97 points
    for certify, expected in zip(certifiers, whole):
        for got, want in zip(certify(logits), expected):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == np.int64 and got.shape == (700,)


# --- input validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shifts,message",
    [
        ([], "non-empty 1-D sequence of ints"),
        ([[0, 1]], "non-empty 1-D sequence of ints"),
        ([0.0, 1.0], "non-empty 1-D sequence of ints"),
        ([True, False], "non-empty 1-D sequence of ints"),
        ([1, 1], "distinct"),
        ([0, 6], r"\[0, 6\)"),
        ([-1, 2], r"\[0, 6\)"),
        ([0, 1, 2, 3], "not a multiple of 4"),
    ],
)
@pytest.mark.parametrize("certify", [finite_aggregation, finite_aggregation_run_off])
def test_bad_shifts_are_rejected(certify, shifts, message):
    with pytest.raises(ValueError, match=message):
        certify(np.zeros((2, 6, 3)), shifts)


@pytest.mark.parametrize(
    "certify",
    [
        lambda x: finite_aggregation(x, [0]),
        run_off_election,
        lambda x: finite_aggregation_run_off(x, [0]),
    ],
)
@pytest.mark.parametrize("shape", [(4, 3), (2, 0, 3), (2, 4, 1)])
def test_bad_logits_are_rejected(certify, shape):
    with pytest.raises(ValueError, match="logits"):
        certify(np.zeros(shape))
