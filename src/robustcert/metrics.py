"""The metrics of the results tables, each defined once here (docs/metrics.md says the same in words).

A prediction is correct when it equals the label; an abstention (:data:`ABSTAIN`) is never correct.
A certified radius counts at r when it is ≥ r (> r with ``strict``, as RAB counts). Shares are over
all the points given, except that the backdoor metrics take the whole triggered test set (every class)
and count in ``asr``, ``ra`` and ``certified_ra`` only the images whose true class is not the target
(:func:`non_target`). A share of no points is NaN, never 0: the metric is undefined there.
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


def non_target(labels: np.ndarray, target: int) -> np.ndarray:
    """Which triggered test images count in ``asr``, ``ra`` and ``certified_ra``: those whose true class
    is not the attack's target."""
    return np.asarray(labels) != target


def attack_success_rate(predictions: np.ndarray, labels: np.ndarray, target: int) -> float:
    """ASR (BackdoorBench's): among the triggered images whose true class is not the target, the share
    predicted as the target. NaN when there is no such image (no trigger, or only target-class images)."""
    keep = non_target(labels, target)
    return _share(np.asarray(predictions)[keep] == target)


def attack_success_rate_all(predictions: np.ndarray, target: int) -> float:
    """ASR with the target class (TrojanZoo's, our ``asr_all``): among all triggered images, target-class
    images included, the share predicted as the target. NaN when there is no triggered image (no trigger)."""
    return _share(np.asarray(predictions) == target)


def attack_success_per_model(triggered_logits: np.ndarray, labels: np.ndarray, target: int) -> np.ndarray:
    """The ``asr`` of each model of a score matrix [n, models, classes] on triggered images of these
    ``labels`` (empty when no image is of a class other than the target)."""
    logits = np.asarray(triggered_logits)[non_target(labels, target)]
    if len(logits) == 0:
        return np.zeros(0)
    return (logits.argmax(axis=2) == target).mean(axis=0)


def robust_accuracy(predictions: np.ndarray, labels: np.ndarray, target: int) -> float:
    """RA: among the triggered images whose true class is not the target, the share predicted as their
    true label. NaN when there is no such image."""
    keep = non_target(labels, target)
    return _share(np.asarray(predictions)[keep] == np.asarray(labels)[keep])


def certified_robust_accuracy(predictions: np.ndarray, labels: np.ndarray, radius: np.ndarray,
                              budget: float | np.ndarray, target: int, strict: bool = False) -> float:
    """Among the triggered images whose true class is not the target, the share predicted as their true
    label with a radius ≥ ``budget`` (> with ``strict``; ``budget`` one number or one per image). NaN when
    there is no such image."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    radius, budget = np.asarray(radius, dtype=float), np.broadcast_to(np.asarray(budget, dtype=float), labels.shape)
    keep = non_target(labels, target)
    holds = radius > budget if strict else radius >= budget
    return _share(((predictions == labels) & holds)[keep])


def trigger_metrics(predictions: np.ndarray, labels: np.ndarray, target: int) -> dict[str, float]:
    """``asr``, ``asr_all`` and ``ra`` of one classifier's predictions on the triggered test images of
    these true ``labels`` (every class, the target's included)."""
    return {"asr": attack_success_rate(predictions, labels, target),
            "asr_all": attack_success_rate_all(predictions, target),
            "ra": robust_accuracy(predictions, labels, target)}


def _share(hits: np.ndarray) -> float:
    """The share of true entries; NaN (not 0) for none: the metric is undefined."""
    return float(hits.mean()) if len(hits) else float("nan")


def defense_effectiveness_rate(asr_undefended: float, acc_undefended: float, asr: float, acc: float) -> float:
    """BackdoorBench's DER = [max(0, ASR_u − ASR_d) − max(0, ACC_u − ACC_d) + 1] / 2, in [0, 1]."""
    return (max(0.0, asr_undefended - asr) - max(0.0, acc_undefended - acc) + 1) / 2


def robust_improvement_rate(ra_undefended: float, acc_undefended: float, ra: float, acc: float) -> float:
    """BackdoorBench's RIR = [max(0, RA_d − RA_u) − max(0, ACC_u − ACC_d) + 1] / 2, in [0, 1]."""
    return (max(0.0, ra - ra_undefended) - max(0.0, acc_undefended - acc) + 1) / 2


def highest_lower_bound(n: int, alpha: float) -> float:
    """The largest one-sided (1 − alpha) Clopper–Pearson lower bound that ``n`` draws can give (every draw
    a success): alpha^(1/n). A certificate that needs a bound above some p is out of reach below
    :func:`fewest_draws`."""
    return float(alpha ** (1 / n))


def fewest_draws(alpha: float, above: float) -> int:
    """The fewest draws whose :func:`highest_lower_bound` at ``alpha`` exceeds ``above`` (in (0, 1))."""
    n = max(1, int(np.log(alpha) / np.log(above)))
    while highest_lower_bound(n, alpha) > above and n > 1:
        n -= 1
    while highest_lower_bound(n, alpha) <= above:
        n += 1
    return n
