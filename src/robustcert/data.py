"""Datasets and the fixed train/validation/test split that every experiment shares.

Images travel between rules as ``uint8`` arrays of shape [n, C, H, W] (pixel values 0–255;
models see them divided by 255) and labels as ``int64`` arrays of shape [n].

Sources:
- ``digits``: scikit-learn's 1 797 8×8 digits (values 0–16, scaled to 0–255), shipped inside
  scikit-learn; it has no standard test set, so ``n_test`` images are drawn by the split.
- ``mnist``, ``fashion_mnist``: torchvision's ``MNIST``/``FashionMNIST`` folders under the data
  root (``<root>/MNIST/raw/train-images-idx3-ubyte`` …), 60 000 training and 10 000 test images.
- ``cifar10``: torchvision's ``<root>/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustcert.artifacts import Array, ArtifactError, NpzFormat

SOURCES = ("digits", "mnist", "fashion_mnist", "cifar10")
_TORCHVISION_FOLDERS = {
    "mnist": ("MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion_mnist": ("FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)),
                                        "test_batch", "batches.meta"]),
}
NUM_CLASSES = 10


@dataclass(frozen=True)
class SourceFacts:
    """What is known of a published dataset without reading it: its image shape [C, H, W], the
    images per class of its training pool, and the size of its test set (``None``: it has none)."""

    image_shape: tuple[int, int, int]
    class_counts: tuple[int, ...]
    test_size: int | None

    @property
    def pool_size(self) -> int:
        """Images of the training pool."""
        return sum(self.class_counts)


FACTS = {
    "digits": SourceFacts((1, 8, 8), (178, 182, 177, 183, 181, 182, 181, 179, 174, 180), None),
    "mnist": SourceFacts((1, 28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949), 10_000),
    "fashion_mnist": SourceFacts((1, 28, 28), (6000,) * 10, 10_000),
    "cifar10": SourceFacts((3, 32, 32), (5000,) * 10, 10_000),
}
_SHAPES = {name: facts.image_shape for name, facts in FACTS.items()}


def held_out(spec: Mapping[str, Any]) -> int:
    """Images of the training pool that a dataset config holds out (validation, and test for digits)."""
    return int(spec.get("n_val", 0)) + (int(spec.get("n_test") or 0) if FACTS[spec["source"]].test_size is None else 0)


def planned_train_size(spec: Mapping[str, Any]) -> int:
    """The training-set size a dataset config leads to on the published dataset (a subset has fewer)."""
    return FACTS[spec["source"]].pool_size - held_out(spec)


@dataclass(frozen=True)
class Source:
    """A dataset as published: its training pool and its test set (``None`` for digits)."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None


