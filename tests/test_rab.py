"""RAB (robustcert.rab): the certificate against a direct computation, the fixed noise of training and
scoring, and the attacks of RAB's paper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import norm

from robustcert import config as cfg
from robustcert import rab

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.validate_config(config, REPO / "config" / "schemas")
    return config


def direct_radius(scores: np.ndarray, sigma: float, alpha: float | None, eps: float = 1e-8) -> tuple[int, float]:
    """One point's prediction and radius, computed as the issue states it, class by class."""
    mean = [sum(model[c] for model in scores) / len(scores) for c in range(len(scores[0]))]
    order = sorted(range(len(mean)), key=lambda c: (-mean[c], c))
    h = 0.0 if alpha is None else math.sqrt(math.log(1 / alpha) / (2 * len(scores)))
    p_a, p_b = max(eps, mean[order[0]] - h), min(1 - eps, mean[order[1]] + h)
    if alpha is None:  # no margin: the expected scores are clamped into [ε, 1 − ε] on both sides
        p_a, p_b = min(p_a, 1 - eps), max(p_b, eps)
    radius = sigma / 2 * (norm.ppf(p_a) - norm.ppf(p_b)) if p_a > p_b else 0.0
    return order[0], max(radius, 0.0)


def test_certify_matches_a_direct_computation_on_random_score_matrices():
    rng = np.random.default_rng(0)
    for n_models, classes in ((1, 2), (7, 2), (50, 3), (400, 10)):
        logits = rng.normal(size=(30, n_models, classes)) * rng.uniform(0, 6, size=(30, 1, 1))
        logits[:, :, 0] += rng.uniform(0, 8, size=(30, 1))  # some confident points
        scores = rab.softmax(logits)
        for alpha in (0.001, 0.1):
            prediction, radius = rab.certify(scores, 0.5, alpha)
            expected = [direct_radius(point, 0.5, alpha) for point in scores]
            assert prediction.tolist() == [e[0] for e in expected]
            np.testing.assert_allclose(radius, [e[1] for e in expected], rtol=1e-12, atol=1e-12)
        prediction, radius = rab.certify_expected(scores, 0.5)
        expected = [direct_radius(point, 0.5, None) for point in scores]
        np.testing.assert_allclose(radius, [e[1] for e in expected], rtol=1e-12, atol=1e-12)


def test_points_within_the_hoeffding_margin_have_radius_zero_and_keep_their_prediction():
    # N = 10, α = 0.001: h = √(ln 1000 / 20) ≈ 0.588; p_A = 0.7 cannot beat p_B = 0.3 by 2h
    scores = np.tile([[0.3, 0.7]], (10, 1))[None]
    prediction, radius = rab.certify(scores, 1.0, 0.001)
    assert prediction.tolist() == [1] and radius.tolist() == [0.0]
    _, expected = rab.certify_expected(scores, 1.0)
    assert expected[0] == pytest.approx(0.5 * (norm.ppf(0.7) - norm.ppf(0.3)))


def test_ties_go_to_the_smaller_class_and_have_radius_zero():
    scores = np.full((1, 4, 3), 1 / 3)
    prediction, radius = rab.certify(scores, 1.0, 0.001)
    assert prediction.tolist() == [0] and radius.tolist() == [0.0]
    assert rab.certify_expected(scores, 1.0)[1].tolist() == [0.0]


def test_epsilon_clamps_the_bounds_of_unanimous_scores():
    # every model certain: p_A = 1, p_B = 0; with no Hoeffding term both are clamped by ε
    scores = np.tile([[1.0, 0.0]], (1000, 1))[None]
    _, radius = rab.certify_expected(scores, 2.0)
    assert radius[0] == pytest.approx(norm.ppf(1 - 1e-8) - norm.ppf(1e-8))
    # with it, p̲_A = 1 − h and p̄_B = h, both inside (ε, 1 − ε)
    h = math.sqrt(math.log(1000) / 2000)
    assert rab.certify(scores, 2.0, 0.001)[1][0] == pytest.approx(norm.ppf(1 - h) - norm.ppf(h))
    # a margin above p_A clamps p̲_A at ε, which is then no larger than p̄_B: radius 0
    assert rab.certify(np.array([[[0.0, 1.0]]]), 1.0, 0.001)[1].tolist() == [0.0]


