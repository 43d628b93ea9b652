"""MACER and SmoothAdv: the batched objectives against direct, one-input-at-a-time computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustcert import partition, train
from robustcert.smoothing_objectives import Macer, SmoothAdv

NORMAL = torch.distributions.Normal(0.0, 1.0)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def direct_macer(model: nn.Module, noisy: torch.Tensor, y: torch.Tensor, m: Macer) -> torch.Tensor:
    """The reference's loss written one input at a time, with its boolean selection of robust inputs."""
    total = torch.zeros(())
    for i in range(len(y)):
        logits = model(noisy[i * m.k:(i + 1) * m.k])
        p = F.softmax(logits, dim=1).mean(0)
        total = total - torch.log(p[y[i]] + 1e-10)
        tempered = F.softmax(m.beta * logits, dim=1).mean(0)
        top, index = torch.topk(tempered, 2)
        if index[0] != y[i]:
            continue
        xi = NORMAL.icdf(top[0]) - NORMAL.icdf(top[1])
        if torch.isfinite(xi) and abs(xi) <= m.gamma:
            total = total + m.lam * (m.gamma - xi) * m.sigma / 2
    return total / len(y)


def test_macer_loss_and_gradient_equal_a_direct_computation():
    model, macer = tiny_model(), Macer(sigma=0.5, k=4, lam=3.0, beta=2.0, gamma=8.0)
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    noisy = macer.perturb(x, torch.Generator().manual_seed(1))
    assert noisy.shape == (24, 1, 4, 4)
    assert torch.allclose(noisy[4:8].mean(0), x[1], atol=0.8)  # copies of input 1 sit at rows 4..7

    batched = macer.loss(model(noisy), y)
    grads = torch.autograd.grad(batched, list(model.parameters()))
    direct = direct_macer(model, noisy, y, macer)
    direct_grads = torch.autograd.grad(direct, list(model.parameters()))
    assert torch.allclose(batched, direct, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, direct_grads))
    assert macer.robustness(model(noisy).reshape(6, 4, 3), y) != 0  # the hinge covers some inputs here


