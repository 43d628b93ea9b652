"""Randomized smoothing against closed forms (docs/methods.md §1).

The base classifier f(x) = 1[x₀ > t] has the smoothed probability P(f(x + ε) = 0) = Φ((t − x₀)/σ),
and its smoothed classifier's true robust radius at x is exactly |t − x₀|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from robustcert.models import build_model
from robustcert.smoothing import Smooth, auto_batch_size, gaussian_augment, resolve_batch_size

SIGMA = 0.25
THRESHOLD = 0.5


class Threshold(nn.Module):
    """f(x) = 1[x₀ > t] as two-class scores; x₀ is the first pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        above = x.flatten(1)[:, 0] > THRESHOLD
        return torch.stack([~above, above], dim=1).float()


def point(x0: float) -> torch.Tensor:
    """An image [1 × 2 × 2] whose first pixel is x0."""
    x = torch.full((1, 2, 2), 0.3)
    x[0, 0, 0] = x0
    return x


def x0_for(p_a: float) -> float:
    """x₀ with P(f(x + ε) = 0) = p_a."""
    return THRESHOLD - SIGMA * norm.ppf(p_a)


@pytest.mark.parametrize(
    ("n_a", "n", "alpha"), [(0, 100, 0.001), (1, 100, 0.001), (57, 100, 0.05), (99_000, 100_000, 0.001), (10, 10, 0.01)]
)
def test_lower_confidence_bound_is_clopper_pearson(n_a: int, n: int, alpha: float) -> None:
    bound = Smooth._lower_confidence_bound(n_a, n, alpha)
    expected = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
    assert bound == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert bound == pytest.approx(proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0], rel=1e-12, abs=1e-15)


def test_lower_confidence_bound_is_vectorised() -> None:
    n_a = np.array([0, 50, 100])
    assert Smooth._lower_confidence_bound(n_a, 100, 0.001) == pytest.approx(
        [float(Smooth._lower_confidence_bound(k, 100, 0.001)) for k in n_a]
    )


@pytest.mark.parametrize("p_a", [0.7, 0.99])
def test_certify_radius_matches_closed_form(p_a: float) -> None:
    n, alpha = 100_000, 0.001
    smooth = Smooth(Threshold(), 2, SIGMA, generator=0)
    prediction, radius = smooth.certify(point(x0_for(p_a)), 100, n, alpha, batch_size=20_000)
    assert prediction == 0
    # within 5 binomial standard deviations of n_A = n·p_A
    spread = 5 * np.sqrt(n * p_a * (1 - p_a))
    low, high = (SIGMA * norm.ppf(Smooth._lower_confidence_bound(n * p_a + k, n, alpha)) for k in (-spread, spread))
    assert low <= radius <= high
    assert radius < SIGMA * norm.ppf(p_a)  # the true radius t − x₀, with probability ≥ 1 − alpha


def test_certify_holds_with_the_stated_probability() -> None:
    """Over many points the certificate is wrong (wrong class or radius beyond t − x₀) at most α of the time."""
    alpha, points = 0.05, 2000
    x0 = np.linspace(0.3, 0.7, points)
    xs = torch.stack([point(v) for v in x0])
    smooth = Smooth(Threshold(), 2, SIGMA, generator=1)
    predictions, radii = smooth.certify_batch(xs, 100, 200, alpha, batch_size=50_000)
    true_class = (x0 > THRESHOLD).astype(int)
    true_radius = np.abs(x0 - THRESHOLD)
    answered = predictions != Smooth.ABSTAIN
    wrong = answered & ((predictions != true_class) | (radii > true_radius))
    assert wrong.mean() <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / points)
    assert (radii[~answered] == 0).all()
    assert answered[np.abs(x0 - THRESHOLD) > 0.15].all()


def test_certify_abstains_when_no_class_has_half() -> None:
    smooth = Smooth(Threshold(), 2, SIGMA, generator=2)
    assert smooth.certify(point(THRESHOLD), 100, 10_000, 0.001, batch_size=10_000) == (Smooth.ABSTAIN, 0.0)


def test_certify_batch_equals_certify_for_one_point() -> None:
    x = point(x0_for(0.8))
    single = Smooth(Threshold(), 2, SIGMA, generator=3).certify(x, 100, 5000, 0.001, batch_size=700)
    predictions, radii = Smooth(Threshold(), 2, SIGMA, generator=3).certify_batch(x[None], 100, 5000, 0.001, 700)
    assert single == (predictions[0], radii[0])


