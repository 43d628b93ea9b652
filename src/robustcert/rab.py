"""RAB: randomized smoothing of the training set, certified against backdoors of bounded L2 norm
(Weber, Xu, Karlaš, Zhang, Li; IEEE S&P 2023; docs/methods.md §3).

N models are trained, model i on the whole (possibly poisoned) training set plus one Gaussian
noise draw N(0, σ²) per training example, fixed for all its epochs (training objective
``fixed_noise`` of :data:`robustcert.train.OBJECTIVES`); at test time model i sees every test input
plus its own fixed noise draw (:class:`robustcert.score.TestNoise`). The smoothed soft classifier
ĝ(x) is the mean of the N models' softmax scores. With p_A, p_B its two largest scores, the
prediction argmax ĝ holds, with probability at least 1 − α over the noise draws, against any
backdoor whose trigger, stacked over the poisoned training samples and the test input, has an L2
norm (in [0, 1] pixel units) below

    R = (σ/2) (Φ⁻¹(p̲_A) − Φ⁻¹(p̄_B)),  p̲_A = max(ε, p_A − h),  p̄_B = min(1 − ε, p_B + h),
    h = √(ln(1/α) / (2N))  (Hoeffding over the N models).

A point whose p̲_A ≤ p̄_B has radius 0: certified at no radius (RAB counts certified accuracy at r
as R > r, strictly), while its prediction still counts for accuracy. The certificate covers the
change of the images; the labels of the training set are those of the set the models were trained
on (dirty labels included), so the clean reference of a dirty-label attack is the same relabelled
set without its triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from robustcert import metrics
from robustcert.data import Split
from robustcert.poison import Poison, triggered_test_set

ALPHA = 0.001
EPSILON = 1e-8
# results rows of RAB's radii are on this axis (all.tsv)
AXIS = "l2_train"


def certify(scores: np.ndarray, sigma: float, alpha: float = ALPHA, epsilon: float = EPSILON
            ) -> tuple[np.ndarray, np.ndarray]:
    """RAB's certificate of the smoothed classifier ĝ = mean of the N models' scores.

    :param scores: [n, N, C] class probabilities of each of the N models on each of n test inputs.
    :param sigma: the standard deviation of the training and test noise, in [0, 1] pixel units.
    :param alpha: with probability at least 1 − alpha the radius is a lower bound of ĝ's robustness.
    :return: ``prediction`` [n], the argmax of ĝ (ties to the smaller class index), and ``radius``
        [n] ≥ 0, the L2 norm of the total trigger that the prediction provably survives.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    scores = _check(scores)
    return _radius(scores, sigma, hoeffding_margin(scores.shape[1], alpha), epsilon)


def hoeffding_margin(n_models: int, alpha: float) -> float:
    """h = √(ln(1/α) / (2N)): p̲_A = p_A − h and p̄_B = p_B + h hold with probability 1 − α over N models."""
    return float(np.sqrt(np.log(1 / alpha) / (2 * n_models))) if n_models else np.inf


def fewest_certifying_models(alpha: float) -> int:
    """The fewest models N with which any point can be certified at all: h < 1/2 (p̲_A = 1 − h > p̄_B = h
    when every model puts all its score on one class), i.e. N > 2 ln(1/α)."""
    n_models = max(1, int(2 * np.log(1 / alpha)))
    while hoeffding_margin(n_models, alpha) >= 0.5:
        n_models += 1
    return n_models


def certify_expected(scores: np.ndarray, sigma: float, epsilon: float = EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """The radius of the expected scores, taking ĝ's p_A and p_B as exact (no Hoeffding term): what the
    certificate tends to as N grows, NOT a certificate for a finite N."""
    return _radius(_check(scores), sigma, 0.0, epsilon)


def _check(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[2] < 2:
        raise ValueError(f"scores must be [n, N, C] with C ≥ 2 classes, got shape {scores.shape}")
    return scores


def _radius(scores: np.ndarray, sigma: float, margin: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and radius with p̲_A = p_A − margin, p̄_B = p_B + margin, both clamped into [ε, 1 − ε]."""
    from scipy.stats import norm  # scipy.stats: imported where used, so that a training job does not pay for it

    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    mean = scores.mean(axis=1)
    prediction = mean.argmax(axis=1)
    top_two = np.sort(mean, axis=1)[:, ::-1][:, :2]
    # with a Hoeffding margin h > ε only the clamps act (p̲_A ≥ ε, p̄_B ≤ 1 − ε); without one, both
    p_a = np.clip(top_two[:, 0] - margin, epsilon, 1 - epsilon)
    p_b = np.clip(top_two[:, 1] + margin, epsilon, 1 - epsilon)
    radius = np.where(p_a > p_b, sigma / 2 * (norm.ppf(p_a) - norm.ppf(p_b)), 0.0)
    return prediction.astype(np.int64), np.maximum(radius, 0.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of logits [..., C] (in float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# the certificates of one score matrix by name: (scores, σ, α) → (prediction, radius)
CERTIFICATES: dict[str, Callable[[np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]] = {
    "rab": certify,
    "rab_expected": lambda scores, sigma, alpha: certify_expected(scores, sigma),
}


def certified_accuracy(radius: np.ndarray, correct: np.ndarray, at: Sequence[float]) -> np.ndarray:
    """RAB's certified accuracy at each r of ``at``: the share of points that are correct with R > r."""
    return metrics.certified_accuracy(radius, correct, at, strict=True)


def certified_robust_accuracy(predictions: np.ndarray, labels: np.ndarray, radius: np.ndarray,
                              needed: np.ndarray, target: int) -> float:
    """Share of triggered non-target test inputs predicted as their true label with a radius larger than
    ``needed``, the L2 norm of each one's total trigger (training-set change and test trigger together)."""
    return metrics.certified_robust_accuracy(predictions, labels, radius, needed, target, strict=True)


def total_trigger_norms(poison: Poison, split: Split) -> tuple[float, np.ndarray]:
    """What an attack asks of the certificate, in [0, 1] pixel units: the L2 norm of its change of the
    training set (every poisoned image stacked; labels are not counted) and, for each triggered test
    image (in :func:`robustcert.poison.triggered_test_set` order), the L2 norm of the whole trigger,
    √(‖Δ_train‖² + ‖δ_i‖²) with δ_i that image's trigger as applied (after rounding and clipping)."""
    change = poison.x.astype(np.float64) / 255 - split.x_train[poison.index].astype(np.float64) / 255
    training = float(np.sqrt((change ** 2).sum()))
    index, triggered = triggered_test_set(poison, split.x_test, split.y_test)
    test = (triggered.astype(np.float64) - split.x_test[index]).reshape(len(index), int(np.prod(split.image_shape))) / 255
    return training, np.sqrt(training ** 2 + (test ** 2).sum(axis=1))
