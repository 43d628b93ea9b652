"""The bilevel radius attack (docs/methods.md §5): second-order pieces against finite differences and the
exact implicit-function gradient, the poisons' constraints, determinism, and the attack's progress
on a small digits instance."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn
from torch.func import functional_call

from robustcert.bilevel import (
    BilevelConfig,
    ObjectiveVictim,
    Victim,
    approx_inverse_hvp,
    approxgrad_hypergradient,
    bilevel_radius_attack,
    gaussian_augmentation_victim,
    hessian_vector_product,
    make_hvp,
    soft_certified_radius,
    soft_radii,
    target_class_certification,
    to_poison,
)
from robustcert.data import load_source, split_source
from robustcert.models import build_model
from robustcert.smoothing_objectives import Macer, SmoothAdv

TARGET = 8


# ---------------------------------------------------------------------------------------------
# second-order pieces


def _flat_grad(loss_fn, params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss_fn(), params)])


@pytest.mark.parametrize("kind", ["tanh_mlp", "small_cnn_gaussian_augmentation"])
def test_hessian_vector_product_matches_finite_differences(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "tanh_mlp":
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
        x, y = torch.randn(11, 5, dtype=torch.float64), torch.randint(0, 3, (11,))
        loss_fn = lambda: F.cross_entropy(model(x), y)  # noqa: E731
    else:  # a victim's loss: the same generator state gives the same noise, so g is one function
        model = build_model("small_cnn", 1, 10, 8, [0.3], [0.3]).double()
        x, y = torch.rand(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
        victim = gaussian_augmentation_victim(0.25)
        loss_fn = lambda: victim.loss(model, x, y, torch.Generator().manual_seed(3))  # noqa: E731
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    norm_v = torch.sqrt(sum((t**2).sum() for t in v))
    v = [t / norm_v for t in v]
    hv = torch.cat([t.flatten() for t in hessian_vector_product(loss_fn(), params, v)])
    h = 1e-6  # small enough that no ReLU or max-pool switches between θ ± hv
    with torch.no_grad():
        for p, vi in zip(params, v):
            p.add_(h * vi)
    plus = _flat_grad(loss_fn, params)
    with torch.no_grad():
        for p, vi in zip(params, v):
            p.sub_(2 * h * vi)
    minus = _flat_grad(loss_fn, params)
    torch.testing.assert_close(hv, (plus - minus) / (2 * h), rtol=1e-5, atol=1e-7)


def test_soft_radius_matches_its_formula() -> None:
    """A linear model on 2-pixel images; p̂ and the radius recomputed with numpy and scipy."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3)).double()
    x = torch.rand(6, 1, 1, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    noise = torch.randn(6, 5, 1, 1, 2, dtype=torch.float64)
    sigma, beta, a = 0.5, 4.0, 0.001
    radii = soft_radii(model, x, y, sigma, beta=beta, a=a, noise=noise).detach().numpy()
    with torch.no_grad():
        logits = model((x[:, None] + sigma * noise).flatten(0, 1)).view(6, 5, 3).numpy()
    e = np.exp(beta * (logits - logits.max(axis=2, keepdims=True)))
    p_hat = (e / e.sum(axis=2, keepdims=True)).mean(axis=1)
    for i in range(6):
        label = int(y[i])
        other = np.delete(p_hat[i], label).max()
        expected = sigma / 2 * (norm.ppf((1 - 2 * a) * p_hat[i, label] + a) - norm.ppf((1 - 2 * a) * other + a))
        assert radii[i] == pytest.approx(expected if p_hat[i].argmax() == label else 0.0, abs=1e-9)
    assert 0 < (radii > 0).sum() < 6  # both branches are exercised
    f = soft_certified_radius(model, x, y, sigma, beta=beta, a=a, noise=noise)
    assert float(f.detach()) == pytest.approx(radii.sum() / 6)


# ---------------------------------------------------------------------------------------------
# the victims: the trainer's objectives as the lower-level loss


def _tanh_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64) * 0.6 + 0.2, torch.tensor([0, 1, 2, 0, 1, 2])


