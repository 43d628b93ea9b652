"""The metrics of the results tables, each defined once here (docs/metrics.md says the same in words).

A prediction is correct when it equals the label; an abstention (:data:`ABSTAIN`) is never correct.
A certified radius counts at r when it is ≥ r (> r with ``strict``, as RAB counts). Shares are over
all the points given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# the prediction of a smoothed classifier that abstains (Cohen et al.'s -1)
ABSTAIN = -1


def certified_accuracy(radius: np.ndarray, correct: np.ndarray, at: Sequence[float], strict: bool = False
                       ) -> np.ndarray:
    """Share of points that are ``correct`` with ``radius ≥ r`` (``radius > r`` when ``strict``), for each
    r in ``at`` (NaN for no points)."""
    radius, correct = np.asarray(radius, dtype=float), np.asarray(correct, dtype=bool)
    at = np.asarray(at, dtype=float)
    if len(radius) == 0:
        return np.full(len(at), np.nan)
    holds = radius[None, :] > at[:, None] if strict else radius[None, :] >= at[:, None]
    return (holds & correct).mean(axis=1)


def average_certified_radius(radius: np.ndarray, correct: np.ndarray) -> float:
    """ACR: the sum of the radii of the correct points over the number of points."""
    radius, correct = np.asarray(radius, dtype=float), np.asarray(correct, dtype=bool)
    return float(np.where(correct, radius, 0.0).sum() / len(radius))


def median_certified(radius: np.ndarray, correct: np.ndarray) -> tuple[int, int]:
    """(the largest ρ with certified accuracy ≥ 0.5, or −1; #{ρ ≥ 0 : accuracy(ρ) ≥ 0.5}, as the DPA code prints)."""
    radius, correct = np.asarray(radius), np.asarray(correct, dtype=bool)
    correct_radii = np.sort(radius[correct])[::-1]
    needed = int(np.ceil(0.5 * len(radius)))
    if needed == 0 or len(correct_radii) < needed:
        return -1, 0
    largest = int(correct_radii[needed - 1])
    return largest, largest + 1


def attack_success_rate(predictions: np.ndarray, target: int) -> float:
    """Share of triggered images predicted as the target (NaN for no images)."""
    predictions = np.asarray(predictions)
    return float((predictions == target).mean()) if len(predictions) else float("nan")


def attack_success_per_model(triggered_logits: np.ndarray, target: int) -> np.ndarray:
    """The attack success rate of each model of a score matrix [n, models, classes] (empty for no images)."""
    if len(triggered_logits) == 0:
        return np.zeros(0)
    return (triggered_logits.argmax(axis=2) == target).mean(axis=0)


def robust_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """RA: share of triggered non-target images predicted as their true label (NaN for no images)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean()) if len(predictions) else float("nan")


def certified_robust_accuracy(predictions: np.ndarray, labels: np.ndarray, radius: np.ndarray,
                              budget: float) -> float:
    """Share of triggered non-target images predicted as their true label and certified for ≥ ``budget``."""
    predictions, labels, radius = np.asarray(predictions), np.asarray(labels), np.asarray(radius, dtype=float)
    if not len(predictions):
        return float("nan")
    return float(((predictions == labels) & (radius >= budget)).mean())


def defense_effectiveness_rate(asr_undefended: float, acc_undefended: float, asr: float, acc: float) -> float:
    """BackdoorBench's DER = [max(0, ASR_u − ASR_d) − max(0, ACC_u − ACC_d) + 1] / 2, in [0, 1]."""
    return (max(0.0, asr_undefended - asr) - max(0.0, acc_undefended - acc) + 1) / 2


def robust_improvement_rate(ra_undefended: float, acc_undefended: float, ra: float, acc: float) -> float:
    """BackdoorBench's RIR = [max(0, RA_d − RA_u) − max(0, ACC_u − ACC_d) + 1] / 2, in [0, 1]."""
    return (max(0.0, ra - ra_undefended) - max(0.0, acc_undefended - acc) + 1) / 2