def test_macer_excludes_saturated_inputs_without_nan_gradients():
    macer = Macer(sigma=0.25, k=2, beta=16.0)
    logits = torch.tensor([[[80.0, 0.0, 0.0]] * 2, [[0.0, 3.0, 0.0]] * 2], requires_grad=True)
    loss = macer.loss(logits.reshape(4, 3), torch.tensor([0, 1]))
    (gradient,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    # input 0 is saturated (Φ⁻¹(1) is infinite): only input 1 meets the hinge
    tempered = F.softmax(16.0 * torch.tensor([0.0, 3.0, 0.0]), dim=0)
    top = torch.topk(tempered, 2).values
    xi = NORMAL.icdf(top[0]) - NORMAL.icdf(top[1])
    expected = (0.25 / 2) * (8.0 - xi) if abs(xi) <= 8 else torch.tensor(0.0)
    assert torch.allclose(macer.robustness(logits.detach(), torch.tensor([0, 1])), expected, atol=1e-5)


def test_macer_lambda_schedule():
    macer = Macer(sigma=0.25, lam=12.0, schedule=((200, 4.0),))
    assert macer.at_epoch(0).lam == 12.0 and macer.at_epoch(199).lam == 12.0 and macer.at_epoch(200).lam == 4.0


def direct_smoothadv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, s: SmoothAdv
                     ) -> torch.Tensor:
    """SmoothAdv's attack one input at a time: steps of 2ε/steps along the normalised gradient of
    −log mean softmax_y over the m fixed noise draws, projected onto the ε-ball and [0, 1]."""
    adversarial = []
    for i in range(len(y)):
        xi, delta = x[i:i + 1], torch.zeros_like(x[i:i + 1])
        for _ in range(s.steps):
            delta.requires_grad_(True)
            logits = model(xi + delta + noise[i * s.m:(i + 1) * s.m])
            loss = -torch.log(F.softmax(logits, dim=1).mean(0)[y[i]])
            (g,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + 2 * s.epsilon / s.steps * g / g.norm()
            delta = delta * min(1.0, s.epsilon / float(delta.norm()))
            delta = (xi + delta).clamp(0, 1) - xi
        adversarial.append(xi + delta)
    return torch.cat(adversarial)


def test_smoothadv_attacks_the_smoothed_soft_classifier_as_a_direct_computation():
    model, s = tiny_model(3), SmoothAdv(sigma=0.25, m=3, epsilon=0.5, steps=3)
    x, y = torch.rand(5, 1, 4, 4) * 0.6 + 0.2, torch.tensor([0, 1, 2, 1, 0])
    inputs = s.perturb(x, torch.Generator().manual_seed(2), model=model, y=y)
    noise = 0.25 * torch.randn((15, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    expected = direct_smoothadv(model, x, y, noise, s).repeat_interleave(3, dim=0) + noise
    assert torch.allclose(inputs, expected, atol=1e-5)
    assert model.training  # the attack ran in eval mode and gave the model back as it was
    loss = s.loss(model(inputs), y)
    direct = sum(F.cross_entropy(model(inputs[3 * i:3 * i + 3]), y[i].repeat(3), reduction="sum") for i in range(5)) / 15
    assert torch.allclose(loss, direct, atol=1e-6)


def test_smoothadv_ramps_epsilon_over_the_warmup():
    s = SmoothAdv(sigma=0.5, epsilon=1.0, warmup=10)
    assert [s.at_epoch(e).epsilon for e in (0, 4, 9, 30)] == pytest.approx([0.1, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("objective", ["macer", "smoothadv"])
def test_robust_objectives_train_through_the_shared_trainer(objective):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 40)
    whole = partition.assign("whole", images, labels, k=1)
    cfg = train.TrainConfig(epochs=2, batch_size=16, lr=0.05, milestones=(), objective=objective, noise_sigma=0.25,
                            macer_k=2, smoothadv_m=2, smoothadv_steps=1, strategy="sequential")
    spec = train.ModelSpec("small_cnn", 1, 3, 8)
    first = train.train_shard(images, labels, whole, [0], spec, cfg, torch.device("cpu"))
    again = train.train_shard(images, labels, whole, [0], spec, cfg, torch.device("cpu"))
    assert all(torch.equal(first[0][k], again[0][k]) for k in first[0])  # seeded
    assert all(torch.isfinite(t).all() for t in first[0].values() if t.is_floating_point())


def test_macer_in_the_batched_trainer_matches_the_sequential_one():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (48, 1, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 48)
    parts = partition.assign("hash", images, labels, k=2)
    spec = train.ModelSpec("small_cnn", 1, 3, 8)
    recipe = dict(epochs=2, batch_size=8, lr=0.05, milestones=(), objective="macer", noise_sigma=0.25, macer_k=2)
    sequential = train.train_shard(images, labels, parts, [0, 1], spec,
                                   train.TrainConfig(**recipe, strategy="sequential"), torch.device("cpu"))
    batched = train.train_shard(images, labels, parts, [0, 1], spec,
                                train.TrainConfig(**recipe, strategy="batched"), torch.device("cpu"))
    for a, b in zip(sequential, batched):
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-4) for k in a)


def test_a_smoothing_defense_names_its_objective_in_train_and_foreign_settings_are_refused():
    import yaml

    from robustcert.config import validate_config
    from robustcert.workflow import smoothing

    config = yaml.safe_load(open("config/config.yaml"))
    config["defenses"]["smoothing"]["train"]["objective"] = {"name": "macer", "k": 4, "lambda_schedule": [[5, 2.0]]}
    validate_config(config, "config/schemas")
    cfg = smoothing.training_config({"train": config["defenses"]["smoothing"]["train"], "sigma": 0.5}, seed=0)
    assert (cfg.objective, cfg.macer_k, cfg.macer_lambda_schedule, cfg.noise_sigma) == ("macer", 4, ((5, 2.0),), 0.5)
    assert train.objective_at(cfg, 5).lam == 2.0 and train.objective_at(cfg, 4).lam == cfg.macer_lambda
    params = smoothing.Plan(config).row_params(type("W", (), {"dataset": "digits", "seed": "0", "attack": "none",
                                                               "defense": "smoothing", "sigma": "0.25"})())
    assert params["objective"] == "macer" and params["macer_k"] == 4

    config["defenses"]["smoothing"]["train"]["objective"] = {"name": "macer", "epsilon": 0.5}
    with pytest.raises(ValueError, match=r"defenses.smoothing.train.objective.epsilon: not a setting of 'macer'"):
        smoothing.Plan(config)
    config["defenses"]["dpa"]["train"]["objective"] = {"name": "macer"}
    with pytest.raises(ValueError, match="objective"):
        validate_config(config, "config/schemas")


def test_noisy_examples_scale_one_draw_per_image_and_clip():
    from robustcert.smoothing import noisy_examples

    images = np.full((3, 1, 4, 4), 128, dtype=np.uint8)
    grid = noisy_examples(images, [0.0, 0.5, 1.0], seed=7)
    assert grid.shape == (3, 3, 1, 4, 4) and grid.min() >= 0 and grid.max() <= 1
    assert np.allclose(grid[0], 128 / 255)
    unclipped = (grid[1] > 0) & (grid[1] < 1) & (grid[2] > 0) & (grid[2] < 1)
    # the same noise at both σ: the change from the clean image doubles
    assert np.allclose((grid[2] - grid[0])[unclipped], 2 * (grid[1] - grid[0])[unclipped], atol=1e-6)
