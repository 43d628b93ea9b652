"""(De)randomized smoothing against adversarial patches (Levine & Feizi, NeurIPS 2020; docs/methods.md §4;
ref: alevine0/patchSmoothing).

An adversarial patch sets every pixel of an m×m square anywhere in the image to anything. The smoothed
classifier classifies many *ablated* copies of the image, each keeping only a small region (a band of
``s`` columns or rows, or an s×s block, wrapping around the image), and lets them vote. A patch can
change the votes of only the Δ ablations whose kept region it overlaps, so a large enough vote margin
certifies the prediction.

Ablations (:class:`robustcert.ablation.Ablation`, masks here): ``band`` (columns, W positions), ``row`` (rows, H positions), ``block``
(H·W positions); with ``count`` k > 1 each ablation keeps k bands (blocks: a k×k grid of blocks) spaced
W/k (H/k) apart, and there are W/k (H/k · W/k) distinct positions. An ablated image is encoded with
2C channels (:func:`encode`): (x, 1 − x) in the kept region, (0, 0) outside, so that an ablated pixel
differs from a black one.

Δ (:meth:`Ablation.delta`) for a patch of side m: min(m + s − 1, W/k) for bands (rows: H/k), and
min(m + s − 1, H/k) · min(m + s − 1, W/k) for blocks — exactly the largest number of positions one patch
placement overlaps (the tests check it against an exhaustive count).

Where we deliberately differ from the reference: votes are counted on the device for all positions and
images of a batch in one forward pass; the largest certified patch size is reported for every point, so
that one pass gives the whole curve; ties go to the smaller class index everywhere (as the reference's
``argmax``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustcert.ablation import KINDS, Ablation, check_ablation
from robustcert.metrics import ABSTAIN
from robustcert.pgd import PGD
from robustcert.progress import Progress
from robustcert.smoothing import lower_confidence_bound

__all__ = ["KINDS", "Ablation", "PatchSmooth", "certify_votes", "check_ablation", "encode", "largest_certified",
           "patch_attack", "randomized_certificate"]
TOP_ONE = "top_one"
# ablated input values per forward pass that ``auto`` batch sizes aim at (as robustcert.smoothing)
BATCH_VALUES = {"cpu": 600_000, "cuda": 4096 * 6 * 32 * 32}


def masks(ablation: Ablation, positions: torch.Tensor) -> torch.Tensor:
    """The kept region [P, H, W] (bool) of each position in ``positions`` [P], by index arithmetic."""
    rows, cols = ablation.period
    device, count = positions.device, len(positions)
    starts = {"band": (None, positions), "row": (positions, None),
              "block": (positions // cols, positions % cols)}[ablation.kind]
    keep = []
    for start, side, period in zip(starts, (ablation.height, ablation.width), (rows, cols)):
        line = torch.arange(side, device=device)
        keep.append(torch.ones(count, side, dtype=torch.bool, device=device) if start is None
                    else (line[None, :] - start[:, None]) % period < ablation.size)
    return keep[0][:, :, None] & keep[1][:, None, :]


def all_masks(ablation: Ablation, device: torch.device | str = "cpu") -> torch.Tensor:
    """The kept region of every position [P, H, W]."""
    return masks(ablation, torch.arange(ablation.num_positions, device=device))


def overlapping(ablation: Ablation, top: int, left: int, patch: int) -> torch.Tensor:
    """The positions [P] (bool) whose kept region meets the patch with corner (top, left)."""
    square = torch.zeros(ablation.height, ablation.width, dtype=torch.bool)
    square[top:top + patch, left:left + patch] = True
    return (all_masks(ablation) & square).flatten(1).any(dim=1)


def encode(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The 2C-channel ablated input of images ``x`` [n, C, H, W] in [0, 1] keeping ``keep`` [n, H, W]:
    (x, 1 − x) where kept, (0, 0) elsewhere."""
    keep = keep[:, None].to(x.dtype)
    return torch.cat([x * keep, (1 - x) * keep], dim=1)


