"""Training objectives that make a base classifier robust under Gaussian noise (docs/methods.md §8).

- :class:`Macer` (Zhai et al., ICLR 2020; ref: RuntianZ/macer ``macer.py``): k noisy copies of each
  input; cross-entropy of the mean softmax, plus λ times a hinge on the soft certified radius of the
  inputs whose (β-tempered) smoothed prediction is right.
- :class:`SmoothAdv` (Salman et al., NeurIPS 2019; ref: Hadisalman/smoothing-adversarial): L2 PGD
  on the smoothed *soft* classifier with m fixed noise draws, then cross-entropy on the m noisy copies
  of the adversarial input; ε ramped up over the first ``warmup`` epochs.

Both follow :class:`robustcert.train.Objective`: ``perturb`` turns a batch of b inputs into the b·k
(or b·m) inputs the model sees, copy j of input i at row i·k + j, and ``loss`` reads the logits back
in that layout. A schedule over epochs (MACER's λ, SmoothAdv's ε) is :meth:`at_epoch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustcert.pgd import PGD

# MACER's guard against log(0) in the classification term (the reference's 1e-10)
LOG_GUARD = 1e-10
# SmoothAdv's guard in the attacked loss (the reference clamps the soft probability at 1e-20)
SOFT_GUARD = 1e-20


def noisy_copies(x: torch.Tensor, copies: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``copies`` noisy versions of each input, copy j of input i at row i·copies + j (noise drawn
    on the CPU from ``generator``, so a seed gives the same draws on every device)."""
    repeated = x.repeat_interleave(copies, dim=0)
    return repeated + sigma * torch.randn(repeated.shape, generator=generator).to(x.device)


@dataclass(frozen=True)
class Macer:
    """MACER's loss: [Σ −log p̂_y + λ·(σ/2)·Σ_{robust} (γ − ξ)] / b over a batch of b inputs.

    p̂ is the mean softmax over the k copies; ξ = Φ⁻¹(p̃_top) − Φ⁻¹(p̃_second) of the mean softmax of
    β·logits. The hinge covers the inputs whose p̃ top class is the label and whose ξ is finite and
    at most γ (the reference's selection), written with masks rather than boolean indexing so that
    it also runs inside the batched (vmapped) trainer. ``schedule``: (epoch, λ) pairs, λ switching to
    each value from that epoch on (MACER lowers λ late in CIFAR-10 training).
    """

    sigma: float
    k: int = 16
    lam: float = 16.0
    beta: float = 16.0
    gamma: float = 8.0
    schedule: Sequence[tuple[int, float]] = ()

    def at_epoch(self, epoch: int) -> Macer:
        """The objective with the λ of ``epoch``."""
        lam = self.lam
        for start, value in sorted(self.schedule):
            if epoch >= start:
                lam = value
        return replace(self, lam=lam)

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return noisy_copies(x, self.k, self.sigma, generator)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.reshape(len(y), self.k, -1)
        mean_softmax = F.softmax(logits, dim=2).mean(dim=1)
        classification = F.nll_loss(torch.log(mean_softmax + LOG_GUARD), y, reduction="sum")
        return (classification + self.lam * self.robustness(logits, y)) / len(y)

    def robustness(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(σ/2) Σ (γ − ξ) over the inputs the hinge covers, for logits [b, k, C]."""
        tempered = F.softmax(self.beta * logits, dim=2).mean(dim=1)
        top, index = torch.topk(tempered, 2, dim=1)
        with torch.no_grad():
            xi = torch.special.ndtri(top[:, 0]) - torch.special.ndtri(top[:, 1])
            covered = (index[:, 0] == y) & torch.isfinite(xi) & (xi.abs() <= self.gamma)
        # the excluded inputs see Φ⁻¹(0.5) = 0, so no infinite derivative meets their zero weight
        safe = torch.where(covered[:, None], top, torch.full_like(top, 0.5))
        margin = torch.special.ndtri(safe[:, 0]) - torch.special.ndtri(safe[:, 1])
        return torch.where(covered, self.gamma - margin, torch.zeros_like(margin)).sum() * self.sigma / 2


@dataclass(frozen=True)
class SmoothAdv:
    """SmoothAdv's PGD training: x' maximises −log((1/m) Σ_j softmax(f(x' + δ_j))_y) over the L2
    ε-ball around x in [0, 1] (``steps`` steps of 2ε/steps from x itself, the same δ_j throughout,
    the model in eval mode, as the reference's ``PGD_L2``); the loss is the cross-entropy of each
    x' + δ_j. ε grows linearly to its value over the first ``warmup`` epochs (ε·(epoch+1)/warmup)."""

    sigma: float
    m: int = 1
    epsilon: float = 0.25
    steps: int = 2
    warmup: int = 10
    needs_model: ClassVar[bool] = True

    def at_epoch(self, epoch: int) -> SmoothAdv:
        """The objective with the ε of ``epoch``."""
        return replace(self, epsilon=self.epsilon * min(1.0, (epoch + 1) / max(self.warmup, 1)), warmup=1)

    def perturb(self, x: torch.Tensor, generator: torch.Generator, *, model: nn.Module,
                y: torch.Tensor) -> torch.Tensor:
        noise = self.sigma * torch.randn((len(x) * self.m, *x.shape[1:]), generator=generator).to(x.device)
        if self.epsilon > 0 and self.steps > 0:
            was_training = model.training
            model.eval()
            try:
                attack = PGD("l2", self.epsilon, 2 * self.epsilon / self.steps, self.steps, random_start=False)
                x = attack.perturb(self.soft_loss(model, y, noise), x)
            finally:
                model.train(was_training)
        return x.repeat_interleave(self.m, dim=0) + noise

    def soft_loss(self, model: nn.Module, y: torch.Tensor, noise: torch.Tensor):
        """The per-example loss PGD maximises: −log of the smoothed soft classifier's probability of y."""

        def loss(x_adv: torch.Tensor) -> torch.Tensor:
            logits = model(x_adv.repeat_interleave(self.m, dim=0) + noise).reshape(len(y), self.m, -1)
            soft = F.softmax(logits, dim=2).mean(dim=1)
            return -torch.log(soft.gather(1, y[:, None]).squeeze(1).clamp(min=SOFT_GUARD))

        return loss

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y.repeat_interleave(self.m))