def test_samples_of_packed_points_are_counted_for_their_point() -> None:
    """n = 7 with batches of 5: batches straddle points, and every count lands on its own point."""
    x0 = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    smooth = Smooth(Threshold(), 2, 1e-6, generator=4)
    counts = smooth._sample_counts(torch.stack([point(v) for v in x0]), 7, batch_size=5)
    assert counts.tolist() == [[0, 7] if v > THRESHOLD else [7, 0] for v in x0]


def test_predict_answers_clear_cases_and_abstains_on_a_close_call() -> None:
    smooth = Smooth(Threshold(), 2, SIGMA, generator=5)
    assert smooth.predict(point(0.1), 1000, 0.001, batch_size=1000) == 0
    assert smooth.predict(point(0.9), 1000, 0.001, batch_size=1000) == 1
    assert smooth.predict(point(THRESHOLD), 1000, 0.001, batch_size=1000) == Smooth.ABSTAIN


def test_same_seed_gives_same_counts() -> None:
    xs = torch.stack([point(v) for v in (0.45, 0.5, 0.55)])

    def counts(seed: int) -> np.ndarray:
        return Smooth(Threshold(), 2, SIGMA, generator=seed)._sample_counts(xs, 1000, batch_size=256)

    assert (counts(6) == counts(6)).all()
    assert (counts(6) != counts(7)).any()
    generator = torch.Generator().manual_seed(6)
    assert (Smooth(Threshold(), 2, SIGMA, generator=generator)._sample_counts(xs, 1000, 256) == counts(6)).all()


@pytest.mark.parametrize(
    ("n", "alpha", "method"), [(10, 0.001, "predict"), (1, 0.5, "predict"), (9, 0.001, "certify")]
)
def test_hopeless_sample_sizes_are_refused(n: int, alpha: float, method: str) -> None:
    smooth = Smooth(Threshold(), 2, SIGMA)
    with pytest.raises(ValueError, match="can only abstain"):
        if method == "predict":
            smooth.predict(point(0.0), n, alpha, batch_size=100)
        else:
            smooth.certify(point(0.0), 10, n, alpha, batch_size=100)


def test_smallest_useful_sample_sizes_are_accepted() -> None:
    smooth = Smooth(Threshold(), 2, SIGMA, generator=8)
    assert smooth.predict(point(-5.0), 11, 0.001, batch_size=100) == 0  # 2·2⁻¹¹ < 0.001
    assert smooth.certify(point(-5.0), 1, 10, 0.001, batch_size=100)[0] == 0  # 0.001^(1/10) > 0.5


