"""Randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019; docs/methods.md §1; ref: locuslab/smoothing
code/core.py).

The smoothed classifier is g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), with the noise added in
[0, 1] pixel space (normalisation is the model's first layer). Where we deliberately differ from the
reference: radii are kept at full precision (it rounds to 3 significant digits); ties in PREDICT go
to the smaller class index; the device is the model's, not hard-coded CUDA; and the Monte Carlo
loop draws noise in place into one reused buffer, keeps the counts on the device and packs the
samples of several test points into one batch when n is small.
"""

from __future__ import annotations

import itertools
import math
from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import nn

from robustcert.metrics import ABSTAIN
from robustcert.progress import Progress

# Noisy input values per batch that ``auto_batch_size`` aims at. On a CPU about 1.2 MB of float32 input
# keeps a batch's activations in cache (best for LeNet near 400 MNIST images, ResNet-20 near 100
# CIFAR images); on a GPU 4096 CIFAR images fill the device without running out of memory for ResNet-110.
BATCH_VALUES = {"cpu": 300_000, "cuda": 4096 * 3 * 32 * 32}


def auto_batch_size(device: torch.device, sample_shape: torch.Size | tuple[int, ...]) -> int:
    """A batch size (noisy samples per forward pass) suited to the device and the input's size."""
    values = BATCH_VALUES.get(device.type, BATCH_VALUES["cuda"])
    return max(1, values // math.prod(sample_shape))


def resolve_batch_size(setting: int | str, device: torch.device, sample_shape: torch.Size | tuple[int, ...]) -> int:
    """A configured batch size: the number itself, or ``auto_batch_size`` for ``"auto"``."""
    return auto_batch_size(device, sample_shape) if setting == "auto" else int(setting)


def lower_confidence_bound(n_a: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """A one-sided (1 − alpha) lower confidence bound on a Bernoulli proportion (Clopper–Pearson).

    Equals ``proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]``
    = ``beta.ppf(alpha, n_a, n − n_a + 1)``, and 0 when n_a = 0.

    :param n_a: the number of successes (scalar or array)
    :param n: the number of draws
    :param alpha: the failure probability
    :return: lower bounds that hold with probability at least 1 − alpha over the draws
    """
    from scipy.stats import beta  # scipy.stats: imported where used, so that a training job does not pay for it

    n_a = np.asarray(n_a)
    bound = beta.ppf(alpha, np.maximum(n_a, 1), n - n_a + 1)
    return np.where(n_a > 0, bound, 0.0)


class Smooth:
    """A smoothed classifier g around a base classifier f, certified with Monte Carlo sampling."""

    # to abstain, Smooth returns this class (-1, robustcert.metrics.ABSTAIN)
    ABSTAIN = ABSTAIN

    def __init__(
        self,
        base_classifier: nn.Module,
        num_classes: int,
        sigma: float,
        generator: torch.Generator | int | None = None,
        *,
        bf16: bool = False,
        channels_last: bool = False,
        compiled: bool = False,
    ) -> None:
        """
        :param base_classifier: maps [batch × channel × height × width] in [0, 1] pixel space to
            [batch × num_classes] scores; it computes on the device its parameters live on (the CPU
            for a model without any)
        :param num_classes: the number of classes, at least 2
        :param sigma: the noise level σ > 0
        :param generator: a torch.Generator on the model's device, or an int seed for a fresh one,
            or None for torch's global generator; the same seed gives the same counts
        :param bf16: evaluate f under bfloat16 autocast (faster on recent hardware; f's argmax may
            then differ from float32 on near-ties)
        :param channels_last: convert f (in place) and the noise to the channels-last memory format
        :param compiled: run f through ``torch.compile`` with its parameters frozen as constants (some
            seconds of compilation on the first batch; then 1.05–1.3× for ResNet-20 on a CPU, nothing
            for LeNet). Every forward pass then has the full ``batch_size`` rows, so one graph serves
            all calls: a short last batch is computed on the whole buffer and only its own rows are
            counted. f's weights must not change after the first call.
        """
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.base_classifier = base_classifier
        self.num_classes = num_classes
        self.sigma = float(sigma)
        self.device = _model_device(base_classifier)
        self.generator = _generator_on(self.device, generator)
        self.bf16 = bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            base_classifier.to(memory_format=torch.channels_last)
        self.compiled = compiled
        self._forward = torch.compile(base_classifier, options={"freezing": True}) if compiled else base_classifier

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int) -> tuple[int, float]:
        """Monte Carlo algorithm for certifying that g's prediction around x is constant within an
        L2 radius. With probability at least 1 − alpha, the class returned equals g(x), and g's
        prediction is constant within the L2 ball of the returned radius around x.

        :param x: the input [channel × height × width], in [0, 1] pixel space
        :param n0: the number of Monte Carlo samples used to select the top class
        :param n: the number of Monte Carlo samples used to estimate its probability
        :param alpha: the failure probability
        :param batch_size: the number of noisy samples per forward pass of the base classifier
        :return: (predicted class, certified radius σ·Φ⁻¹(p̲_A)); (ABSTAIN, 0.0) on abstention
        """
        predictions, radii = self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size)
        return int(predictions[0]), float(radii[0])

    def certify_batch(
        self, xs: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """CERTIFY for every row of xs [points × channel × height × width] in one call.

        Each point gets its own n0 + n samples, and its own guarantee as in ``certify``: with
        probability at least 1 − alpha, its class equals g(x) and g is constant within its radius.

        :return: (predicted classes, int64 [points]; certified radii, float64 [points])
        """
        _check_sizes(n0=n0, n=n, batch_size=batch_size)
        _check_alpha(alpha)
        if alpha ** (1 / n) < 0.5:
            raise ValueError(f"with n={n} and alpha={alpha} CERTIFY can only abstain: n must be at least "
                             f"log2(1/alpha) = {math.log2(1 / alpha):.1f}")
        self.base_classifier.eval()
        progress = Progress(f"CERTIFY at σ={self.sigma:g}", len(xs))
        # draw n0 samples of f(x + ε) and take a guess at the top class (ties → smaller index)
        c_hat = self._sample_counts(xs, n0, batch_size, progress, n0 + n).argmax(axis=1)
        # draw n fresh samples and count how often f(x + ε) was that class
        n_a = self._sample_counts(xs, n, batch_size, progress, n0 + n)[np.arange(len(c_hat)), c_hat]
        progress.finish()
        # a one-sided (1 − alpha) lower confidence bound on its probability p_A
        p_a = self._lower_confidence_bound(n_a, n, alpha)
        certified = p_a >= 0.5
        predictions = np.where(certified, c_hat, Smooth.ABSTAIN)
        from scipy.stats import norm

        radii = np.where(certified, self.sigma * norm.ppf(np.maximum(p_a, 0.5)), 0.0)
        return predictions.astype(np.int64), radii

    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int) -> int:
        """Monte Carlo algorithm for evaluating g at x. With probability at least 1 − alpha, the class
        returned equals g(x).

        It uses the hypothesis test of https://arxiv.org/abs/1610.03944 for the top category of a
        multinomial: abstain unless the two-sided binomial test of the top count n1 against the
        runner-up n2 (n1 out of n1 + n2 at p = 1/2) rejects at level alpha.

        :param x: the input [channel × height × width], in [0, 1] pixel space
        :param n: the number of Monte Carlo samples
        :param alpha: the failure probability
        :param batch_size: the number of noisy samples per forward pass of the base classifier
        :return: the predicted class, or ABSTAIN
        :raises ValueError: for (n, alpha) where even n1 = n cannot reject, i.e. 2·2⁻ⁿ > alpha
        """
        _check_sizes(n=n, batch_size=batch_size)
        _check_alpha(alpha)
        if min(1.0, 2.0 ** (1 - n)) > alpha:
            raise ValueError(f"with n={n} and alpha={alpha} PREDICT can only abstain: n must be at least "
                             f"1 + log2(1/alpha) = {1 + math.log2(1 / alpha):.1f}")
        self.base_classifier.eval()
        counts = self._sample_counts(x.unsqueeze(0), n, batch_size)[0]
        top2 = np.argsort(-counts, kind="stable")[:2]
        count1, count2 = (int(c) for c in counts[top2])
        from scipy.stats import binomtest

        if binomtest(count1, count1 + count2, p=0.5).pvalue > alpha:
            return Smooth.ABSTAIN
        return int(top2[0])

    def _sample_counts(self, xs: torch.Tensor, num: int, batch_size: int, progress: Progress | None = None,
                       per_point: int = 1) -> np.ndarray:
        """Counts of f(x + ε) per class from ``num`` noise draws for each point of xs (each batch of m
        draws advances ``progress`` by m / ``per_point`` points).

        The points' samples are laid end to end and cut into batches of ``batch_size``, so a batch
        may hold several points when num is small. Noise is drawn in place into one buffer and
        the counts stay on the device until the end. A compiled f always sees the whole buffer.

        :param xs: the inputs [points × channel × height × width]
        :return: an int64 ndarray [points × num_classes]
        """
        xs = xs.to(self.device)
        points, total = xs.shape[0], xs.shape[0] * num
        size = batch_size if self.compiled else min(batch_size, total)
        with torch.inference_mode(), self._autocast():
            noise = torch.empty((size, *xs.shape[1:]), device=self.device, memory_format=self.memory_format).zero_()
            counts = torch.zeros(points * self.num_classes, dtype=torch.int64, device=self.device)
            ones = torch.ones(size, dtype=torch.int64, device=self.device)
            offsets = torch.arange(size, device=self.device)
            for start in range(0, total, size):
                m = min(size, total - start)
                point = (offsets[:m] + start).div_(num, rounding_mode="floor")
                batch = noise[:m].normal_(0.0, self.sigma, generator=self.generator)
                if start // num == (start + m - 1) // num:
                    batch.add_(xs[start // num])
                else:
                    batch.add_(xs.index_select(0, point))
                scores = self._forward(noise)[:m] if self.compiled else self._forward(batch)
                predictions = scores.argmax(dim=1)
                counts.scatter_add_(0, point * self.num_classes + predictions, ones[:m])
                if progress is not None:
                    progress.advance(m / per_point)
        return counts.view(points, self.num_classes).cpu().numpy()

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    _lower_confidence_bound = staticmethod(lower_confidence_bound)  # the reference's name


def gaussian_augment(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, σ²I) with fresh noise, in pixel space and unclipped, as the reference trains f."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return noise.mul_(sigma).add_(x)


def noisy_examples(images: np.ndarray, sigmas: list[float], seed: int) -> np.ndarray:
    """Each uint8 image [k, C, H, W] under each σ, in [0, 1] [len(sigmas), k, C, H, W]: one noise
    draw per image, scaled by σ and clipped to [0, 1] for display (as the reference's visualize.py)."""
    x = images.astype(np.float32) / 255.0
    noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return np.stack([np.clip(x + sigma * noise, 0.0, 1.0) for sigma in sigmas])


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _generator_on(device: torch.device, generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        if generator.device.type != device.type:
            raise ValueError(f"the generator is on {generator.device}, the model on {device}")
        return generator
    return torch.Generator(device=device).manual_seed(int(generator))


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
