"""RAB (robustcert.rab): the certificate against a direct computation, the fixed noise of training and
scoring, and the attacks of RAB's paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from robustcert import rab


def direct_radius(scores: np.ndarray, sigma: float, alpha: float | None, eps: float = 1e-8) -> tuple[int, float]:
    """One point's prediction and radius, computed as the issue states it, class by class."""
    mean = [sum(model[c] for model in scores) / len(scores) for c in range(len(scores[0]))]
    order = sorted(range(len(mean)), key=lambda c: (-mean[c], c))
    h = 0.0 if alpha is None else math.sqrt(math.log(1 / alpha) / (2 * len(scores)))
    p_a, p_b = max(eps, mean[order[0]] - h), min(1 - eps, mean[order[1]] + h)
    if alpha is None:  # no margin: the expected scores are clamped into [ε, 1 − ε] on both sides
        p_a, p_b = min(p_a, 1 - eps), max(p_b, eps)
    radius = sigma / 2 * (norm.ppf(p_a) - norm.ppf(p_b)) if p_a > p_b else 0.0
    return order[0], max(radius, 0.0)


def test_certify_matches_a_direct_computation_on_random_score_matrices():
    rng = np.random.default_rng(0)
    for n_models, classes in ((1, 2), (7, 2), (50, 3), (400, 10)):
        logits = rng.normal(size=(30, n_models, classes)) * rng.uniform(0, 6, size=(30, 1, 1))
        logits[:, :, 0] += rng.uniform(0, 8, size=(30, 1))  # some confident points
        scores = rab.softmax(logits)
        for alpha in (0.001, 0.1):
            prediction, radius = rab.certify(scores, 0.5, alpha)
            expected = [direct_radius(point, 0.5, alpha) for point in scores]
            assert prediction.tolist() == [e[0] for e in expected]
            np.testing.assert_allclose(radius, [e[1] for e in expected], rtol=1e-12, atol=1e-12)
        prediction, radius = rab.certify_expected(scores, 0.5)
        expected = [direct_radius(point, 0.5, None) for point in scores]
        np.testing.assert_allclose(radius, [e[1] for e in expected], rtol=1e-12, atol=1e-12)


def test_points_within_the_hoeffding_margin_have_radius_zero_and_keep_their_prediction():
    # N = 10, α = 0.001: h = √(ln 1000 / 20) ≈ 0.588; p_A = 0.7 cannot beat p_B = 0.3 by 2h
    scores = np.tile([[0.3, 0.7]], (10, 1))[None]
    prediction, radius = rab.certify(scores, 1.0, 0.001)
    assert prediction.tolist() == [1] and radius.tolist() == [0.0]
    _, expected = rab.certify_expected(scores, 1.0)
    assert expected[0] == pytest.approx(0.5 * (norm.ppf(0.7) - norm.ppf(0.3)))


def test_ties_go_to_the_smaller_class_and_have_radius_zero():
    scores = np.full((1, 4, 3), 1 / 3)
    prediction, radius = rab.certify(scores, 1.0, 0.001)
    assert prediction.tolist() == [0] and radius.tolist() == [0.0]
    assert rab.certify_expected(scores, 1.0)[1].tolist() == [0.0]


def test_epsilon_clamps_the_bounds_of_unanimous_scores():
    # every model certain: p_A = 1, p_B = 0; with no Hoeffding term both are clamped by ε
    scores = np.tile([[1.0, 0.0]], (1000, 1))[None]
    _, radius = rab.certify_expected(scores, 2.0)
    assert radius[0] == pytest.approx(norm.ppf(1 - 1e-8) - norm.ppf(1e-8))
    # with it, p̲_A = 1 − h and p̄_B = h, both inside (ε, 1 − ε)
    h = math.sqrt(math.log(1000) / 2000)
    assert rab.certify(scores, 2.0, 0.001)[1][0] == pytest.approx(norm.ppf(1 - h) - norm.ppf(h))
    # a margin above p_A clamps p̲_A at ε, which is then no larger than p̄_B: radius 0
    assert rab.certify(np.array([[[0.0, 1.0]]]), 1.0, 0.001)[1].tolist() == [0.0]


def test_certified_accuracy_counts_radii_strictly_above_r():
    radius = np.array([0.0, 0.5, 0.5, 1.0])
    correct = np.array([1, 1, 0, 1])
    assert rab.certified_accuracy(radius, correct, [0.0, 0.5, 1.0]).tolist() == [0.5, 0.25, 0.0]


def test_certified_robust_accuracy_needs_a_radius_above_each_points_trigger():
    predictions, labels = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    radius, needed = np.array([2.0, 1.0, 5.0, 0.5]), np.array([1.0, 1.0, 1.0, 0.4])
    assert rab.certified_robust_accuracy(predictions, labels, radius, needed) == 0.5


def test_bad_scores_and_parameters_are_refused():
    with pytest.raises(ValueError, match=r"\[n, N, C\]"):
        rab.certify(np.zeros((3, 2)), 1.0, 0.001)
    with pytest.raises(ValueError, match="alpha"):
        rab.certify(np.zeros((1, 2, 2)), 1.0, 1.5)
    with pytest.raises(ValueError, match="sigma"):
        rab.certify(np.zeros((1, 2, 2)), 0.0, 0.001)
