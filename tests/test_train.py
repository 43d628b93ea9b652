"""Training strategies, determinism, checkpoints, and scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustcert import partition, poison, score, train
from robustcert.artifacts import ArtifactError, save_npz

SPEC = train.ModelSpec("small_cnn", 1, 10, 8)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 80, size=(n, 1, 8, 8)).astype(np.uint8)
    x[np.arange(n), 0, y % 8, :] = 250
    return x, y


def _cfg(**overrides):
    base = dict(epochs=3, batch_size=8, lr=0.05, milestones=(2,), crop_padding=1, flip=True, seed=3)
    return train.TrainConfig(**{**base, **overrides})


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sequential_and_batched_reach_the_same_weights_on_unequal_partitions():
    x, y = _data()
    parts = partition.partition_dataset(x, y, 4)
    assert len(set(parts.sizes().tolist())) > 1
    cpu = torch.device("cpu")
    seq = train.train_shard(x, y, parts, [0, 1, 2, 3], SPEC, _cfg(strategy="sequential"), cpu)
    bat = train.train_shard(x, y, parts, [0, 1, 2, 3], SPEC, _cfg(strategy="batched"), cpu)
    for a, b in zip(seq, bat):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_batched_adam_reaches_the_weights_of_torch_adam():
    x, y = _data()
    parts = partition.partition_dataset(x, y, 3)
    cpu = torch.device("cpu")
    recipe = dict(optimizer="adam", lr=1e-3, weight_decay=1e-4)
    seq = train.train_shard(x, y, parts, [0, 1, 2], SPEC, _cfg(strategy="sequential", **recipe), cpu)
    bat = train.train_shard(x, y, parts, [0, 1, 2], SPEC, _cfg(strategy="batched", **recipe), cpu)
    for a, b in zip(seq, bat):
        for name in a:  # Adam divides by √v: float rounding of a tiny v moves a weight by up to ~1e-4·lr·steps
            torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        _cfg(optimizer="rmsprop")


def test_batched_matches_sequential_with_batchnorm_for_a_step():
    x, y = _data(40)
    parts = partition.partition_dataset(x, y, 2)
    spec = train.ModelSpec("nin", 1, 10, 8)
    cfg = _cfg(epochs=1, batch_size=64, crop_padding=0, flip=False)
    seq = train.train_shard(x, y, parts, [0, 1], spec, train.TrainConfig(**{**cfg.__dict__, "strategy": "sequential"}),
                            torch.device("cpu"))
    bat = train.train_shard(x, y, parts, [0, 1], spec, train.TrainConfig(**{**cfg.__dict__, "strategy": "batched"}),
                            torch.device("cpu"))
    for a, b in zip(seq, bat):
        for name in a:  # BatchNorm running statistics included
            torch.testing.assert_close(a[name].float(), b[name].float(), rtol=1e-3, atol=1e-4)


def test_same_seed_same_weights_and_seed_per_partition():
    x, y = _data()
    parts = partition.partition_dataset(x, y, 2)
    cpu = torch.device("cpu")
    a = train.train_shard(x, y, parts, [0, 1], SPEC, _cfg(), cpu)
    b = train.train_shard(x, y, parts, [0, 1], SPEC, _cfg(), cpu)
    alone = train.train_shard(x, y, parts, [1], SPEC, _cfg(), cpu)
    for name in a[0]:
        assert torch.equal(a[0][name], b[0][name])
        assert torch.equal(a[1][name], alone[0][name])  # model 1 does not depend on its shard mates


def test_learning_rate_schedule_is_multistep():
    cfg = train.TrainConfig(lr=0.1, milestones=(2, 4), gamma=0.5)
    assert [cfg.lr_at(e) for e in range(6)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown training strategy"):
        train.resolve_strategy("fast", torch.device("cpu"))


def test_auto_strategy_is_sequential_on_cpu():
    assert train.resolve_strategy("auto", torch.device("cpu")) == "sequential"


def test_augment_crops_within_padding_and_is_seeded():
    x = torch.rand(5, 1, 8, 8)
    a = train.augment(x, 2, True, torch.Generator().manual_seed(0))
    b = train.augment(x, 2, True, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape


def _shard(tmp_path, x, y, parts):
    states = train.train_shard(x, y, parts, [0, 1], SPEC, _cfg(epochs=1), torch.device("cpu"))
    path = tmp_path / "shard_0.pt"
    train.save_shard(str(path), SPEC, [0, 1], states, trained_for={"method": "dpa"})
    return path, states


def test_checkpoint_loads_weights_only_and_scores_in_subset_order(tmp_path):
    x, y = _data()
    parts = partition.partition_dataset(x, y, 2)
    path, states = _shard(tmp_path, x, y, parts)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == train.CHECKPOINT_FORMAT and raw["subsets"] == [0, 1]
    models = score.load_ensemble([path], 2)
    none = poison.generate_poison({"type": "none"}, x, y, 0)
    scores = score.score_ensemble(models, x[:10], y[:10], none, torch.device("cpu"))
    assert scores["logits"].shape == (10, 2, 10) and scores["triggered_logits"].shape == (0, 2, 10)
    with torch.inference_mode():
        expected = models[0](torch.from_numpy(x[:10]).float() / 255).numpy()
    np.testing.assert_allclose(scores["logits"][:, 0], expected, rtol=1e-5, atol=1e-5)


def test_truncated_or_foreign_checkpoints_are_clear_errors(tmp_path):
    x, y = _data()
    parts = partition.partition_dataset(x, y, 2)
    path, _ = _shard(tmp_path, x, y, parts)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ArtifactError, match="truncated.pt: not a readable checkpoint"):
        train.load_shard(str(truncated))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(ArtifactError, match="expected a 'robustcert.shard/1' checkpoint"):
        train.load_shard(str(foreign))
    with pytest.raises(ArtifactError, match="lack the models of subsets \\[2\\]"):
        score.load_ensemble([path], 3)


def test_truncated_or_incomplete_score_files_are_clear_errors(tmp_path):
    from robustcert.evaluate import load_scores, save_scores

    scores = {"logits": np.zeros((4, 3, 10)), "labels": np.zeros(4, np.int64), "base_accuracy": np.zeros(3),
              "triggered_logits": np.zeros((0, 3, 10)), "triggered_index": np.zeros(0, np.int64),
              "target": np.int64(-1)}
    path = tmp_path / "scores.npz"
    save_scores(path, scores)
    assert load_scores(path)["logits"].shape == (4, 3, 10)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ArtifactError, match="scores.npz: not a readable .npz file"):
        load_scores(path)
    save_scores(path, {**scores, "labels": np.zeros(5, np.int64)})
    with pytest.raises(ArtifactError, match="do not match"):
        load_scores(path)
    save_npz(path, **{k: v for k, v in scores.items() if k != "logits"})  # a foreign writer's file
    with pytest.raises(ArtifactError, match=r"missing arrays \['logits'\]"):
        load_scores(path)