def random_ablation(ablation: Ablation, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The batch ``x`` ablated at one random position (the same for the whole mini-batch, as the
    reference trains), encoded; the position is drawn from ``generator``."""
    position = torch.randint(ablation.num_positions, (1,), generator=generator).to(x.device)
    return encode(x, masks(ablation, position).expand(len(x), -1, -1))


def check_model(model: nn.Module, channels: int) -> None:
    """Refuse a model whose first convolution does not take the 2C channels of an ablated input."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels != 2 * channels:
        got = "no convolution" if first is None else f"a first convolution of {first.in_channels} channels"
        raise ValueError(f"patch smoothing needs a model taking 2×{channels} = {2 * channels} input channels; "
                         f"it has {got}")


def certify_votes(counts: np.ndarray, delta: int) -> tuple[np.ndarray, np.ndarray]:
    """The derandomized prediction and certificate of vote counts [n, C] against Δ = ``delta``.

    ``prediction`` [n]: the top count, ties to the smaller class index. ``certified`` [n] (bool): true iff
    n_top − n_second > 2Δ, or = 2Δ with the top class's index smaller than the runner-up's (the
    runner-up: the highest count among the other classes, ties to the smaller index). Since a patch
    changes at most Δ votes of each class, the prediction then cannot change.
    """
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.arange(len(counts))
    prediction = counts.argmax(axis=1)
    others = counts.copy()
    others[rows, prediction] = np.iinfo(np.int64).min
    runner_up = others.argmax(axis=1)
    gap = counts[rows, prediction] - counts[rows, runner_up]
    certified = (gap > 2 * delta) | ((gap == 2 * delta) & (prediction < runner_up))
    return prediction, certified


def largest_certified(counts: np.ndarray, ablation: Ablation, patch_sizes: range | list[int]) -> np.ndarray:
    """For each point, the largest patch size of ``patch_sizes`` (increasing) it is certified for (0: none)."""
    largest = np.zeros(len(counts), dtype=np.int64)
    still = np.ones(len(counts), dtype=bool)
    for m in patch_sizes:  # Δ grows with m: once uncertified, a point stays so
        still &= certify_votes(counts, ablation.delta(m))[1]
        largest[still] = m
    return largest


def randomized_certificate(counts: np.ndarray, top: np.ndarray, n: int, alpha: float, ablation: Ablation,
                           patch_sizes: range | list[int]) -> dict[str, np.ndarray]:
    """Randomized band smoothing's outcome from the counts [points, C] of the ``n`` estimation draws and
    the class ``top`` [points] the selection draws chose: Cohen's PREDICT, the
    certified class (:data:`ABSTAIN` unless the lower bound p̲ of ``top``'s probability exceeds 1/2), the
    largest patch side of ``patch_sizes`` (increasing) with p̲ > 1/2 + Δ(m)/P (0: none), and p̲."""
    counts = np.asarray(counts, dtype=np.int64)
    bound = lower_confidence_bound(counts[np.arange(len(counts)), top], n, alpha)
    largest = np.zeros(len(counts), dtype=np.int64)
    still = bound > 0.5
    for m in patch_sizes:
        still &= bound > 0.5 + ablation.delta(m) / ablation.num_positions
        largest[still] = m
    return {"predict": _binomial_predict(counts, alpha), "certified_class": np.where(bound > 0.5, top, ABSTAIN),
            "certified_patch": largest, "lower_bound": bound}


class PatchSmooth:
    """The smoothed classifier of a base ``model`` (taking 2C channels) over the positions of an ablation.

    ``batch_size`` is the number of ablated inputs per forward pass: positions × images are packed
    together, the ablated batch is built by one gather of the kept masks, and votes are counted on the
    model's device.
    """

    def __init__(self, model: nn.Module, num_classes: int, ablation: Ablation, channels: int,
                 batch_size: int) -> None:
        check_model(model, channels)
        self.model, self.num_classes, self.ablation = model.eval(), num_classes, ablation
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.masks = all_masks(ablation, self.device)

    def certify(self, x: torch.Tensor, thresholds: list[float], patch_sizes: list[int]
                ) -> dict[str, dict[str, np.ndarray]]:
        """Derandomized CERTIFY of images ``x`` [n, C, H, W]: for each voting rule (``theta_<θ>``: every
        class with softmax ≥ θ; ``top_one``: the argmax), the votes [n, C], the prediction and the
        largest certified patch size of ``patch_sizes``."""
        counts = self.vote_counts(x, thresholds)
        return {rule: {"counts": c, "predict": certify_votes(c, 0)[0],
                       "certified_patch": largest_certified(c, self.ablation, patch_sizes)}
                for rule, c in counts.items()}

    def vote_counts(self, x: torch.Tensor, thresholds: list[float]) -> dict[str, np.ndarray]:
        """Votes [n, C] of every position for images ``x``, per rule (``theta_<θ>`` and ``top_one``)."""
        positions = torch.arange(self.ablation.num_positions, device=self.device).expand(len(x), -1)
        return self._counts(x, positions, thresholds)

    def position_votes(self, x: torch.Tensor, threshold: float | None) -> torch.Tensor:
        """The votes [n, P, C] (0/1) of each position (``threshold`` None: top one), on the CPU."""
        with torch.no_grad():
            probs = self.probabilities(x.to(self.device), torch.arange(self.ablation.num_positions,
                                                                        device=self.device).expand(len(x), -1))
        return _votes(probs.flatten(0, 1), threshold).view(*probs.shape).cpu()

    def randomized(self, x: torch.Tensor, n0: int, n: int, alpha: float, patch_sizes: list[int],
                   generator: torch.Generator) -> dict[str, np.ndarray]:
        """Randomized band smoothing: ``n0`` random positions select the top class c_A, ``n`` more give
        a (1 − α) Clopper–Pearson lower bound p̲ of its probability; the point is certified for a patch
        of side m iff p̲ > 1/2 + Δ(m)/P (a patch changes the class of at most a Δ/P share of positions).
        Also Cohen's PREDICT on the ``n`` estimation draws: the top class if a two-sided binomial test of
        its count against the runner-up's rejects 1/2 at α, else :data:`ABSTAIN`."""
        selection = self._random_counts(x, n0, generator)
        estimation = self._random_counts(x, n, generator)
        return {"counts": estimation, **randomized_certificate(estimation, selection.argmax(axis=1), n, alpha,
                                                               self.ablation, patch_sizes)}

    def _random_counts(self, x: torch.Tensor, n: int, generator: torch.Generator) -> np.ndarray:
        positions = torch.randint(self.ablation.num_positions, (len(x), n), generator=generator).to(self.device)
        return self._counts(x, positions, [])[TOP_ONE]

    def _counts(self, x: torch.Tensor, positions: torch.Tensor, thresholds: list[float]) -> dict[str, np.ndarray]:
        """Votes [n, C] of the positions [n, q] of each image, in chunks of ``batch_size`` ablated inputs."""
        x = x.to(self.device)
        rules = [*(f"theta_{t:g}" for t in thresholds), TOP_ONE]
        counts = torch.zeros(len(rules), len(x), self.num_classes, dtype=torch.int64, device=self.device)
        image = torch.arange(len(x), device=self.device).repeat_interleave(positions.shape[1])
        flat = positions.reshape(-1)
        progress = Progress(f"votes of {positions.shape[1]} {self.ablation.label} ablations per image", len(x))
        with torch.no_grad():
            for start in range(0, len(flat), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                probs = F.softmax(self.model(encode(x[image[chunk]], self.masks[flat[chunk]])).float(), dim=1)
                for r, threshold in enumerate([*thresholds, None]):
                    counts[r].index_add_(0, image[chunk], _votes(probs, threshold))
                progress.advance(len(probs) / positions.shape[1])
        progress.finish()
        return {rule: c.cpu().numpy() for rule, c in zip(rules, counts)}

    def probabilities(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Softmax [n, q, C] of the base model on the ablations ``positions`` [n, q] of ``x`` (one pass)."""
        n, q = positions.shape
        image = torch.arange(n, device=x.device).repeat_interleave(q)
        logits = self.model(encode(x[image], self.masks[positions.reshape(-1)]))
        return F.softmax(logits.float(), dim=1).view(n, q, -1)


def _votes(probs: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """0/1 votes [b, C]: every class with probability ≥ ``threshold``, or the argmax (None)."""
    if threshold is None:
        return F.one_hot(probs.argmax(dim=1), probs.shape[1]).to(torch.int64)
    return (probs >= threshold).to(torch.int64)


def _binomial_predict(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Cohen's PREDICT from sampled counts [n, C]: the top class, or ABSTAIN unless the binomial test of
    its count against the runner-up's rejects p = 1/2 at ``alpha``."""
    from scipy.stats import binomtest  # scipy.stats: imported where used, so that a training job does not pay for it

    order = np.argsort(-counts, axis=1, kind="stable")  # ties to the smaller index
    predictions = []
    for row, (a, b) in zip(counts, order[:, :2]):
        p_value = binomtest(int(row[a]), int(row[a] + row[b]), 0.5).pvalue if row[a] + row[b] else 1.0
        predictions.append(int(a) if p_value <= alpha else ABSTAIN)
    return np.array(predictions, dtype=np.int64)


def auto_batch_size(device: torch.device, image_shape: tuple[int, int, int]) -> int:
    """Ablated inputs per forward pass suited to the device and the input's size."""
    channels, height, width = image_shape
    return max(1, BATCH_VALUES.get(device.type, BATCH_VALUES["cuda"]) // (2 * channels * height * width))


def soft_vote_loss(smooth: PatchSmooth, labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss the patch attack ascends on the smoothed classifier: cross-entropy of ``labels`` under the
    mean softmax over every position (a differentiable surrogate of the votes), per example."""
    positions = torch.arange(smooth.ablation.num_positions, device=smooth.device)

    def loss(x: torch.Tensor) -> torch.Tensor:
        probs = smooth.probabilities(x, positions.expand(len(x), -1)).mean(dim=1)
        return F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="none")

    return loss


def smoothed_correct(smooth: PatchSmooth, thresholds: list[float]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Whether the smoothed prediction of each voting rule (``theta_<θ>``…, ``top_one``) is the label: [n, R]."""
    def judge(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        counts = smooth.vote_counts(x, thresholds)
        return torch.stack([torch.from_numpy(certify_votes(c, 0)[0]) for c in counts.values()], 1) == labels.cpu()[:, None]

    return judge


def placements(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Corners (top, left) of the patch positions searched: every ``stride``-th, the last row and column included."""
    def line(side: int) -> list[int]:
        return sorted(set(range(0, side - patch + 1, stride)) | {side - patch})

    return [(top, left) for top in line(height) for left in line(width)]


def patch_attack(loss_of: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]],
                 judge: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, labels: torch.Tensor,
                 patch: int, stride: int, attack: PGD, chunk: int, generator: torch.Generator) -> np.ndarray:
    """The empirical adversarial patch: for every image and every searched placement of an m×m square,
    PGD on the pixels inside it (``attack``: L∞ of radius 1 in [0, 1], random restarts) ascends
    ``loss_of(labels)``; an image stays correct only if ``judge`` finds it correct at every placement.
    Image × placement pairs go through the attack ``chunk`` at a time. Returns [n, R] (bool) of the
    ``judge``'s R outcomes."""
    _, _, height, width = x.shape
    corners = placements(height, width, patch, stride)
    squares = torch.zeros(len(corners), 1, height, width, device=x.device)
    for k, (top, left) in enumerate(corners):
        squares[k, :, top:top + patch, left:left + patch] = 1.0
    image = torch.arange(len(x), device=x.device).repeat_interleave(len(corners))
    square = torch.arange(len(corners), device=x.device).repeat(len(x))
    correct = None
    for start in range(0, len(image), chunk):
        i, k = image[start:start + chunk], square[start:start + chunk]
        adversarial = attack.perturb(loss_of(labels[i]), x[i], squares[k], generator)
        outcome = judge(adversarial, labels[i]).cpu().numpy()
        if correct is None:
            correct = np.ones((len(x), outcome.shape[1]), dtype=bool)
        np.logical_and.at(correct, i.cpu().numpy(), outcome)
    return correct