def _loss_and_grads(loss_fn, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A loss of x and its gradient in the parameters and in x."""
    x = x.clone().requires_grad_(True)
    loss = loss_fn(x)
    return loss, list(torch.autograd.grad(loss, [*model.parameters(), x]))


def _assert_same(victim_side, direct_side) -> None:
    (loss, grads), (direct, direct_grads) = victim_side, direct_side
    torch.testing.assert_close(loss, direct)
    for a, b in zip(grads, direct_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert grads[-1].abs().sum() > 0  # the poisons' gradient reaches g


def test_macer_victim_loss_and_gradients_equal_a_direct_computation() -> None:
    """g of MACER (k noisy copies, hinge on the soft radius) and its gradient in θ and in the images."""
    from test_smoothing_objectives import direct_macer

    model, (x, y) = _tanh_model(), _batch()
    macer = Macer(sigma=0.5, k=3, lam=3.0, beta=2.0, gamma=8.0)
    victim = ObjectiveVictim(macer)
    noise = torch.randn((18, 1, 4, 4), generator=torch.Generator().manual_seed(7)).double()
    ours = _loss_and_grads(lambda xs: victim.loss(model, xs, y, torch.Generator().manual_seed(7)), model, x)
    direct = _loss_and_grads(lambda xs: direct_macer(model, xs.repeat_interleave(3, dim=0) + 0.5 * noise, y, macer),
                             model, x)
    _assert_same(ours, direct)
    assert macer.robustness(model(x.repeat_interleave(3, dim=0) + 0.5 * noise).reshape(6, 3, 3), y) != 0


def test_smoothadv_victim_holds_the_adversarial_step_fixed() -> None:
    """g of SmoothAdv: cross-entropy at PGD's points of the smoothed soft classifier plus the noise; the
    images' gradient is that of x + δ + noise with δ (computed one input at a time) held fixed."""
    from test_smoothing_objectives import direct_smoothadv

    model, (x, y) = _tanh_model(1), _batch()
    smoothadv = SmoothAdv(sigma=0.25, m=2, epsilon=0.5, steps=2)
    victim = ObjectiveVictim(smoothadv)
    noise = 0.25 * torch.randn((12, 1, 4, 4), generator=torch.Generator().manual_seed(2)).double()
    delta = (direct_smoothadv(model, x, y, noise, smoothadv) - x).detach()
    assert float(delta.flatten(1).norm(dim=1).max()) == pytest.approx(0.5)  # PGD ran to the ball's surface
    ours = _loss_and_grads(lambda xs: victim.loss(model, xs, y, torch.Generator().manual_seed(2)), model, x)
    direct = _loss_and_grads(lambda xs: F.cross_entropy(model((xs + delta).repeat_interleave(2, dim=0) + noise),
                                                        y.repeat_interleave(2)), model, x)
    _assert_same(ours, direct)


@pytest.mark.parametrize("victim", [gaussian_augmentation_victim(0.25), ObjectiveVictim(Macer(0.25, k=2, beta=4.0))],
                         ids=["gaussian_augmentation", "macer"])
def test_mixed_second_derivative_of_a_victim_matches_finite_differences(victim: ObjectiveVictim) -> None:
    """∇²_uθ g · p, the term of the hypergradient the victim enters by, against central differences
    of ⟨∇_θ g(u), p⟩ along a random direction of the poisons (the same noise at every u)."""
    model, (x, y) = _tanh_model(2), _batch()
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(9)
    p = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in params]
    direction = torch.randn(x.shape, generator=gen, dtype=torch.float64)

    def inner(u: torch.Tensor) -> torch.Tensor:
        return victim.loss(model, u, y, torch.Generator().manual_seed(5))

    def pairing(u: torch.Tensor) -> float:
        return float(sum((g * pi).sum() for g, pi in zip(torch.autograd.grad(inner(u), params), p)))

    u = x.clone().requires_grad_(True)
    outer = sum((t**2).sum() for t in params)  # f of θ only: the hypergradient is −∇²_uθ g · p
    hyper = approxgrad_hypergradient(outer, inner(u), params, u, lam=0.0, niter=0, p0=p)
    h = 1e-5
    numeric = (pairing(x + h * direction) - pairing(x - h * direction)) / (2 * h)
    assert float((-hyper.grad * direction).sum()) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_a_victim_follows_its_objectives_schedule() -> None:
    victim = ObjectiveVictim(SmoothAdv(sigma=0.5, epsilon=1.0, warmup=4))
    assert [victim.at_epoch(e).objective.epsilon for e in (0, 1, 3, 9)] == pytest.approx([0.25, 0.5, 1.0, 1.0])
    macer = ObjectiveVictim(Macer(sigma=0.5, lam=16.0, schedule=((2, 4.0),)))
    assert macer.at_epoch(1).objective.lam == 16.0 and macer.at_epoch(2).objective.lam == 4.0
    assert gaussian_augmentation_victim(0.5).at_epoch(3) == gaussian_augmentation_victim(0.5)


