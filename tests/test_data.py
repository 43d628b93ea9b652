"""Loaders on tiny files in the real formats, the split, and the checks on load."""

from __future__ import annotations

import numpy as np
import pytest
from formats import write_cifar10, write_mnist

from robustcert import data
from robustcert.artifacts import ArtifactError


def test_digits_split_sizes_and_scaling():
    split = data.split_source(data.load_source("digits", "unused"), n_val=180, n_test=360, seed=0)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (1797 - 540, 180, 360)
    assert split.image_shape == (1, 8, 8) and split.x_train.dtype == np.uint8
    assert split.x_train.max() == 255
    pool = np.concatenate([split.train_index, split.val_index])
    assert len(np.unique(pool)) == len(pool)


def test_split_is_a_seeded_permutation():
    source = data.load_source("digits", "unused")
    a, b = (data.split_source(source, 100, 200, seed=1) for _ in range(2))
    c = data.split_source(source, 100, 200, seed=2)
    assert np.array_equal(a.val_index, b.val_index) and not np.array_equal(a.val_index, c.val_index)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_load_through_torchvision(tmp_path, name, folder):
    write_mnist(tmp_path, folder, n_train=60, n_test=30)
    source = data.load_source(name, tmp_path)
    assert source.x_pool.shape == (60, 1, 28, 28) and source.x_test.shape == (30, 1, 28, 28)
    assert np.array_equal(source.y_pool, np.arange(60) % 10)
    split = data.split_source(source, n_val=10, n_test=None, seed=0)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (50, 10, 30)


def test_cifar10_format_loads_channels_first(tmp_path):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    source = data.load_source("cifar10", tmp_path, verify_checksums=False)
    assert source.x_pool.shape == (20, 3, 32, 32) and source.x_test.shape == (6, 3, 32, 32)
    with pytest.raises(RuntimeError, match="corrupted"):
        data.load_source("cifar10", tmp_path, verify_checksums=True)  # MD5 sums of the real files


def test_missing_dataset_names_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.load_source("mnist", tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value) and "download: true" in str(err.value)


def test_labels_out_of_range_are_refused(tmp_path):
    split = data.split_source(data.load_source("digits", "unused"), 100, 200, 0)
    bad = data.Split(**{**split.__dict__, "y_train": split.y_train + 5})
    data.save_split(tmp_path / "split.npz", bad)
    with pytest.raises(ArtifactError, match=r"labels must lie in \[0, 10\)"):
        data.load_split(tmp_path / "split.npz")


def test_truncated_split_is_a_clear_error(tmp_path):
    split = data.split_source(data.load_source("digits", "unused"), 100, 200, 0)
    path = tmp_path / "split.npz"
    data.save_split(path, split)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match="not a readable .npz"):
        data.load_split(path)