def test_certified_accuracy_counts_radii_strictly_above_r():
    radius = np.array([0.0, 0.5, 0.5, 1.0])
    correct = np.array([1, 1, 0, 1])
    assert rab.certified_accuracy(radius, correct, [0.0, 0.5, 1.0]).tolist() == [0.5, 0.25, 0.0]


def test_certified_robust_accuracy_needs_a_radius_above_each_points_trigger():
    predictions, labels = np.array([0, 1, 1, 0, 2]), np.array([0, 1, 0, 0, 2])  # the last: target class 2
    radius, needed = np.array([2.0, 1.0, 5.0, 0.5, 9.0]), np.array([1.0, 1.0, 1.0, 0.4, 1.0])
    assert rab.certified_robust_accuracy(predictions, labels, radius, needed, target=2) == 0.5


def test_bad_scores_and_parameters_are_refused():
    with pytest.raises(ValueError, match=r"\[n, N, C\]"):
        rab.certify(np.zeros((3, 2)), 1.0, 0.001)
    with pytest.raises(ValueError, match="alpha"):
        rab.certify(np.zeros((1, 2, 2)), 1.0, 1.5)
    with pytest.raises(ValueError, match="sigma"):
        rab.certify(np.zeros((1, 2, 2)), 0.0, 0.001)


# ----------------------------------------------------------------------------- fixed noise


def _binary_digits(n_test: int = 600):
    from robustcert import data

    return data.restrict_classes(data.split_source(data.load_source("digits", "unused"), 100, n_test, 0), [6, 8])


def _rab_recipe(sigma: float, epochs: int, seed: int = 0):
    from robustcert import train

    return train.TrainConfig(epochs=epochs, batch_size=32, lr=0.05, milestones=(10, 15), objective="fixed_noise",
                             noise_sigma=sigma, seed=seed)


def test_training_noise_is_drawn_once_per_model_and_kept_for_every_epoch():
    import torch

    from robustcert import partition, train

    split = _binary_digits()
    parts = partition.assign("whole", split.x_train, split.y_train, 3)
    cfg = _rab_recipe(0.5, epochs=2)
    runs = train.model_runs(split.x_train, split.y_train, parts, [0, 1, 2], cfg, torch.device("cpu"))
    clean = torch.from_numpy(split.x_train[parts.subset(0)]).float() / 255
    for j, run in enumerate(runs):  # the first draw of model j's generator (seed + j)
        expected = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(cfg.seed + j))
        assert torch.equal(run.x, expected)
    assert not torch.equal(runs[0].x, runs[1].x) and not torch.equal(runs[1].x, runs[2].x)
    for _ in range(cfg.epochs):  # every epoch's batches are rows of the same noisy set, no fresh noise
        for x, _ in train._batches(runs[1], cfg, train.objective_of(cfg)):
            assert any(torch.equal(x[0], row) for row in runs[1].x)
            assert torch.isin(x, runs[1].x).all()


