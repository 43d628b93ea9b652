"""Certificates of aggregation defenses computed from score matrices.

Every function takes ``logits`` of shape [n, m, C] (n test points, m base models, C classes;
column j is the model of partition/subset j) and returns ``(prediction, certificate)``, two
int64 arrays of shape [n]. Ties go to the smaller class index everywhere (docs/methods.md §7).
The certificate is the number of training-set insertions or deletions the prediction provably
survives; it is not yet compared with labels.

Finite Aggregation takes ``shifts``: with m = k·d models, a training sample of bucket
h = hash mod k·d is in the d subsets (h + s) mod k·d, s in shifts, so one poisoned sample reaches
the d models of its bucket (d = 1 is DPA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft

# No set of changes reaches the goal (larger than any finite cost).
_NEVER = np.iinfo(np.int64).max
# Bound on the elements of one [points, models, classes] work array (chunks of test points).
_CHUNK_ELEMENTS = 1 << 22


def vote_counts(logits: np.ndarray) -> np.ndarray:
    """Votes per class, [n, C]: model j votes for the argmax of its logits (ties → smaller index)."""
    logits = _check_logits(logits)
    n, _, num_classes = logits.shape
    votes = logits.argmax(axis=2)
    counts = np.zeros((n, num_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(n)[:, None], votes), 1)
    return counts


def plurality(counts: np.ndarray) -> np.ndarray:
    """The class with the most votes, ties → smaller index."""
    return counts.argmax(axis=1)


def dpa(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deep Partition Aggregation (Levine & Feizi 2021).

    prediction = plurality vote; certificate
    ρ̄ = ⌊(n_c − max_{c'≠c}(n_{c'} + 1[c' < c])) / 2⌋ for the predicted class c: the prediction
    holds under any ρ̄ insertions or deletions of training samples (each reaches one model).
    """
    counts = vote_counts(logits)
    prediction = plurality(counts)
    n, num_classes = counts.shape
    rows = np.arange(n)
    top = counts[rows, prediction]
    # A rival c' beats c on a tie when c' < c: it needs one vote fewer.
    rival = counts + (np.arange(num_classes)[None, :] < prediction[:, None])
    rival[rows, prediction] = np.iinfo(np.int64).min
    certificate = (top - rival.max(axis=1)) // 2
    return prediction, certificate.astype(np.int64)