@dataclass(frozen=True)
class Split:
    """The fixed split; ``train_index``/``val_index`` point into the source's training pool."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    num_classes: int = NUM_CLASSES

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load_source(name: str, root: str | Path, download: bool = False,
                verify_checksums: bool = True) -> Source:
    """Read the named dataset from its standard on-disk format (or from scikit-learn)."""
    if name == "digits":
        return _load_digits()
    if name not in _TORCHVISION_FOLDERS:
        raise ValueError(f"unknown dataset source {name!r}; known: {list(SOURCES)}")
    if not download:
        _require_files(name, Path(root))
    train = _torchvision_dataset(name, root, True, download, verify_checksums)
    test = _torchvision_dataset(name, root, False, download, verify_checksums)
    source = Source(*_as_arrays(train), *_as_arrays(test))
    for part, x, y in (("training", source.x_pool, source.y_pool), ("test", source.x_test, source.y_test)):
        check_images(x, y, _SHAPES[name], f"{name} {part} set under {root}")
    return source


def split_source(source: Source, n_val: int, n_test: int | None, seed: int) -> Split:
    """Draw validation (and, where the source has none, test) images by a seeded permutation.

    MNIST: 55 000 / 5 000 of the 60 000 training images and the standard 10 000 test images.
    """
    n_pool = len(source.y_pool)
    n_held = n_val + (n_test if source.x_test is None else 0)
    if source.x_test is None and not n_test:
        raise ValueError("this dataset has no standard test set: set n_test > 0")
    if n_held >= n_pool:
        raise ValueError(f"n_val + n_test = {n_held} leaves no training images out of {n_pool}")
    order = np.random.default_rng(seed).permutation(n_pool)
    if source.x_test is None:
        test_index, order = order[:n_test], order[n_test:]
        x_test, y_test = source.x_pool[test_index], source.y_pool[test_index]
    else:
        x_test, y_test = source.x_test, source.y_test
    val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Split(
        x_train=source.x_pool[train_index], y_train=source.y_pool[train_index],
        x_val=source.x_pool[val_index], y_val=source.y_pool[val_index],
        x_test=x_test, y_test=y_test, train_index=train_index, val_index=val_index,
    )


def save_split(path: str | Path, split: Split) -> None:
    """Write the split as an npz with one array per field."""
    SPLIT.write(path, **{name: getattr(split, name) for name in _SPLIT_ARRAYS}, num_classes=split.num_classes)


def load_split(path: str | Path) -> Split:
    """Read and check a split written by :func:`save_split`."""
    arrays = SPLIT.read(path)
    split = Split(**{name: arrays[name] for name in _SPLIT_ARRAYS}, num_classes=int(arrays["num_classes"]))
    shape = split.image_shape
    for part in ("train", "val", "test"):
        try:
            check_images(getattr(split, f"x_{part}"), getattr(split, f"y_{part}"), shape,
                         f"{part} set", split.num_classes)
        except ValueError as err:
            raise ArtifactError(f"{path}: {err}") from None
    return split


def check_images(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], what: str,
                 num_classes: int = NUM_CLASSES) -> None:
    """Refuse images that are not uint8 [n, *shape] or labels outside [0, num_classes)."""
    if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{what}: expected uint8 images of shape [n, {', '.join(map(str, shape))}], "
                         f"got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{what}: {len(x)} images but labels of shape {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what}: labels must lie in [0, {num_classes}), found {y.min()}..{y.max()}")


_SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "train_index", "val_index")
SPLIT = NpzFormat("split", {**{f"x_{part}": Array("u", 4) for part in ("train", "val", "test")},
                            **{f"y_{part}": Array("iu", 1) for part in ("train", "val", "test")},
                            "train_index": Array("iu", 1), "val_index": Array("iu", 1), "num_classes": Array("iu", 0)})


def _load_digits() -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return Source(x, digits.target.astype(np.int64), None, None)


def _require_files(name: str, root: Path) -> None:
    folder, files = _TORCHVISION_FOLDERS[name]
    missing = [f for f in files if not (root / folder / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r} not found: expected {', '.join(files)} in {root / folder} "
            f"(missing: {', '.join(missing)}). Copy the torchvision-format files there, "
            f"or set download: true for this dataset on a machine with internet access."
        )


def _torchvision_dataset(name: str, root: str | Path, train: bool, download: bool, verify_checksums: bool):
    from robustcert.tv import torchvision

    datasets = torchvision.datasets
    if name == "cifar10":
        cls = datasets.CIFAR10 if verify_checksums else _UncheckedCIFAR10()
        return cls(str(root), train=train, download=download)
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    return cls(str(root), train=train, download=download)


def _UncheckedCIFAR10():  # noqa: N802 - a class factory, imported lazily with torchvision
    from robustcert.tv import torchvision

    base = torchvision.datasets.CIFAR10

    class UncheckedCIFAR10(base):
        """CIFAR10 that checks the files exist instead of their MD5 sums (for subsets, test files)."""

        train_list = [(name, None) for name, _ in base.train_list]
        test_list = [(name, None) for name, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    return UncheckedCIFAR10


def _as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(dataset.data)
    if data.ndim == 3:  # MNIST-like: [n, H, W]
        x = data[:, None, :, :]
    else:  # CIFAR: [n, H, W, C]
        x = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64)


STANDARD_TEST_SIZE = {name: facts.test_size for name, facts in FACTS.items() if facts.test_size}


def source_shape(source: str) -> tuple[int, int, int]:
    """The (C, H, W) of a source's images, known before any data is read (for checking a config)."""
    return _SHAPES[source]


def expected_test_size(spec: Mapping[str, Any]) -> int:
    """The test-set size a dataset config leads to, known before any data is read (for planning jobs);
    refused for a subset of classes, whose size only the data knows."""
    if spec.get("classes") is not None:
        raise ValueError(f"the test set of a class subset {spec['classes']} has no size known before the split: "
                         "a step that plans its jobs by the test size cannot run on it")
    return int(spec["n_test"]) if spec["source"] == "digits" else STANDARD_TEST_SIZE[spec["source"]]


def restrict_classes(split: Split, classes: list[int]) -> Split:
    """The split restricted to images of ``classes``, relabelled 0..len(classes)−1 in that order (binary tasks)."""
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and not empty, got {classes}")
    outside = [c for c in classes if not 0 <= c < split.num_classes]
    if outside:
        raise ValueError(f"classes {outside} are not labels of this split (0..{split.num_classes - 1})")
    relabel = np.full(split.num_classes, -1, np.int64)
    relabel[classes] = np.arange(len(classes))
    parts = {}
    for part in ("train", "val", "test"):
        keep = np.isin(getattr(split, f"y_{part}"), classes)
        parts[f"x_{part}"] = getattr(split, f"x_{part}")[keep]
        parts[f"y_{part}"] = relabel[getattr(split, f"y_{part}")[keep]]
        if part != "test":
            parts[f"{part}_index"] = getattr(split, f"{part}_index")[keep]
    return Split(**parts, num_classes=len(classes))