def test_test_noise_is_fixed_per_model_and_the_same_seed_gives_the_same_score_matrix():
    import torch

    from robustcert import partition, poison, score, train

    split = _binary_digits()
    attack = poison.generate_poison({"type": "l2_backdoor", "pattern": "four_pixel", "delta": 0.5, "target": 0,
                                     "fraction": 0.05}, split.x_train, split.y_train, 0)
    x, y = attack.apply(split.x_train, split.y_train)
    parts = partition.assign("whole", x, y, 3)
    spec = train.ModelSpec.for_split("small_cnn", split)
    noise = score.ScoringNoise(0.5, 0)
    assert torch.equal(noise.draw(1, (4, 1, 8, 8)), noise.draw(1, (4, 1, 8, 8)))
    assert not torch.equal(noise.draw(0, (4, 1, 8, 8)), noise.draw(1, (4, 1, 8, 8)))
    assert noise.model_seed(0) != score.ScoringNoise(0.5, 1).model_seed(0)

    def scores(seed: int) -> dict:
        states = train.train_shard(x, y, parts, [0, 1, 2], spec, _rab_recipe(0.5, 2, seed), torch.device("cpu"))
        models = []
        for state in states:
            model = spec.build([0.0], [1.0])
            model.load_state_dict(state)
            models.append(model.eval())
        return score.score_ensemble(models, split.x_test, split.y_test, attack, torch.device("cpu"),
                                    score.ScoringNoise(0.5, seed))

    first, again, other = scores(0), scores(0), scores(1)
    for name in ("logits", "triggered_logits"):
        assert np.array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])
    assert first["logits"].shape == (len(split.y_test), 3, 2)
    # the noise changes the scores: without it the same models score otherwise
    states = train.train_shard(x, y, parts, [0], spec, _rab_recipe(0.5, 2, 0), torch.device("cpu"))
    model = spec.build([0.0], [1.0])
    model.load_state_dict(states[0])
    plain = score.score_ensemble([model.eval()], split.x_test, split.y_test, attack, torch.device("cpu"))
    assert not np.allclose(plain["logits"][:, 0], first["logits"][:, 0])


# ----------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("pattern, shape", [("one_pixel", (1, 28, 28)), ("four_pixel", (1, 28, 28)),
                                            ("four_pixel", (3, 32, 32)), ("four_pixel", (1, 8, 8)),
                                            ("blending", (3, 32, 32))])
def test_l2_triggers_have_norm_delta_up_to_rounding(pattern, shape):
    from robustcert import poison

    trigger = poison.l2_trigger({"pattern": pattern, "delta": 1.0}, shape, np.random.default_rng(0))
    assert trigger.mode == "add"
    assert np.linalg.norm(trigger.value / 255) == pytest.approx(1.0, abs=0.01 * math.sqrt(trigger.mask.sum()))
    if pattern == "four_pixel" and shape == (1, 28, 28):
        assert sorted(zip(*np.nonzero(trigger.mask[0]))) == [(18, 20), (19, 19), (20, 18), (20, 20)]
        assert set(trigger.value[trigger.mask].tolist()) == {128}  # δ/2 = 0.5 → 127.5 rounds to 128
    if pattern == "four_pixel" and shape == (3, 32, 32):
        assert sorted(zip(*np.nonzero(trigger.mask[0]))) == [(14, 16), (15, 15), (16, 14), (16, 16)]
        assert trigger.mask.sum() == 12 and set(trigger.value[trigger.mask].tolist()) == {round(255 / math.sqrt(12))}


def test_l2_backdoor_poisons_a_ratio_of_non_target_images_and_the_budget_reports_its_norms():
    from robustcert import poison

    split = _binary_digits()
    spec = {"type": "l2_backdoor", "pattern": "blending", "delta": 0.3, "target": 0, "fraction": 0.05}
    attack = poison.generate_poison(spec, split.x_train, split.y_train, 7)
    again = poison.generate_poison(spec, split.x_train, split.y_train, 7)
    assert np.array_equal(attack.index, again.index) and np.array_equal(attack.trigger.value, again.trigger.value)
    assert len(attack.index) == round(0.05 * len(split.y_train))
    assert (split.y_train[attack.index] != 0).all() and (attack.y == 0).all()
    budget = poison.budget(attack, split, 0)
    change = (attack.x.astype(float) - split.x_train[attack.index]) / 255
    assert budget["poison_l2"] == pytest.approx(np.sqrt((change ** 2).sum()))
    training, needed = rab.total_trigger_norms(attack, split)
    assert training == pytest.approx(budget["poison_l2"])
    index, triggered = poison.triggered_test_set(attack, split.x_test, split.y_test)
    own = np.linalg.norm((triggered.astype(float) - split.x_test[index]).reshape(len(index), -1) / 255, axis=1)
    np.testing.assert_allclose(needed, np.sqrt(training ** 2 + own ** 2))
    non_target = split.y_test[index] != 0
    assert budget["trigger_l2"] == pytest.approx(own[non_target].mean()) and own.max() <= 0.3 + 0.01 * 8


