"""Clean-label bilevel poisons that shrink the certified radius of a target class (Mehra, Kailkhura,
Chen, Hamm, CVPR 2021; docs/methods.md §5; ref: the authors' TensorFlow code, ``bilevel_approxgrad.py``,
``bilevel_poison_radius*.py`` and their drivers).

The attacker perturbs every training image of the target class within L∞ ε (labels unchanged) to

    min_u  f(u, θ*(u))        s.t.  θ*(u) = argmin_θ g(θ, u),  ‖u − x₀‖∞ ≤ ε,  u ∈ [0, 1]

where f is MACER's soft certified radius on validation images of the target class and g is the
victim's training loss on clean + poisoned data. A victim is nothing but that loss (:class:`Victim`):
any training objective of the trainer (:class:`ObjectiveVictim`): Gaussian augmentation (the
default), MACER or SmoothAdv, as Mehra et al. attack all three.

ApproxGrad solves it: per outer step, ``niter1`` optimiser steps on θ for g; an approximate solve of
(∇²_θθ g + λI) p = ∇_θ f with Hessian-vector products (double backward, never the Hessian); a step on
u along ∇_u f − ∇²_uθ g · p (the mixed term is the gradient of ⟨∇_θ g, p⟩ w.r.t. u); projection onto
the ε-ball around the originals and [0, 1]. Memory holds the poison set, the model and one
minibatch's double-backward graph.

What we match in the reference: Adam for θ (state kept across outer steps), for p (warm-started
from the last outer step) and for u (lr_u 0.1: a first step of about lr_u per pixel, then the ε
clip); minibatches of 900 clean + 100 poisoned images, one outer step per clean batch, an epoch
being one pass over the clean data (last short batch dropped); 100 validation images of the target
class drawn per step; f = Σ over correctly classified points of the soft radius / the number of
points (misclassified points count 0, as in ACR); the same batch and noise for the inner steps, the
p solve and the u step; the model re-initialised every ``reset_every`` epochs (10 in the reference's
CIFAR-10 driver, 20 in its MNIST SmoothAdv one) and when f is not finite. Where we deliberately
differ: u's Adam moments are kept per poison (the reference shares one Adam slot among whichever
poisons fill the batch); p's Adam state starts afresh each outer step (p itself is warm-started);
the validation noise is drawn once per validation point for the whole attack (as the reference's
CIFAR-10 driver; its MNIST code redraws it at every evaluation) and the training noise afresh per
outer step (the reference fixes one draw per training image); every draw comes from one seeded
generator, so the attack is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustcert.analysis import DEFAULT_RADII
from robustcert.metrics import average_certified_radius, certified_accuracy
from robustcert.poison import Poison
from robustcert.results import wide
from robustcert.smoothing import Smooth
from robustcert.train import GaussianAugmentation, Objective

HVP = Callable[[Sequence[Tensor]], list[Tensor]]
P_SOLVERS = ("adam", "gd", "cg")
U_OPTIMIZERS = ("adam", "sign", "sgd")


# ---------------------------------------------------------------------------------------------
# the upper objective


def soft_radii(model: nn.Module, x: Tensor, y: Tensor, sigma: float, k: int = 20, beta: float = 16.0,
               a: float = 0.001, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
    """MACER's soft certified radius of every point, 0 for points the soft smoothed classifier gets wrong.

    p̂ = mean over k noise draws of softmax(β·logits(x + σz)); radius
    (σ/2)(Φ⁻¹((1−2a)p̂_y + a) − Φ⁻¹((1−2a)p̂₂ + a)) with p̂₂ the largest other class, for points whose
    argmax of p̂ (ties → smaller index) is y. Differentiable in the model's parameters and in x.

    :param x: images [n, C, H, W] in [0, 1] pixel space
    :param y: labels [n]
    :param noise: standard normal draws [n, k, C, H, W] (scaled by σ here); drawn from ``generator``
        (on its device, then moved to x's) when None
    :return: radii [n]
    """
    n = x.shape[0]
    if noise is None:
        device = generator.device if generator is not None else x.device
        noise = torch.randn((n, k, *x.shape[1:]), generator=generator, device=device)
    noise = noise.to(device=x.device, dtype=x.dtype)
    k = noise.shape[1]
    logits = model((x[:, None] + sigma * noise).flatten(0, 1)).view(n, k, -1)
    p_hat = F.softmax(beta * logits, dim=2).mean(dim=1)
    correct = p_hat.argmax(dim=1) == y
    p_y = p_hat.gather(1, y[:, None]).squeeze(1)
    p_other = p_hat.masked_fill(F.one_hot(y, p_hat.shape[1]).bool(), -1.0).amax(dim=1)
    radius = 0.5 * sigma * (torch.special.ndtri((1 - 2 * a) * p_y + a)
                            - torch.special.ndtri((1 - 2 * a) * p_other + a))
    return torch.where(correct, radius, torch.zeros_like(radius))


def soft_certified_radius(model: nn.Module, x: Tensor, y: Tensor, sigma: float, k: int = 20,
                          beta: float = 16.0, a: float = 0.001, generator: torch.Generator | None = None,
                          noise: Tensor | None = None) -> Tensor:
    """The attacker's objective f: Σ of :func:`soft_radii` over the points / their number (a scalar).

    Misclassified points count 0, so this is a soft ACR; the reference divides by the batch size
    likewise. Parameters as :func:`soft_radii`.
    """
    return soft_radii(model, x, y, sigma, k, beta, a, generator, noise).sum() / x.shape[0]


# ---------------------------------------------------------------------------------------------
# victims: the lower problem's training loss


class Victim(Protocol):
    """A training method under attack, known by its loss g(θ; batch).

    ``loss`` must be differentiable twice in the model's parameters and once more in x (the poisons
    are part of x), and must draw all its randomness from ``generator``: called twice with
    generators in the same state it must return the same value. ``at_epoch`` (optional): the victim
    as it trains in an epoch counted from its model's last initialisation (a schedule).
    """

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """The training loss of a batch (images [b, C, H, W] in [0, 1], labels [b])."""
        ...


@dataclass(frozen=True)
class ObjectiveVictim:
    """A training objective of the trainer (:data:`robustcert.train.OBJECTIVES`: Gaussian augmentation,
    MACER, SmoothAdv) as the lower problem's loss g: ``objective.loss`` of the model's logits on
    ``objective.perturb`` of the batch (the k noisy copies of MACER, SmoothAdv's noisy adversarial inputs).

    The objective perturbs the batch detached from the poisons; their gradient reaches g through
    x − x.detach() added to each of its copies, so every copy's input moves one to one with its image.
    For additive noise (Gaussian augmentation, MACER) that is the exact derivative; for SmoothAdv it
    holds the adversarial perturbation fixed, as Danskin's theorem differentiates a maximum (the PGD
    itself is not differentiated). ``at_epoch`` gives the objective of an epoch of the victim's
    training (SmoothAdv's ε ramp, MACER's λ schedule).
    """

    objective: Objective

    def at_epoch(self, epoch: int) -> ObjectiveVictim:
        """The victim as it trains in ``epoch`` (counted from its last initialisation)."""
        at = getattr(self.objective, "at_epoch", None)
        return ObjectiveVictim(at(epoch)) if at is not None else self

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """g on one batch: the objective's loss, its random draws from ``generator``."""
        context = {"model": model, "y": y} if getattr(self.objective, "needs_model", False) else {}
        inputs = self.objective.perturb(x.detach(), generator, **context)
        shift = x - x.detach()  # zero, but carrying ∂/∂x
        inputs = inputs + shift.repeat_interleave(len(inputs) // len(x), dim=0)
        return self.objective.loss(model(inputs), y)


def gaussian_augmentation_victim(sigma: float) -> ObjectiveVictim:
    """Cohen et al.'s training (docs/methods.md §1), the victim of the attack unless another is given."""
    return ObjectiveVictim(GaussianAugmentation(sigma))


# ---------------------------------------------------------------------------------------------
# second-order machinery


def make_hvp(loss: Tensor, params: Sequence[Tensor]) -> HVP:
    """v ↦ ∇²_θθ loss · v by double backward; the gradient graph is built once and reused."""
    grads = torch.autograd.grad(loss, list(params), create_graph=True)
    return lambda v: _vjp(grads, params, v)


def hessian_vector_product(loss: Tensor, params: Sequence[Tensor], v: Sequence[Tensor]) -> list[Tensor]:
    """∇²_θθ loss · v (one tensor per parameter) without materialising the Hessian."""
    return make_hvp(loss, params)(v)


def approx_inverse_hvp(hvp: HVP, b: Sequence[Tensor], lam: float, niter: int, lr: float,
                       method: str = "adam", p0: Sequence[Tensor] | None = None) -> list[Tensor]:
    """An approximate solution p of (H + λI) p = b, from ``niter`` iterations started at p0 (or 0).

    ``adam`` / ``gd``: Adam (the reference) or plain gradient steps of size ``lr`` on
    h(p) = ‖Hp + λp − b‖², whose gradient 2(H + λI)(Hp + λp − b) costs two Hessian-vector products
    (H is symmetric). ``cg``: conjugate gradient on H + λI (``lr`` unused), stopping early at
    convergence or at non-positive curvature (H + λI must be positive definite for it to converge).
    """
    if method not in P_SOLVERS:
        raise ValueError(f"unknown inverse-HVP method {method!r}; known: {P_SOLVERS}")
    p = [t.detach().clone() for t in p0] if p0 is not None else [torch.zeros_like(t) for t in b]
    b = [t.detach() for t in b]

    def damped(v: Sequence[Tensor]) -> list[Tensor]:
        return [hv + lam * vi for hv, vi in zip(hvp(v), v)]

    if method == "cg":
        return _conjugate_gradient(damped, b, p, niter)
    optimizer = torch.optim.Adam(p, lr=lr) if method == "adam" else None
    for _ in range(niter):
        residual = [ap - bi for ap, bi in zip(damped(p), b)]
        grad = [2 * t for t in damped(residual)]
        if optimizer is None:
            p = [pi - lr * gi for pi, gi in zip(p, grad)]
        else:
            for pi, gi in zip(p, grad):
                pi.grad = gi
            optimizer.step()
    return [t.detach() for t in p]


class HyperGradient(NamedTuple):
    """ApproxGrad's result: the gradient for u, the p it used, and h = ‖(H + λI)p − ∇_θ f‖²."""

    grad: Tensor
    p: list[Tensor]
    residual: float


def approxgrad_hypergradient(outer_loss: Tensor, inner_loss: Tensor, params: Sequence[Tensor], u: Tensor,
                             lam: float = 1e-3, niter: int = 10, lr: float = 1e-2, method: str = "adam",
                             p0: Sequence[Tensor] | None = None) -> HyperGradient:
    """df/du ≈ ∇_u f − ∇²_uθ g · p with (∇²_θθ g + λI) p ≈ ∇_θ f (implicit function theorem).

    :param outer_loss: f, a scalar computed from ``params`` (and possibly u)
    :param inner_loss: g, a scalar computed from ``params`` and u
    :param params: θ, tensors requiring grad
    :param u: the poisons, a leaf tensor requiring grad
    :param lam: the damping λ
    :param niter: iterations of the p solve (``method`` as :func:`approx_inverse_hvp`)
    :param lr: step size of the p solve
    :param p0: the start of the p solve (the last step's p: a warm start)
    """
    params = list(params)
    f_grads = torch.autograd.grad(outer_loss, [*params, u], allow_unused=True)
    f_theta = [torch.zeros_like(t) if g is None else g for t, g in zip(params, f_grads[:-1])]
    f_u = torch.zeros_like(u) if f_grads[-1] is None else f_grads[-1]
    g_theta = torch.autograd.grad(inner_loss, params, create_graph=True)
    hvp: HVP = lambda v: _vjp(g_theta, params, v)  # noqa: E731
    p = approx_inverse_hvp(hvp, f_theta, lam, niter, lr, method, p0)
    residual = sum(float(((hv + lam * pi - fi) ** 2).sum()) for hv, pi, fi in zip(hvp(p), p, f_theta))
    mixed = _vjp(g_theta, [u], p)[0]  # ∇_u ⟨∇_θ g, p⟩ = ∇²_uθ g · p
    return HyperGradient((f_u - mixed).detach(), p, residual)


def _vjp(outputs: Sequence[Tensor], inputs: Sequence[Tensor], v: Sequence[Tensor]) -> list[Tensor]:
    """Σ_i ⟨outputs_i, v_i⟩ differentiated w.r.t. inputs (zeros where it does not depend on them)."""
    pairs = [(o, vi) for o, vi in zip(outputs, v) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad([o for o, _ in pairs], list(inputs), grad_outputs=[vi for _, vi in pairs],
                                retain_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


def _conjugate_gradient(apply_a: HVP, b: list[Tensor], x: list[Tensor], niter: int) -> list[Tensor]:
    r = [bi - ai for bi, ai in zip(b, apply_a(x))]
    d = [ri.clone() for ri in r]
    rr, converged = _dot(r, r), 1e-20 * _dot(b, b)  # a relative residual of 1e-10
    for _ in range(niter):
        if rr <= converged:
            break
        ad = apply_a(d)
        curvature = _dot(d, ad)
        if curvature <= 0:
            break
        step = rr / curvature
        x = [xi + step * di for xi, di in zip(x, d)]
        r = [ri - step * adi for ri, adi in zip(r, ad)]
        rr, rr_old = _dot(r, r), rr
        d = [ri + (rr / rr_old) * di for ri, di in zip(r, d)]
    return x


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    return float(sum((ai * bi).sum() for ai, bi in zip(a, b)))


# ---------------------------------------------------------------------------------------------
# the attack


@dataclass(frozen=True)
class BilevelConfig:
    """The attack's knobs: docs/methods.md §5 defaults (MNIST). The reference's CIFAR-10 driver uses
    epsilon 0.03, sigma 0.25, lr_p 1e-4, k 5, batches of 180 clean + 20 poisons and val_batch 20."""

    target: int = 8
    epsilon: float = 0.1
    sigma: float = 0.5  # the victim's Gaussian augmentation, and the surrogate's σ
    k: int = 20  # noise draws per validation point in f
    beta: float = 16.0
    a: float = 0.001
    lr_u: float = 0.1
    lr_theta: float = 1e-3
    lr_p: float = 1e-2
    lam: float = 1e-3
    outer_epochs: int = 50
    niter1: int = 10
    niter2: int = 10
    batch_clean: int = 900
    batch_poison: int = 100
    val_batch: int = 100
    reset_every: int = 10  # re-initialise θ and the optimisers every this many epochs; 0: never
    warmup_steps: int = 0  # optimiser steps on θ before the first outer step (not in the reference)
    p_solver: str = "adam"  # adam | gd | cg
    u_optimizer: str = "adam"  # adam | sign | sgd
    seed: int = 0

    def __post_init__(self) -> None:
        if self.p_solver not in P_SOLVERS:
            raise ValueError(f"unknown p_solver {self.p_solver!r}; known: {P_SOLVERS}")
        if self.u_optimizer not in U_OPTIMIZERS:
            raise ValueError(f"unknown u_optimizer {self.u_optimizer!r}; known: {U_OPTIMIZERS}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must lie in [0, 1], got {self.epsilon}")
        for name in ("k", "batch_clean", "batch_poison", "val_batch", "niter1"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class AttackResult(NamedTuple):
    """The poisoned target-class images (float in [0, 1], on the CPU) and f per outer step."""

    poisons: Tensor
    objective: list[float]


LogFn = Callable[[dict[str, Any]], None]


def bilevel_radius_attack(model_builder: Callable[[], nn.Module], x_clean: Tensor | np.ndarray,
                          y_clean: Tensor | np.ndarray, x_target: Tensor | np.ndarray,
                          x_val_target: Tensor | np.ndarray, cfg: BilevelConfig, device: torch.device | str,
                          victim: Victim | None = None, log_fn: LogFn | None = None) -> AttackResult:
    """ApproxGrad poisons for every training image of the target class (docs/methods.md §5).

    :param model_builder: returns a freshly initialised model (called under a seeded RNG: the
        attack's seed plus the restart count); it is moved to ``device``
    :param x_clean: the clean training images without the target class [N, C, H, W] (uint8, or
        float in [0, 1]); y_clean their labels
    :param x_target: the target class's training images, the poisons' originals [m, C, H, W]
    :param x_val_target: validation images of the target class (f is measured on them)
    :param victim: the lower problem's loss; Gaussian augmentation with ``cfg.sigma`` by default
    :param log_fn: called after every outer step (but those restarting the model) with a dict:
        ``step``, ``epoch``, ``f`` (on the step's random validation batch), ``f_eval`` (f on the fixed
        evaluation batch: the first ``val_batch`` validation images with their fixed noise draws), ``g``, ``residual`` (of
        the p solve) and ``correct`` (points of f's validation batch with a positive soft radius)
    :return: the poisons (same order as x_target) and f at each outer step (after the inner steps)
    """
    device = torch.device(device)
    victim = victim or gaussian_augmentation_victim(cfg.sigma)
    gen = torch.Generator().manual_seed(cfg.seed)
    xc, yc = _unit_images(x_clean).to(device), torch.as_tensor(y_clean, dtype=torch.long).to(device)
    originals = _unit_images(x_target).to(device)
    x_val = _unit_images(x_val_target).to(device)
    if len(originals) == 0 or len(x_val) == 0 or len(xc) == 0:
        raise ValueError("the attack needs clean images, target-class images and target-class validation images")
    y_poison = torch.full((len(originals),), cfg.target, dtype=torch.long, device=device)
    y_val = torch.full((len(x_val),), cfg.target, dtype=torch.long, device=device)
    lower, upper = (originals - cfg.epsilon).clamp_(0, 1), (originals + cfg.epsilon).clamp_(0, 1)
    val_noise = torch.randn((len(x_val), cfg.k, *x_val.shape[1:]), generator=gen).to(device)  # fixed draws
    u = originals.clone()

    def batch_loss(model: nn.Module, clean: Tensor, poison: Tensor, seed: int) -> Callable[[Tensor], Tensor]:
        """poisons ↦ g on one batch, with the same noise however often it is evaluated."""
        x, y = xc[clean], torch.cat([yc[clean], y_poison[poison]])
        return lambda poisons: current.loss(model, torch.cat([x, poisons]), y, torch.Generator().manual_seed(seed))

    def draw(clean: Tensor) -> tuple[Tensor, Tensor, int]:
        poison = torch.randperm(len(u), generator=gen)[:cfg.batch_poison].to(device)
        return clean.to(device), poison, int(torch.randint(0, 2**62, (1,), generator=gen))

    objective: list[float] = []
    restarts = 0
    state = _LowerLevel.fresh(model_builder, cfg, restarts, device)
    u_step = _PoisonStep(cfg.u_optimizer, cfg.lr_u, u)
    for epoch in range(cfg.outer_epochs):
        if cfg.reset_every and epoch and epoch % cfg.reset_every == 0:
            restarts += 1
            state = _LowerLevel.fresh(model_builder, cfg, restarts, device)
            u_step = _PoisonStep(cfg.u_optimizer, cfg.lr_u, u)
        current = _victim_at(victim, epoch % cfg.reset_every if cfg.reset_every else epoch)
        for clean_batch in _clean_batches(len(xc), cfg.batch_clean, gen):
            if not state.warmed_up:  # after each (re)initialisation: steps on fresh random batches
                for _ in range(cfg.warmup_steps):
                    clean, poison, seed = draw(torch.randperm(len(xc), generator=gen)[:cfg.batch_clean])
                    state.inner_steps(lambda: batch_loss(state.model, clean, poison, seed)(u[poison]), 1)
                state.warmed_up = True
            clean, poison, seed = draw(clean_batch)
            val = torch.randperm(len(x_val), generator=gen)[:cfg.val_batch].to(device)
            g_of = batch_loss(state.model, clean, poison, seed)
            state.inner_steps(lambda: g_of(u[poison]), cfg.niter1)
            state.model.eval()
            radii = soft_radii(state.model, x_val[val], y_val[val], cfg.sigma, cfg.k, cfg.beta, cfg.a,
                               noise=val_noise[val])
            with torch.no_grad():  # f on the fixed evaluation batch: the first val_batch images, their fixed draws
                f_eval = soft_radii(state.model, x_val[:cfg.val_batch], y_val[:cfg.val_batch], cfg.sigma, cfg.k,
                                    cfg.beta, cfg.a, noise=val_noise[:cfg.val_batch]).mean()
            state.model.train()
            f = radii.sum() / len(val)
            ub = u[poison].clone().requires_grad_(True)
            g = g_of(ub)
            objective.append(float(f.detach()))
            if not (torch.isfinite(f) and torch.isfinite(g)):  # as the reference: start the model afresh
                restarts += 1
                state = _LowerLevel.fresh(model_builder, cfg, restarts, device)
                continue
            hyper = approxgrad_hypergradient(f, g, state.params, ub, cfg.lam, cfg.niter2, cfg.lr_p, cfg.p_solver,
                                             state.p)
            state.p = hyper.p
            u[poison] = torch.minimum(torch.maximum(u_step(poison, hyper.grad), lower[poison]), upper[poison])
            if log_fn is not None:
                log_fn({"step": len(objective) - 1, "epoch": epoch, "f": objective[-1], "f_eval": float(f_eval),
                        "g": float(g.detach()),
                        "residual": hyper.residual, "correct": int((radii > 0).sum())})
    return AttackResult(u.detach().cpu(), objective)


class _LowerLevel:
    """The victim's model, its optimiser and the warm-started p of the lower problem."""

    def __init__(self, model: nn.Module, cfg: BilevelConfig) -> None:
        self.model = model.train()
        self.params = [t for t in model.parameters() if t.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr_theta)
        self.p: list[Tensor] | None = None
        self.warmed_up = False

    @classmethod
    def fresh(cls, builder: Callable[[], nn.Module], cfg: BilevelConfig, restart: int,
              device: torch.device) -> _LowerLevel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + restart)
            model = builder()
        return cls(model.to(device), cfg)

    def inner_steps(self, loss: Callable[[], Tensor], steps: int) -> None:
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss().backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class _PoisonStep:
    """The update of a batch of poisons along the hypergradient: Adam with per-poison moments
    (bias correction by each poison's own step count), sign of the gradient, or plain gradient."""

    def __init__(self, kind: str, lr: float, u: Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.kind, self.lr, self.u, self.betas, self.eps = kind, lr, u, betas, eps
        if kind == "adam":
            self.m, self.v = torch.zeros_like(u), torch.zeros_like(u)
            self.t = torch.zeros(len(u), dtype=u.dtype, device=u.device)

    def __call__(self, index: Tensor, grad: Tensor) -> Tensor:
        """The unprojected new values of the poisons ``index``."""
        if self.kind == "sign":
            return self.u[index] - self.lr * grad.sign()
        if self.kind == "sgd":
            return self.u[index] - self.lr * grad
        b1, b2 = self.betas
        self.t[index] += 1
        self.m[index] = m = b1 * self.m[index] + (1 - b1) * grad
        self.v[index] = v = b2 * self.v[index] + (1 - b2) * grad * grad
        shape = (-1,) + (1,) * (grad.dim() - 1)
        t = self.t[index].view(shape)
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return self.u[index] - self.lr * m_hat / (v_hat.sqrt() + self.eps)


def _victim_at(victim: Victim, epoch: int) -> Victim:
    """The victim of an epoch of its model's training (itself when it has no schedule)."""
    at = getattr(victim, "at_epoch", None)
    return at(epoch) if at is not None else victim


def _clean_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """One epoch's clean batches: full batches of a permutation (one batch of all when n < batch_size)."""
    order = torch.randperm(n, generator=generator)
    if n <= batch_size:
        return [order]
    return list(order[: n - n % batch_size].split(batch_size))


def _unit_images(x: Tensor | np.ndarray) -> Tensor:
    """Images as float32 in [0, 1] (uint8 arrays are divided by 255)."""
    t = torch.as_tensor(x)
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


# ---------------------------------------------------------------------------------------------
# output and evaluation


def to_poison(index: np.ndarray, x_poisoned: Tensor | np.ndarray, y: np.ndarray, x_original: np.ndarray,
              epsilon: float) -> Poison:
    """The backbone's poison format: uint8 images that stay within ε of their uint8 originals.

    Rounding u·255 may step past the ε-ball, so the rounded values are clipped to
    x₀ ± floor(ε·255) (and [0, 255]): every pixel differs from its original by at most ε.

    :param index: the training-set indices of the poisoned images
    :param x_poisoned: the attack's images, float in [0, 1] [m, C, H, W]
    :param y: their labels (unchanged: the attack is clean-label)
    :param x_original: the uint8 originals [m, C, H, W]
    """
    x_original = np.asarray(x_original)
    if x_original.dtype != np.uint8:
        raise ValueError(f"the originals must be uint8, got {x_original.dtype}")
    x_poisoned = torch.as_tensor(x_poisoned).detach().cpu().double().numpy()
    if x_poisoned.shape != x_original.shape or not len(index) == len(x_poisoned) == len(y):
        raise ValueError(f"{len(index)} indices, poisons {x_poisoned.shape}, {len(y)} labels and originals "
                         f"{x_original.shape} do not match")
    budget = math.floor(round(epsilon * 255, 9))
    rounded = np.rint(np.clip(x_poisoned, 0.0, 1.0) * 255.0)
    original = x_original.astype(np.int64)
    images = np.clip(rounded, original - budget, original + budget).clip(0, 255).astype(np.uint8)
    return Poison(np.asarray(index, dtype=np.int64), images, np.asarray(y, dtype=np.int64))


def target_class_certification(model: nn.Module, x_test: np.ndarray, y_test: np.ndarray, target: int,
                               n_points: int = 500, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
                               sigma: float = 0.5, batch_size: int = 1000, seed: int = 0, num_classes: int = 10,
                               radii: Sequence[float] = DEFAULT_RADII) -> dict[str, Any]:
    """CERTIFY a fixed random subset of the target class's test points (docs/methods.md §5 evaluation).

    The subset depends only on ``seed``, ``n_points`` and the labels, so a victim trained on clean
    data and one trained on poisons are certified on the same points (and the same noise).

    :param model: the base classifier f (on the device it computes on)
    :param x_test: test images (uint8, or float in [0, 1]) [N, C, H, W]; y_test their labels
    :return: ``index`` (sorted test indices), ``label``, ``predict`` (−1: abstain), ``radius``,
        ``correct`` (per point), ``acr`` and ``certified_accuracy`` ({r: share} for r in radii)
    """
    candidates = np.flatnonzero(np.asarray(y_test) == target)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(candidates, size=min(n_points, len(candidates)), replace=False)).astype(np.int64)
    smooth = Smooth(model, num_classes, sigma, generator=seed)
    predict, radius = smooth.certify_batch(_unit_images(x_test[index]), n0, n, alpha, batch_size)
    correct = predict == target
    return {
        "index": index, "label": np.full(len(index), target, np.int64), "predict": predict, "radius": radius,
        "correct": correct, "acr": average_certified_radius(radius, correct),
        "certified_accuracy": dict(zip(map(float, radii), map(float, certified_accuracy(radius, correct, radii)))),
    }


def transfer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mehra et al.'s transfer table from evaluation rows (tidy, as :func:`robustcert.results.tidy_rows`):
    one row per dataset and attack (its ``victim`` and ``victim_sigma``), one column per evaluation
    victim (``<defense> (<objective>, σ=<sigma>)``), the target-class ACR drop in each cell (empty
    where that pair is not evaluated or the clean victim certifies nothing)."""
    table = wide(rows)
    if "acr_drop" not in table:  # no clean victim certified anything: every cell is empty
        table["acr_drop"] = float("nan")
    evaluation = (table["defense"] + " (" + table["objective"] + ", σ="
                  + table["sigma_train"].map("{:g}".format) + ")")
    index = ["dataset", "attack", "victim", "victim_sigma"]
    matrix = table.assign(evaluation=evaluation).pivot(index=index, columns="evaluation", values="acr_drop")
    matrix.columns.name = None
    return matrix.reset_index()