def finite_aggregation(
    logits: np.ndarray, shifts: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Finite Aggregation (Wang, Levine & Feizi, ICML 2022).

    ref: wangwenxiao/FiniteAggregation, FiniteAggregation_cerfity.py.
    logits: [n, k·d, C], column j = model of subset j. shifts: the d distinct offsets in [0, k·d)
    (the reference draws them with ``random.seed(999999999 + 208);
    random.sample(range(k * d), d)``). Returns (prediction, certificate), int64 [n] each.

    prediction = plurality vote (as :func:`dpa`). For every rival c ≠ y: gap = N_y − N_c − 1[c < y];
    poisoning bucket h lowers it by at most Σ_{s ∈ shifts} (1 + 1[f_j = y] − 1[f_j = c]) over its
    models j = (h + s) mod k·d; the radius for c is the largest number of buckets whose largest such
    reductions sum to at most the gap (greedy, largest first); certificate = min over c.
    Guarantee: the prediction holds under any ``certificate`` insertions or deletions of training
    samples, each of which reaches the d models of its bucket. With d = 1 this is :func:`dpa`.
    """
    logits = _check_logits(logits)
    shifts = _check_shifts(shifts, logits.shape[1])
    return _by_chunks(logits, lambda part: _finite_aggregation_chunk(part, shifts))


def run_off_election(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-Off Election on DPA models, DPA+ROE (Rezaei, Banihashem, Chegini & Feizi, ICML 2023).

    ref: k1rezaei/DPA-election, dpa_roe_certify.py and dp_calc.py.
    logits: [n, m, C]. Returns (prediction, certificate), int64 [n] each.

    Round one: the plurality vote gives the top two classes m1, m2 (ties → smaller index). Round
    two: every model votes between them by its logits, a model with equal logits for m2; a tie of
    round-two votes goes to the smaller index. Certificate = min(R1, R2) − 1, where R1 and R2 are
    lower bounds on the poisoned samples (each reaching one model) needed to
    - R1: eliminate the prediction p in round one: min over pairs of rivals {c1, c2} of the paper's
      dynamic program on the gaps N_p − N_c + 1[c > p] (clamped at 0), here in closed form;
    - R2: beat p in round two: min over c ≠ p of max(⌈g1/2⌉, ⌈g2/2⌉), with g1 = N_s − N_c + 1[c > s]
      (c gets past the other finalist s) and g2 = 2·#{models with logit_p > logit_c} − m + 1[c > p]
      (c wins round two).
    Guarantee: the prediction holds under any ``certificate`` insertions or deletions of training
    samples. Difference from the reference: g2 counts a model with equal logits against p (strict
    >, as the reference), so exact logit ties can give R2 = 0, where the reference fails an
    assertion; the certificate is clamped at 0 (no poisoning cannot change the prediction).
    """
    logits = _check_logits(logits)
    return _by_chunks(logits, _run_off_election_chunk)


def finite_aggregation_run_off(
    logits: np.ndarray, shifts: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run-Off Election on Finite Aggregation models, FA+ROE (Rezaei et al., ICML 2023).

    ref: k1rezaei/DPA-election, fa_roe_certify.py.
    logits, shifts and the return value as in :func:`finite_aggregation`.

    The prediction is that of :func:`run_off_election`. Every lower bound counts poisoned buckets
    by FA's greedy bound Certv1 (the fewest buckets whose largest possible reductions close a gap):
    - R1 = min over pairs of rivals {c1, c2} of max(Certv1(p → c1), Certv1(p → c2), Certv1 of the
      summed gaps with bucket reductions Σ_j (1 + 2·1[f_j = p] − 1[f_j = c1] − 1[f_j = c2])). The
      paper's code uses this here instead of the dynamic program of DPA+ROE (docs/methods.md §2);
    - R2 = min over c ≠ p of max(Certv1(s → c), Certv1 of g2 (as in :func:`run_off_election`) with
      bucket reductions 2·#{models j of the bucket with logit_p > logit_c}).
    Certificate = min(R1, R2) − 1, clamped at 0 as in :func:`run_off_election`. Guarantee: the
    prediction holds under any ``certificate`` insertions or deletions of training samples, each
    of which reaches the d models of its bucket. With d = 1 it is never below
    :func:`run_off_election`.
    """
    logits = _check_logits(logits)
    shifts = _check_shifts(shifts, logits.shape[1])
    return _by_chunks(logits, lambda part: _finite_aggregation_run_off_chunk(part, shifts))


def _finite_aggregation_chunk(
    logits: np.ndarray, shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    counts = vote_counts(logits)
    prediction = plurality(counts)
    bucket_votes = _bucket_sums(_one_hot_votes(logits), shifts)
    costs = _flip_costs(counts, bucket_votes, prediction, len(shifts))
    return prediction, _min_over_rivals(costs, prediction) - 1


def _run_off_election_chunk(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = vote_counts(logits)
    prediction, second = _run_off_rounds(logits, counts)
    gaps = _gaps(counts, prediction)
    wins = _prefers(logits, prediction).sum(axis=1)

    def pair_cost(a: int, b: int) -> np.ndarray:
        return _two_rival_cost(gaps[:, a], gaps[:, b])

    return _run_off_certificate(
        prediction,
        _half_up(_gaps(counts, second)),
        _half_up(_round_two_gaps(wins, prediction, logits.shape[1])),
        pair_cost,
    )


def _finite_aggregation_run_off_chunk(
    logits: np.ndarray, shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    counts = vote_counts(logits)
    d = len(shifts)
    prediction, second = _run_off_rounds(logits, counts)
    bucket_votes = _bucket_sums(_one_hot_votes(logits), shifts)
    # A learner moves its vote p → c1 (3 off the summed gaps), other → c1 (1), c2 → c1 (0).
    most = d + 2 * bucket_votes[np.arange(len(prediction)), prediction]
    gaps = _gaps(counts, prediction)
    flip = _flip_costs(counts, bucket_votes, prediction, d)

    def pair_cost(a: int, b: int) -> np.ndarray:
        both = _greedy_cost(gaps[:, a] + gaps[:, b], most - bucket_votes[:, a] - bucket_votes[:, b])
        return np.maximum(np.maximum(flip[:, a], flip[:, b]), both)

    prefers = _prefers(logits, prediction)
    round_two_gaps = _round_two_gaps(prefers.sum(axis=1), prediction, logits.shape[1])
    bucket_prefers = _bucket_sums(prefers, shifts)
    num_classes = counts.shape[1]
    round_two = np.stack(
        [_greedy_cost(round_two_gaps[:, c], 2 * bucket_prefers[:, c]) for c in range(num_classes)],
        axis=1,
    )
    return _run_off_certificate(
        prediction, _flip_costs(counts, bucket_votes, second, d), round_two, pair_cost
    )


def _run_off_rounds(logits: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROE prediction and the other finalist, [n] each.

    Round one: plurality winner m1 and runner-up m2 (ties → smaller index, as a stable sort).
    Round two: margin = 2·#{models with logit_m1 > logit_m2} − m (equal logits count for m2);
    m1 wins when margin > 0, or margin = 0 and m1 < m2.
    """
    rows = np.arange(counts.shape[0])
    first = plurality(counts)
    others = counts.copy()
    others[rows, first] = -1
    runner_up = plurality(others)
    margin = 2 * (logits[rows, :, first] > logits[rows, :, runner_up]).sum(axis=1) - logits.shape[1]
    first_wins = (margin > 0) | ((margin == 0) & (first < runner_up))
    prediction = np.where(first_wins, first, runner_up)
    return prediction, first + runner_up - prediction


def _run_off_certificate(
    prediction: np.ndarray,
    second_costs: np.ndarray,
    round_two_costs: np.ndarray,
    pair_cost: Callable[[int, int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """ROE certificate min(R1, R2) − 1, clamped at 0.

    R2 = min over c ≠ p of max(second_costs[:, c], round_two_costs[:, c]): c must reach round two
    past the other finalist and win it. R1 = min over pairs {a, b} of rivals of pair_cost(a, b):
    both must beat p in round one (with two classes there is no pair and R1 = ∞).
    """
    best = _min_over_rivals(np.maximum(second_costs, round_two_costs), prediction)
    num_classes = second_costs.shape[1]
    for a in range(num_classes):
        for b in range(a + 1, num_classes):
            rivals = (prediction != a) & (prediction != b)
            best = np.where(rivals, np.minimum(best, pair_cost(a, b)), best)
    return prediction, np.maximum(best - 1, 0)


def _two_rival_cost(gap_a: np.ndarray, gap_b: np.ndarray) -> np.ndarray:
    """Fewest changed models after which two rivals both beat the winner (gaps clamped at 0).

    The paper's dynamic program (ref dp_calc.py: A[i, j] = 1 + min(A[i−2, j−1], A[i−1, j−2]))
    solved in closed form: a changed model lowers the two gaps by at most (2, 1) or (1, 2), so the
    fewest is max(⌈i/2⌉, ⌈j/2⌉, ⌈(i + j)/3⌉), which the table equals.
    """
    a = np.maximum(gap_a, 0)
    b = np.maximum(gap_b, 0)
    return np.maximum(np.maximum(_half_up(a), _half_up(b)), -(-(a + b) // 3))


def _half_up(gaps: np.ndarray) -> np.ndarray:
    """⌈max(gap, 0)/2⌉: models to change to close a gap when each change lowers it by at most 2."""
    return (np.maximum(gaps, 0) + 1) // 2


def _gaps(counts: np.ndarray, winner: np.ndarray) -> np.ndarray:
    """[n, C]: N_w − N_c + 1[c > w]; c beats the winner w in a plurality vote iff it is ≤ 0."""
    classes = np.arange(counts.shape[1])
    own = counts[np.arange(counts.shape[0]), winner]
    return own[:, None] - counts + (classes[None, :] > winner[:, None])


def _round_two_gaps(wins: np.ndarray, prediction: np.ndarray, num_models: int) -> np.ndarray:
    """[n, C]: 2·wins − m + 1[c > p]; c beats the prediction p in round two iff it is ≤ 0."""
    classes = np.arange(wins.shape[1])
    return 2 * wins - num_models + (classes[None, :] > prediction[:, None])


def _flip_costs(
    counts: np.ndarray, bucket_votes: np.ndarray, winner: np.ndarray, d: int
) -> np.ndarray:
    """[n, C]: FA's greedy bound on the buckets to poison before class c beats the winner (Certv1).

    A bucket's learners move votes w → c (2 off the gap), other → c (1) or are already c (0).
    """
    n, num_classes = counts.shape
    most = d + bucket_votes[np.arange(n), winner]
    gaps = _gaps(counts, winner)
    return np.stack(
        [_greedy_cost(gaps[:, c], most - bucket_votes[:, c]) for c in range(num_classes)],
        axis=1,
    )


def _greedy_cost(gap: np.ndarray, reductions: np.ndarray) -> np.ndarray:
    """Fewest buckets whose reductions, largest first, sum to at least the gap, [n].

    gap [n]; reductions [n, buckets], non-negative ints. 0 where gap ≤ 0; buckets + 1 where all of
    them together fall short. Counts the buckets of each reduction value instead of sorting.
    """
    n, num_buckets = reductions.shape
    levels = int(reductions.max(initial=0)) + 1
    flat = (np.arange(n)[:, None] * levels + reductions).ravel()
    # histogram[i, v]: buckets of point i with reduction levels − 1 − v (largest value first).
    histogram = np.bincount(flat, minlength=n * levels).reshape(n, levels)[:, ::-1]
    values = np.arange(levels - 1, -1, -1)
    taken = np.cumsum(histogram, axis=1)
    reduced = np.cumsum(histogram * values, axis=1)
    # The value level at which the greedy sum first reaches the gap.
    level = np.minimum((reduced < gap[:, None]).sum(axis=1), levels - 1)
    rows = np.arange(n)
    value = values[level]
    before_taken = taken[rows, level] - histogram[rows, level]
    before_reduced = reduced[rows, level] - histogram[rows, level] * value
    rest = np.maximum(gap - before_reduced, 0)  # 0 where gap ≤ 0 (level 0, nothing before it)
    # value is 0 only where rest is 0 or the gap is out of reach.
    cost = before_taken - (-rest // np.maximum(value, 1))
    return np.where(reduced[:, -1] < gap, num_buckets + 1, cost)


def _bucket_sums(per_model: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """[n, m, C] → [n, C, m]: out[:, :, h] = Σ_{s ∈ shifts} per_model[:, (h + s) mod m].

    Buckets last: the sum over the d models that hold bucket h, as a circular correlation by FFT
    (its cost does not grow with d); entries are small integers, so rounding makes it exact.
    """
    num_models = per_model.shape[1]
    kernel = np.zeros(num_models)
    kernel[shifts] = 1.0
    spectrum = scipy.fft.rfft(per_model.transpose(0, 2, 1).astype(np.float64), axis=2)
    spectrum *= np.conj(scipy.fft.rfft(kernel))
    return np.rint(scipy.fft.irfft(spectrum, n=num_models, axis=2)).astype(np.int32)


def _one_hot_votes(logits: np.ndarray) -> np.ndarray:
    """[n, m, C] bool: model j votes for class c (argmax, ties → smaller index)."""
    return logits.argmax(axis=2)[:, :, None] == np.arange(logits.shape[2])


def _prefers(logits: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """[n, m, C] bool: model j's logit of class cls[i] is strictly above its logit of class c."""
    return logits[np.arange(logits.shape[0]), :, cls][:, :, None] > logits


def _min_over_rivals(costs: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """min over c ≠ prediction of costs[:, c], [n]."""
    costs = costs.copy()
    costs[np.arange(costs.shape[0]), prediction] = _NEVER
    return costs.min(axis=1)


def _by_chunks(
    logits: np.ndarray, certify: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """certify() on chunks of test points that bound the size of work arrays; results joined."""
    n, num_models, num_classes = logits.shape
    size = max(1, _CHUNK_ELEMENTS // (num_models * num_classes))
    parts = [certify(logits[start : start + size]) for start in range(0, max(n, 1), size)]
    prediction, certificate = (np.concatenate(part) for part in zip(*parts))
    return prediction.astype(np.int64), certificate.astype(np.int64)


def _check_shifts(shifts: Sequence[int] | np.ndarray, num_models: int) -> np.ndarray:
    array = np.asarray(shifts)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"shifts must be a non-empty 1-D sequence of ints, got {shifts!r}")
    if np.unique(array).size != array.size:
        raise ValueError(f"shifts must be distinct, got {array.tolist()}")
    if array.min() < 0 or array.max() >= num_models:
        raise ValueError(
            f"shifts must lie in [0, k·d) = [0, {num_models}) (one per model column), "
            f"got {array.tolist()}"
        )
    if num_models % array.size:
        raise ValueError(
            f"{num_models} models are not k·d subsets for d = {array.size} shifts "
            f"({num_models} is not a multiple of {array.size})"
        )
    return array.astype(np.int64)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape [n, models, classes], got shape {logits.shape}")
    if logits.shape[1] == 0 or logits.shape[2] < 2:
        raise ValueError(f"logits need at least one model and two classes, got shape {logits.shape}")
    return logits


@dataclass(frozen=True)
class Certificate:
    """A certificate by name: its function, and whether it takes Finite Aggregation's shifts."""

    function: Callable[..., tuple[np.ndarray, np.ndarray]]
    needs_shifts: bool = False

    def __call__(self, logits: np.ndarray, shifts: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prediction, certificate) of ``logits`` [n, m, C]; ``shifts`` is ignored unless it is needed."""
        return self.function(logits, shifts) if self.needs_shifts else self.function(logits)


CERTIFICATES: dict[str, Certificate] = {
    "dpa": Certificate(dpa),
    "dpa_roe": Certificate(run_off_election),
    "fa": Certificate(finite_aggregation, needs_shifts=True),
    "fa_roe": Certificate(finite_aggregation_run_off, needs_shifts=True),
}
