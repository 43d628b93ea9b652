"""Projected gradient descent (Madry et al.): the one PGD of the workflow.

Used by adversarial training (L2, untargeted), by the translation step of backdoor detection (L2,
targeted, very large ε), by the patch attack (L∞ with ε = 1 inside a mask) and by SmoothAdv (L2 on the
smoothed soft classifier). It is written on torch directly and works on whole batches: no loop over
examples.

The attack maximises ``loss(x_adv)``, a per-example loss [n] that the caller builds (for a classifier,
:func:`cross_entropy_loss`: the loss of the true label to move away from it, or the negative loss of a
target label to move towards it). Each step moves along the gradient, normalised per example (L2) or
its sign (L∞), inside ``mask`` only; then projects the perturbation onto the ε-ball and the image onto
``bounds``. With ``restarts`` > 1 each restart starts from its own random point and every example keeps
its highest-loss result. Random starts are drawn from ``generator`` on the CPU and moved to the data's
device, so a seed gives the same start on every device.

The model's parameters receive no gradient: only the perturbation is differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("l2", "linf")
Loss = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PGD:
    """One PGD attack: the norm and radius of the ball, the step size and count, random start, restarts.

    ``bounds`` is the box the adversarial input stays in ([0, 1] for images; None for no box).
    """

    norm: str
    epsilon: float
    step_size: float
    steps: int
    random_start: bool = True
    restarts: int = 1
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"PGD norm {self.norm!r} is not one of {NORMS}")
        if self.epsilon < 0 or self.step_size <= 0 or self.steps < 0 or self.restarts < 1:
            raise ValueError(f"PGD needs epsilon ≥ 0, step_size > 0, steps ≥ 0, restarts ≥ 1; got {self}")

    def perturb(self, loss: Loss, x: torch.Tensor, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The adversarial inputs for ``x`` [n, …]: the highest ``loss`` found over the restarts.

        ``mask`` (broadcastable to ``x``, 1 where the attacker may change the input) confines the
        perturbation, for example to a patch.
        """
        x = x.detach()
        mask = None if mask is None else mask.to(device=x.device, dtype=x.dtype)
        best, best_loss = x, None
        for _ in range(self.restarts):
            candidate = self._one_run(loss, x, mask, generator)
            with torch.no_grad():
                value = loss(candidate)
            if best_loss is None:
                best, best_loss = candidate, value
            else:
                better = value > best_loss
                best = torch.where(_per_example(better, x), candidate, best)
                best_loss = torch.maximum(value, best_loss)
        return best

    def _one_run(self, loss: Loss, x: torch.Tensor, mask: torch.Tensor | None,
                 generator: torch.Generator | None) -> torch.Tensor:
        delta = self._start(x, mask, generator)
        for _ in range(self.steps):
            with torch.enable_grad():  # also under a caller's no_grad
                delta.requires_grad_(True)
                (gradient,) = torch.autograd.grad(loss(x + delta).sum(), delta)
            with torch.no_grad():
                delta = self._project(x, delta + self.step_size * self._direction(gradient, mask), mask)
        return (x + delta).detach()

    def _start(self, x: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None
               ) -> torch.Tensor:
        if not self.random_start or self.epsilon == 0:
            return torch.zeros_like(x)
        if self.norm == "linf":
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
            start = self.epsilon * noise
        else:
            direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            radius = torch.rand((x.shape[0],), generator=generator, dtype=x.dtype)
            start = direction / _l2(direction) * _per_example(radius, x) * self.epsilon
        return self._project(x, _masked(start.to(x.device), mask), mask)

    def _direction(self, gradient: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        gradient = _masked(gradient, mask)
        if self.norm == "linf":
            return gradient.sign()
        return gradient / _l2(gradient).clamp_min(1e-12)

    def _project(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm == "linf":
            delta = delta.clamp(-self.epsilon, self.epsilon)
        else:
            delta = delta * (self.epsilon / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)
        if self.bounds is not None:
            delta = (x + delta).clamp(*self.bounds) - x
        return _masked(delta, mask).detach()


def cross_entropy_loss(model: nn.Module, labels: torch.Tensor, targeted: bool = False) -> Loss:
    """The per-example loss PGD ascends on a classifier: CE of ``labels`` (untargeted: move away from
    them) or minus it (targeted: ``labels`` are the targets to move towards)."""
    sign = -1.0 if targeted else 1.0

    def loss(x: torch.Tensor) -> torch.Tensor:
        return sign * F.cross_entropy(model(x), labels, reduction="none")

    return loss


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def _masked(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return t if mask is None else t * mask
