"""The DPA hash, content ordering, Finite Aggregation subsets and per-partition statistics."""

from __future__ import annotations

import numpy as np
import pytest

from robustcert import partition


def _images(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 4, 4)).astype(np.uint8), rng.integers(0, 10, n)


def test_dpa_hash_is_pixel_sum_mod_k():
    x, _ = _images()
    expected = np.array([int(img.astype(np.int64).sum()) % 7 for img in x])
    assert np.array_equal(partition.dpa_hash(x, 7), expected)


def test_dpa_hash_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        partition.dpa_hash(np.zeros((2, 1, 2, 2), np.float32), 3)


def test_dpa_partition_is_disjoint_and_content_ordered():
    x, y = _images()
    parts = partition.partition_dataset(x, y, 5)
    assert parts.num_subsets == 5 and sorted(parts.members.tolist()) == list(range(len(y)))
    for j in range(5):
        members = parts.subset(j)
        assert np.all(partition.dpa_hash(x[members], 5) == j)
        keys = [(y[i], x[i].tobytes()) for i in members]
        assert keys == sorted(keys)


def test_partition_does_not_depend_on_dataset_order():
    x, y = _images()
    order = np.random.default_rng(1).permutation(len(y))
    a = partition.partition_dataset(x, y, 4)
    b = partition.partition_dataset(x[order], y[order], 4)
    for j in range(4):
        assert np.array_equal(x[a.subset(j)], x[order][b.subset(j)])


def test_a_changed_sample_moves_into_exactly_one_partition():
    x, y = _images()
    before = partition.partition_dataset(x, y, 6)
    x2 = x.copy()
    x2[0, 0, 0, 0] ^= 0xFF
    after = partition.partition_dataset(x2, y, 6)
    changed = [j for j in range(6) if not np.array_equal(before.subset(j), after.subset(j))
               or not np.array_equal(x[before.subset(j)], x2[after.subset(j)])]
    assert 1 <= len(changed) <= 2  # left one partition, entered at most one other


def test_finite_aggregation_puts_every_sample_in_d_subsets():
    x, y = _images()
    k, d = 4, 3
    parts = partition.partition_dataset(x, y, k, d)
    shifts = partition.fa_shifts(k, d)
    assert np.array_equal(parts.shifts, shifts) and parts.num_subsets == k * d
    buckets = partition.dpa_hash(x, k * d)
    for i in range(0, len(y), 37):
        holders = [j for j in range(k * d) if i in parts.subset(j)]
        assert sorted(holders) == sorted(((buckets[i] + shifts) % (k * d)).tolist())


def test_fa_shifts_match_the_reference_draw():
    import random

    random.seed(999999999 + 208)
    assert partition.fa_shifts(50, 16).tolist() == random.sample(range(800), 16)


def test_channel_stats_per_partition():
    x, y = _images()
    parts = partition.partition_dataset(x, y, 3)
    members = parts.subset(1)
    expected = x[members].transpose(1, 0, 2, 3).reshape(3, -1).mean(axis=1) / 255
    assert np.allclose(parts.mean[1], expected, atol=1e-6) and parts.std.shape == (3, 3)


def test_partition_file_round_trip(tmp_path):
    x, y = _images()
    parts = partition.partition_dataset(x, y, 3, 2)
    partition.save_partition(tmp_path / "p.npz", parts)
    loaded = partition.load_partition(tmp_path / "p.npz", len(y))
    assert np.array_equal(loaded.members, parts.members) and loaded.k == 3
    from robustcert.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="outside the training set"):
        partition.load_partition(tmp_path / "p.npz", 10)
