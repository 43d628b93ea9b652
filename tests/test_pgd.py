"""The one PGD: ε-ball and box, masks, the closed-form optimum on a linear model, seeds, restarts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustcert.pgd import PGD, cross_entropy_loss


def _model_and_batch(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 4))
    return model, torch.rand(12, 2, 6, 6), torch.randint(0, 4, (12,))


@pytest.mark.parametrize("norm,epsilon", [("l2", 0.7), ("linf", 0.05)])
def test_perturbation_stays_in_the_ball_and_the_box(norm: str, epsilon: float) -> None:
    model, x, y = _model_and_batch()
    attack = PGD(norm, epsilon, step_size=epsilon / 3, steps=10, restarts=2)
    adversarial = attack.perturb(cross_entropy_loss(model, y), x, generator=torch.Generator().manual_seed(1))
    delta = (adversarial - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert (size <= epsilon * (1 + 1e-5)).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert size.max() > epsilon / 2  # it moved


def test_untargeted_attack_raises_the_loss_and_leaves_the_model_without_gradients() -> None:
    model, x, y = _model_and_batch()
    loss = cross_entropy_loss(model, y)
    adversarial = PGD("l2", 1.0, step_size=0.25, steps=10).perturb(loss, x, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (loss(adversarial) >= loss(x) - 1e-6).all()
        assert loss(adversarial).mean() > loss(x).mean()
    assert all(p.grad is None for p in model.parameters())


def test_mask_confines_the_perturbation() -> None:
    model, x, y = _model_and_batch()
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 1:3, 2:4] = 1
    adversarial = PGD("linf", 1.0, step_size=0.05, steps=20).perturb(
        cross_entropy_loss(model, y), x, mask=mask, generator=torch.Generator().manual_seed(0))
    changed = (adversarial != x).any(dim=(0, 1))
    assert changed[1:3, 2:4].any()
    assert not changed[mask[0, 0] == 0].any()


def test_targeted_l2_on_a_linear_model_reaches_the_closed_form_optimum() -> None:
    """For two classes, −CE(target) grows along w_t − w_other only: the optimum in the L2 ball of radius
    ε (no box) is ε·(w_t − w_o)/‖w_t − w_o‖, whatever the start."""
    torch.manual_seed(3)
    linear = nn.Linear(5, 2)
    x = torch.randn(7, 5)
    target = torch.ones(7, dtype=torch.long)
    attack = PGD("l2", 2.0, step_size=2.0, steps=40, bounds=None)
    delta = attack.perturb(cross_entropy_loss(linear, target, targeted=True), x,
                           generator=torch.Generator().manual_seed(0)) - x
    direction = (linear.weight[1] - linear.weight[0]).detach()
    optimum = 2.0 * direction / direction.norm()
    torch.testing.assert_close(delta, optimum.expand_as(delta), atol=1e-4, rtol=1e-4)


def test_seeded_runs_repeat_exactly_and_seeds_differ() -> None:
    model, x, y = _model_and_batch()
    attack = PGD("l2", 0.5, step_size=0.1, steps=3, restarts=2)

    def run(seed: int) -> torch.Tensor:
        return attack.perturb(cross_entropy_loss(model, y), x, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_restarts_keep_the_best_per_example() -> None:
    model, x, y = _model_and_batch()
    loss = cross_entropy_loss(model, y)
    single = PGD("linf", 0.1, step_size=0.02, steps=2, restarts=1)
    several = PGD("linf", 0.1, step_size=0.02, steps=2, restarts=4)
    with torch.no_grad():
        once = loss(single.perturb(loss, x, generator=torch.Generator().manual_seed(0)))
        best = loss(several.perturb(loss, x, generator=torch.Generator().manual_seed(0)))
    assert (best >= once - 1e-6).all()  # the first restart is the single run


@pytest.mark.parametrize("kwargs", [dict(norm="l1"), dict(epsilon=-1.0), dict(step_size=0.0), dict(restarts=0)])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    settings = dict(norm="l2", epsilon=1.0, step_size=0.1, steps=1) | kwargs
    with pytest.raises(ValueError, match="PGD"):
        PGD(**settings)