# ----------------------------------------------------------------------------- audit


@pytest.mark.trains
def test_audit_certified_points_keep_their_prediction_under_a_trigger_inside_the_radius():
    """Train RAB (N = 50, σ = 0.5) on the clean reference (the poisoned labels without their triggers: the
    certificate covers the change of the images) and on the backdoored set; every test point certified
    by the reference for more than its total trigger norm must keep its prediction on its triggered
    input. A change would be a bug or the α = 0.001 event."""
    import torch

    from robustcert import partition, poison, score, train

    split = _binary_digits()
    spec = {"type": "l2_backdoor", "pattern": "four_pixel", "delta": 0.05, "target": 0, "fraction": 0.02}
    attack = poison.generate_poison(spec, split.x_train, split.y_train, 0)
    reference_labels = split.y_train.copy()
    reference_labels[attack.index] = attack.y
    _, needed = rab.total_trigger_norms(attack, split)
    n_models, sigma, device = 50, 0.5, torch.device("cpu")
    spec_model = train.ModelSpec.for_split("small_cnn", split)

    def ensemble_scores(x: np.ndarray) -> dict:
        parts = partition.assign("whole", x, reference_labels, n_models)
        states = train.train_shard(x, reference_labels, parts, range(n_models), spec_model,
                                   _rab_recipe(sigma, epochs=15), device)
        models = []
        for state in states:
            model = spec_model.build([0.0], [1.0])
            model.load_state_dict(state)
            models.append(model.eval())
        return score.score_ensemble(models, split.x_test, split.y_test, attack, device, score.ScoringNoise(sigma, 0))

    reference = ensemble_scores(split.x_train)
    backdoored = ensemble_scores(attack.apply(split.x_train, split.y_train)[0])
    index = reference["triggered_index"]
    clean_prediction, radius = rab.certify(rab.softmax(reference["logits"][index]), sigma, 0.001)
    triggered_prediction, _ = rab.certify(rab.softmax(backdoored["triggered_logits"]), sigma, 0.001)
    checked = radius > needed
    changed = checked & (triggered_prediction != clean_prediction)
    print(f"audit: {checked.sum()} of {len(index)} triggered test points certified beyond their total trigger norm "
          f"(mean {needed.mean():.3f}); {changed.sum()} changed")
    assert checked.sum() >= len(index) // 4
    assert changed.sum() == 0


def test_rab_plan_registers_the_whole_set_fixed_noise_and_the_rows(default_config):
    from types import SimpleNamespace

    from robustcert.workflow import ensemble
    from robustcert.workflow import rab as stage

    plan, ensembles = stage.Plan(default_config), ensemble.Plan(default_config)
    ensembles.register(stage.METHOD, stage.layout, stage.recipe, stage.scoring_sigma)
    wc = SimpleNamespace(dataset="digits_binary", seed="0", attack="four_pixel", defense="rab", shard="0", certificate="rab")
    assert ensembles.partition_params(wc) == {"assignment": "whole", "k": 50, "d": 1}
    assert ensembles.shard_subsets(wc) == list(range(50))  # one job trains the 50 models
    assert ensembles.recipe(wc)["train"]["objective"] == "fixed_noise"
    assert ensembles.recipe(wc)["train"]["noise_sigma"] == 0.5
    assert ensembles.test_noise(wc) == {"sigma": 0.5, "seed": 0}
    assert "<results>/tables/rows/digits_binary/seed_0/four_pixel/rab/rab_expected.tsv" in plan.rows()
    assert plan.certify_params(wc) == {"sigma": 0.5, "alpha": 0.001, "n_models": 50}
    assert plan.row_params(wc)["delta"] == 0.1
    assert plan.plots() == ["<results>/plots/digits_binary/rab_l2_budget.png", "<results>/plots/digits_binary/rab_l2_budget.pdf"]