# ---------------------------------------------------------------------------------------------
# the hypergradient against the exact implicit-function gradient


@dataclass(frozen=True)
class RidgeLogisticVictim:
    """Another victim through the same protocol: softmax regression with an L2 penalty."""

    rho: float

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        penalty = sum((p**2).sum() for p in model.parameters())
        return F.cross_entropy(model(x), y) + 0.5 * self.rho * penalty


class _Problem:
    """Linear 3-class model on 2×2 single-channel "images"; 4 poisons of class 2.

    θ*(u) is solved by Newton's method to machine precision; f = the soft certified radius on
    validation points with fixed noise.
    """

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
        centres = torch.tensor([[0.2, 0.8, 0.3, 0.1], [0.8, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.2]], dtype=torch.float64)
        self.y_clean = torch.arange(3).repeat(6)
        spread = 0.15 * torch.randn(18, 4, generator=gen, dtype=torch.float64)
        self.x_clean = (centres[self.y_clean] + spread).view(18, 1, 2, 2)
        self.u0 = (centres[2] + 0.15 * torch.randn(4, 4, generator=gen, dtype=torch.float64)).view(4, 1, 2, 2)
        self.y_poison = torch.full((4,), 2)
        self.x_val = (centres[2] + 0.1 * torch.randn(5, 4, generator=gen, dtype=torch.float64)).view(5, 1, 2, 2)
        self.y_val = torch.full((5,), 2)
        self.noise = torch.randn(5, 8, 1, 2, 2, generator=gen, dtype=torch.float64)
        self.victim: Victim = RidgeLogisticVictim(0.05)
        self.names = [name for name, _ in self.model.named_parameters()]
        self.shapes = [p.shape for p in self.model.parameters()]

    def params_of(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [s.numel() for s in self.shapes]
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(sizes), self.shapes)}

    def inner(self, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x, y = torch.cat([self.x_clean, u]), torch.cat([self.y_clean, self.y_poison])
        model = _Functional(self.model, self.params_of(theta))
        return self.victim.loss(model, x, y, torch.Generator())

    def outer(self, theta: torch.Tensor) -> torch.Tensor:
        model = _Functional(self.model, self.params_of(theta))
        return soft_certified_radius(model, self.x_val, self.y_val, 0.3, beta=4.0, noise=self.noise)

    def solve(self, u: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        theta = torch.zeros(sum(s.numel() for s in self.shapes), dtype=torch.float64) if start is None else start
        for _ in range(100):
            grad = torch.autograd.functional.jacobian(lambda t: self.inner(t, u), theta)
            if grad.norm() < 1e-14:
                break
            hess = torch.autograd.functional.hessian(lambda t: self.inner(t, u), theta)
            theta = theta - torch.linalg.solve(hess, grad)
        return theta

    def load(self, theta: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            for p, value in zip(self.model.parameters(), self.params_of(theta).values()):
                p.copy_(value)
        return list(self.model.parameters())


class _Functional(nn.Module):
    """A module evaluated at given parameter tensors (for Newton's method over a flat θ)."""

    def __init__(self, module: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.module, self.params = module, params

    def parameters(self, recurse: bool = True):  # the penalty of RidgeLogisticVictim sees θ
        return iter(self.params.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.params, (x,))


@pytest.fixture(scope="module")
def problem() -> _Problem:
    return _Problem()


def _hypergradient(problem: _Problem, lam: float, niter: int, lr: float, method: str) -> torch.Tensor:
    params = problem.load(problem.solve(problem.u0))
    f = soft_certified_radius(problem.model, problem.x_val, problem.y_val, 0.3, beta=4.0, noise=problem.noise)
    u = problem.u0.clone().requires_grad_(True)
    g = problem.victim.loss(problem.model, torch.cat([problem.x_clean, u]),
                            torch.cat([problem.y_clean, problem.y_poison]), torch.Generator())
    return approxgrad_hypergradient(f, g, params, u, lam, niter, lr, method).grad


@pytest.mark.trains
def test_hypergradient_matches_the_implicit_function_gradient(problem: _Problem) -> None:
    """CG to convergence without damping = d f(θ*(u)) / du, by central differences through Newton solves."""
    assert float(problem.outer(problem.solve(problem.u0))) > 0.05  # the validation points count
    grad = _hypergradient(problem, lam=0.0, niter=50, lr=0.0, method="cg")
    h = 1e-5
    start = problem.solve(problem.u0)
    numeric = torch.zeros_like(problem.u0)
    for i in range(problem.u0.numel()):
        step = torch.zeros(problem.u0.numel(), dtype=torch.float64)
        step[i] = h
        step = step.view_as(problem.u0)
        plus = problem.outer(problem.solve(problem.u0 + step, start))
        minus = problem.outer(problem.solve(problem.u0 - step, start))
        numeric.view(-1)[i] = (plus - minus) / (2 * h)
    assert numeric.abs().max() > 1e-3
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.trains
def test_gradient_steps_on_the_residual_approach_the_damped_solution(problem: _Problem) -> None:
    """Gradient steps on ‖Hp + λp − b‖² give the hypergradient of (H + λI)⁻¹b (CG's, to convergence)."""
    lam = 1e-3
    exact = _hypergradient(problem, lam, 50, 0.0, "cg")
    theta = problem.solve(problem.u0)  # a safe step: 1 / the largest eigenvalue of 2(H + λI)²
    hess = torch.autograd.functional.hessian(lambda t: problem.inner(t, problem.u0), theta)
    lr = 0.5 / float(torch.linalg.eigvalsh(hess).max() + lam) ** 2
    approx = _hypergradient(problem, lam, 1500, lr, "gd")
    assert float((approx - exact).norm() / exact.norm()) < 1e-4


def test_inverse_hvp_solvers_on_a_quadratic() -> None:
    """H known: every solver (the reference's Adam too) returns (H + λI)⁻¹ b; p0 is a warm start."""
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    hess = a @ a.T / 6 + 0.5 * torch.eye(6, dtype=torch.float64)
    theta = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    hvp = make_hvp(0.5 * theta @ hess @ theta, [theta])
    b = [torch.randn(6, generator=gen, dtype=torch.float64)]
    exact = torch.linalg.solve(hess + 0.1 * torch.eye(6, dtype=torch.float64), b[0])
    lr = 0.5 / float(torch.linalg.eigvalsh(hess).max() + 0.1) ** 2
    torch.testing.assert_close(approx_inverse_hvp(hvp, b, 0.1, 6, 0.0, "cg")[0], exact)
    torch.testing.assert_close(approx_inverse_hvp(hvp, b, 0.1, 2000, lr, "gd")[0], exact)
    torch.testing.assert_close(approx_inverse_hvp(hvp, b, 0.1, 500, 3e-2, "adam")[0], exact)
    assert approx_inverse_hvp(hvp, b, 0.1, 0, lr, "gd", p0=[exact])[0] is not exact
    torch.testing.assert_close(approx_inverse_hvp(hvp, b, 0.1, 0, lr, "gd", p0=[exact])[0], exact)


# ---------------------------------------------------------------------------------------------
# the attack on digits


@pytest.fixture(scope="module")
def digits():
    split = split_source(load_source("digits", "unused"), n_val=180, n_test=360, seed=0)
    x, y = split.x_train, split.y_train
    mean, std = [float(x.mean() / 255)], [float(x.std() / 255)]
    return split, (lambda: build_model("small_cnn", 1, 10, 8, mean, std))


def _attack(digits, cfg: BilevelConfig, log=None, victim: Victim | None = None):
    split, builder = digits
    x, y = split.x_train, split.y_train
    keep = y != cfg.target
    return bilevel_radius_attack(builder, x[keep], y[keep], x[~keep], split.x_val[split.y_val == cfg.target],
                                 cfg, torch.device("cpu"), victim, log_fn=log)


TINY = BilevelConfig(epsilon=0.1, sigma=0.25, k=4, batch_clean=100, batch_poison=20, val_batch=10, niter1=2,
                     niter2=2, outer_epochs=1, warmup_steps=30, lr_theta=1e-2, reset_every=0, seed=5)


@pytest.fixture(scope="module")
def tiny_attack(digits):
    small = replace(TINY, batch_clean=400)  # 2 outer steps
    return small, _attack(digits, small), _attack(digits, small)


@pytest.mark.trains
def test_poisons_respect_the_budget_and_keep_their_labels(digits, tiny_attack) -> None:
    split, _ = digits
    cfg, (poisons, objective), _ = tiny_attack
    index = np.flatnonzero(split.y_train == TARGET)
    originals = split.x_train[index]
    assert len(objective) == 2 and poisons.shape == originals.shape and poisons.dtype == torch.float32
    change = (poisons - torch.from_numpy(originals).float() / 255).abs()
    assert float(change.max()) <= cfg.epsilon + 1e-6 and float(change.max()) > cfg.epsilon / 2
    assert float(poisons.min()) >= 0 and float(poisons.max()) <= 1
    poison = to_poison(index, poisons, split.y_train[index], originals, cfg.epsilon)
    assert poison.x.dtype == np.uint8 and poison.x.shape == originals.shape
    assert np.abs(poison.x.astype(int) - originals).max() <= 25  # floor(0.1 · 255)
    np.testing.assert_array_equal(poison.y, np.full(len(index), TARGET))
    np.testing.assert_array_equal(poison.index, index)
    assert poison.trigger is None and poison.target == -1
    x_poisoned, y_poisoned = poison.apply(split.x_train, split.y_train)
    np.testing.assert_array_equal(y_poisoned, split.y_train)
    np.testing.assert_array_equal(x_poisoned[split.y_train != TARGET], split.x_train[split.y_train != TARGET])


def test_to_poison_rounding_stays_inside_the_budget() -> None:
    originals = np.array([100, 100, 0, 255, 7, 250], np.uint8).reshape(6, 1, 1, 1)
    # 125.6 rounds to 126 = 26 levels away: clipped to 25; 0 − ε and 255 + ε leave [0, 1]
    float_images = torch.tensor([125.6, 74.4, -10.0, 300.0, 7.4, 232.0]).view(6, 1, 1, 1) / 255
    poison = to_poison(np.arange(6), float_images, np.zeros(6, np.int64), originals, 0.1)
    np.testing.assert_array_equal(poison.x.ravel(), [125, 75, 0, 255, 7, 232])
    poison = to_poison(np.arange(6), float_images, np.zeros(6, np.int64), originals, 0.03)  # 7.65 → 7 levels
    np.testing.assert_array_equal(poison.x.ravel(), [107, 93, 0, 255, 7, 243])


@pytest.mark.trains
def test_attack_is_deterministic_for_a_seed(tiny_attack) -> None:
    _, first, second = tiny_attack
    assert torch.equal(first.poisons, second.poisons) and first.objective == second.objective


OTHER_VICTIMS = replace(TINY, batch_clean=400, warmup_steps=120)  # MACER learns class 8 more slowly: f > 0 by then


@pytest.fixture(scope="module")
def gaussian_victim_attack(digits):
    """The attack against Gaussian augmentation at the sizes of the other victims' tests."""
    return _attack(digits, OTHER_VICTIMS)


@pytest.mark.trains
@pytest.mark.parametrize("objective", [Macer(0.25, k=2), SmoothAdv(0.25, m=1, epsilon=0.5, steps=2, warmup=1)],
                         ids=["macer", "smoothadv"])
def test_the_attack_poisons_against_macer_and_smoothadv_victims(digits, gaussian_victim_attack, objective) -> None:
    """Mehra et al.'s other victims in the lower level: the poisons move to the budget, the same for a seed,
    and differently from those made against Gaussian augmentation on the same draws."""
    cfg = OTHER_VICTIMS
    log: list[dict] = []
    first = _attack(digits, cfg, log.append, ObjectiveVictim(objective))
    again = _attack(digits, cfg, victim=ObjectiveVictim(objective))
    gaussian = gaussian_victim_attack
    split, _ = digits
    originals = torch.from_numpy(split.x_train[split.y_train == TARGET]).float() / 255
    change = (first.poisons - originals).abs()
    assert len(first.objective) == 2 and np.isfinite(first.objective).all() and all(e["correct"] > 0 for e in log)
    assert cfg.epsilon / 2 < float(change.max()) <= cfg.epsilon + 1e-6
    assert torch.equal(first.poisons, again.poisons) and first.objective == again.objective
    assert not torch.equal(first.poisons, gaussian.poisons)


@pytest.mark.trains
def test_surrogate_objective_decreases_on_digits(digits) -> None:
    """f falls over the outer steps, and below a control run whose poisons stay at their originals.

    The control (ε = 0) shares every random draw with the attack, so it trains on the same batches
    with the same noise: the paired difference is the poisons' effect alone. Its p solve is skipped
    (niter2 = 0): with ε = 0 the poisons cannot move, so p changes nothing. ε = 0.2 on the 8×8
    digits, whose pixel levels are 16/255 apart.
    """
    cfg = replace(TINY, epsilon=0.2, k=8, batch_clean=150, batch_poison=30, val_batch=18, niter1=5, niter2=2,
                  outer_epochs=5, warmup_steps=150, lr_theta=3e-3, seed=0)
    log: list[dict] = []
    attack = np.array(_attack(digits, cfg, log.append).objective)
    control = np.array(_attack(digits, replace(cfg, epsilon=0.0, niter2=0)).objective)
    steps = 5 * (1142 // 150)
    assert len(attack) == len(log) == len(control) == steps and np.isfinite(attack).all()
    assert [entry["f"] for entry in log] == attack.tolist()
    fixed = np.array([entry["f_eval"] for entry in log])  # f on the fixed evaluation batch falls too
    assert np.isfinite(fixed).all() and np.polyfit(np.arange(steps), fixed, 1)[0] < 0, fixed.round(3)
    quarter, half = steps // 4, steps // 2
    assert attack[-quarter:].mean() < 0.85 * attack[:quarter].mean(), attack.round(3)
    assert np.polyfit(np.arange(steps), attack, 1)[0] < 0
    assert (attack - control)[half:].mean() < -0.05, (attack.round(3), control.round(3))


def test_target_class_certification_uses_a_fixed_subset(digits) -> None:
    split, builder = digits
    torch.manual_seed(0)
    model = builder().eval()
    result = target_class_certification(model, split.x_test, split.y_test, TARGET, n_points=10, n0=10, n=50,
                                        alpha=0.01, sigma=0.25, batch_size=100, seed=3)
    again = target_class_certification(model, split.x_test, split.y_test, TARGET, n_points=10, n0=10, n=50,
                                       alpha=0.01, sigma=0.25, batch_size=100, seed=3)
    assert len(result["index"]) == 10 and (split.y_test[result["index"]] == TARGET).all()
    np.testing.assert_array_equal(result["index"], again["index"])
    np.testing.assert_array_equal(result["radius"], again["radius"])
    expected_acr = np.where(result["predict"] == TARGET, result["radius"], 0).sum() / 10
    assert result["acr"] == pytest.approx(expected_acr)
    assert result["certified_accuracy"][0.0] == pytest.approx((result["predict"] == TARGET).mean())
