"""Loaders on tiny files in the real formats, the split, and the checks on load."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

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
def test_mnist_formats_load(tmp_path, name, folder):
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
    with pytest.raises(ArtifactError, match="data_batch_1: MD5 sum .* verify_checksums: false"):
        data.load_source("cifar10", tmp_path, verify_checksums=True)  # MD5 sums of the real files


class _Payload:
    """What a tampered pickle holds: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("verify_checksums", [False, True])
def test_a_cifar_batch_with_a_code_payload_does_not_run(tmp_path, verify_checksums):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    marker, batch = tmp_path / "payload-ran", tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 4,
                                    "batch_label": _Payload(marker)}))
    with pytest.raises(ArtifactError) as err:
        data.load_source("cifar10", tmp_path, verify_checksums=verify_checksums)
    assert not marker.exists()
    assert str(batch) in str(err.value) and f"data_root {tmp_path}" in str(err.value)
    if not verify_checksums:
        assert "refused global" in str(err.value)


@pytest.mark.parametrize("protocol,numpy_module,labels", [(2, "numpy.core.multiarray", [3] * 6),
                                                          (5, None, np.full(6, 3, np.uint8))])
def test_cifar_batches_of_other_pickle_protocols_load(tmp_path, protocol, numpy_module, labels):
    """Protocol 2 naming numpy 1.x's module, as the published batches do, and protocol 5 (out-of-band
    buffers) with labels as an array, as a subset written with numpy may hold them."""
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    entry = {"data": np.full((6, 3072), 7, np.uint8), "labels": labels, "batch_label": b"testing batch 1 of 1"}
    raw = pickle.dumps(entry, protocol=protocol)
    batch.write_bytes(raw.replace(b"numpy._core.multiarray", numpy_module.encode()) if numpy_module else raw)
    source = data.load_source("cifar10", tmp_path, verify_checksums=False)
    assert np.all(source.x_test == 7) and source.x_test.shape == (6, 3, 32, 32) and np.all(source.y_test == 3)


def _cifar_entry(n: int = 4, **changes):
    return pickle.dumps({"data": np.zeros((n, 3072), np.uint8), "labels": [0] * n, **changes})


@pytest.mark.parametrize("name,content,message", [
    ("data_batch_2", b"hello, not a pickle", "not a readable CIFAR-10 pickle"),
    ("data_batch_2", _cifar_entry()[:200], "not a readable CIFAR-10 pickle"),
    ("data_batch_3", pickle.dumps({"labels": [0] * 4}), "expected a dict with 'data' and 'labels', found"),
    ("data_batch_3", pickle.dumps([1, 2, 3]), "expected a dict with 'data' and 'labels', found list"),
    ("data_batch_4", pickle.dumps({"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4}), r"shape \[n, 3072\]"),
    ("data_batch_4", pickle.dumps({"data": np.zeros((4, 3072)), "labels": [0] * 4}), "found float64"),
    ("test_batch", _cifar_entry(labels=[0] * 3), "'labels' must be a list of 4 integers"),
    ("test_batch", _cifar_entry(labels=[10] * 4), r"integers in \[0, 10\)"),
    ("test_batch", _cifar_entry(labels=[0.5] * 4), "'labels' must be a list of 4 integers"),
    ("test_batch", _cifar_entry(labels=np.full(4, -1)), r"integers in \[0, 10\)"),
    ("batches.meta", pickle.dumps({"label_names": ["a", "b"]}), "'label_names' lists 10 names"),
])
def test_bad_cifar_files_name_the_file_and_data_root(tmp_path, name, content, message):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    path = tmp_path / "cifar-10-batches-py" / name
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as err:
        data.load_source("cifar10", tmp_path, verify_checksums=False)
    assert str(err.value).startswith(f"{path}: ") and f"data_root {tmp_path}" in str(err.value)


def _idx(magic: int, *dims: int, payload: int | None = None) -> bytes:
    size = int(np.prod(dims)) if payload is None else payload
    return struct.pack(f">{len(dims) + 1}I", magic, *dims) + bytes(size)


@pytest.mark.parametrize("name,content,message", [
    ("train-images-idx3-ubyte", b"", "0 bytes, shorter than the 16-byte header"),
    ("train-images-idx3-ubyte", _idx(2051, 60, 28, 28, payload=1000), "declares 47040 bytes .* but 1000 follow"),
    ("train-images-idx3-ubyte", _idx(2051, 60, 28, 28, payload=47042), "but 47042 follow"),
    ("train-images-idx3-ubyte", _idx(2049, 60), "magic number 2049, expected 2051"),
    ("t10k-labels-idx1-ubyte", b"hello world, these are labels", "not an idx file"),
    ("train-labels-idx1-ubyte", _idx(2049, 50), "50 labels up to 0; train-images-idx3-ubyte holds 60 images"),
    ("train-labels-idx1-ubyte", struct.pack(">II", 2049, 60) + bytes([11] * 60), "60 labels up to 11"),
])
def test_bad_mnist_files_name_the_file_and_data_root(tmp_path, name, content, message):
    write_mnist(tmp_path, n_train=60, n_test=30)
    path = tmp_path / "MNIST" / "raw" / name
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as err:
        data.load_source("mnist", tmp_path)
    assert str(err.value).startswith(f"{path}: ") and f"data_root {tmp_path}" in str(err.value)


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