@pytest.mark.parametrize("sigma", [0.0, -0.25])
def test_nonpositive_sigma_is_refused(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        Smooth(Threshold(), 2, sigma)


@pytest.mark.parametrize(
    ("n0", "n", "alpha", "batch_size", "match"),
    [(0, 1000, 0.001, 100, "n0"), (100, 0, 0.001, 100, "n"), (100, 1000, 0.0, 100, "alpha"),
     (100, 1000, 1.0, 100, "alpha"), (100, 1000, 0.001, 0, "batch_size")],
)
def test_bad_sample_sizes_are_refused(n0: int, n: int, alpha: float, batch_size: int, match: str) -> None:
    smooth = Smooth(Threshold(), 2, SIGMA)
    with pytest.raises(ValueError, match=match):
        smooth.certify(point(0.0), n0, n, alpha, batch_size)


def test_compiled_classifier_counts_what_eager_counts() -> None:
    """Batches of 256 straddle the points and the last one is short: the padded rows are not counted."""
    xs = torch.stack([point(v) for v in (0.45, 0.5, 0.55)])
    eager = Smooth(Threshold(), 2, SIGMA, generator=6)._sample_counts(xs, 1000, batch_size=256)
    compiled = Smooth(Threshold(), 2, SIGMA, generator=6, compiled=True)
    assert (compiled._sample_counts(xs, 1000, batch_size=256) == eager).all()
    assert (compiled._sample_counts(xs[:1], 10, batch_size=256).sum(axis=1) == 10).all()


def test_compiled_lenet_agrees_with_eager() -> None:
    """Frozen weights and fused kernels round differently, so an argmax may flip on a near-tie."""
    torch.manual_seed(0)
    model = build_model("lenet", 1, 10, 8, [0.5], [0.25]).eval()
    xs = torch.rand(2, 1, 8, 8)
    eager = Smooth(model, 10, SIGMA, generator=7, channels_last=True)._sample_counts(xs, 3000, 700)
    compiled = Smooth(model, 10, SIGMA, generator=7, channels_last=True, compiled=True)._sample_counts(xs, 3000, 700)
    assert np.abs(compiled - eager).sum() <= 6


@pytest.mark.parametrize(
    ("device", "shape", "expected"),
    [("cpu", (1, 28, 28), 382), ("cpu", (3, 32, 32), 97), ("cuda", (3, 32, 32), 4096), ("cpu", (3, 1000, 1000), 1)],
)
def test_auto_batch_size_fits_the_device(device: str, shape: tuple[int, ...], expected: int) -> None:
    assert auto_batch_size(torch.device(device), shape) == expected


def test_configured_batch_size_is_a_number_or_auto() -> None:
    cpu = torch.device("cpu")
    assert resolve_batch_size(500, cpu, (1, 28, 28)) == 500
    assert resolve_batch_size("auto", cpu, (1, 28, 28)) == auto_batch_size(cpu, (1, 28, 28))



def constant(channels: int) -> nn.Module:
    """A network that always says class 0."""
    model = nn.Sequential(nn.Conv2d(channels, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    nn.init.zeros_(model[0].weight)
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([1.0, 0.0]))
    return model


@pytest.mark.parametrize("options", [{}, {"bf16": True, "channels_last": True}])
def test_largest_radius_is_sigma_times_quantile_of_alpha_to_the_one_over_n(options: dict[str, bool]) -> None:
    smooth = Smooth(constant(3), 2, SIGMA, generator=9, **options)
    prediction, radius = smooth.certify(torch.rand(3, 4, 4), 10, 100_000, 0.001, batch_size=25_000)
    assert prediction == 0
    assert radius == pytest.approx(SIGMA * norm.ppf(0.001 ** (1 / 100_000)), rel=1e-9)
    assert radius == pytest.approx(3.81 * SIGMA, abs=0.005 * SIGMA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_certify_runs_where_the_model_lives() -> None:
    model = constant(1).cuda()
    with pytest.raises(ValueError, match="generator"):
        Smooth(model, 2, SIGMA, generator=torch.Generator())
    smooth = Smooth(model, 2, SIGMA, generator=10, bf16=True, channels_last=True)
    predictions, radii = smooth.certify_batch(torch.rand(3, 1, 2, 2), 100, 1000, 0.001, 4096)
    assert predictions.tolist() == [0, 0, 0]
    assert (Smooth(model, 2, SIGMA, generator=10)._sample_counts(torch.rand(3, 1, 2, 2), 5, 4) == [[5, 0]] * 3).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_lenet_agrees_with_eager_on_cuda() -> None:
    pytest.importorskip("triton", reason="torch.compile on CUDA needs Triton")
    torch.manual_seed(0)
    model = build_model("lenet", 1, 10, 28, [0.5], [0.25]).eval().cuda()
    xs = torch.rand(2, 1, 28, 28)
    eager = Smooth(model, 10, SIGMA, generator=7, channels_last=True)._sample_counts(xs, 20_000, 4096)
    compiled = Smooth(model, 10, SIGMA, generator=7, channels_last=True, compiled=True)
    assert np.abs(compiled._sample_counts(xs, 20_000, 4096) - eager).sum() <= 40


def test_gaussian_augment_adds_unclipped_noise_of_scale_sigma() -> None:
    x = torch.full((2000, 1, 4, 4), 0.9)
    noisy = gaussian_augment(x, 0.5, torch.Generator().manual_seed(11))
    noise = noisy - x
    assert noisy.shape == x.shape and (x == 0.9).all()
    assert abs(noise.mean().item()) < 0.01 and noise.std().item() == pytest.approx(0.5, rel=0.02)
    assert noisy.max() > 1.0
    assert torch.equal(noisy, gaussian_augment(x, 0.5, torch.Generator().manual_seed(11)))
