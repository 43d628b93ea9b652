"""Tiny datasets written in the real on-disk formats (torchvision's MNIST idx files, CIFAR-10 pickles)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def class_images(labels: np.ndarray, height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """uint8 [n, C, H, W] images a small model can learn: a bright bar whose row is the label, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), channels, height, width)).astype(np.uint8)
    rows = (labels * (height - 2)) // 10 + 1
    for i, row in enumerate(rows):
        images[i, :, row - 1:row + 1, 2:width - 2] = 230
    return images


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """The MNIST idx3 format: magic 2051, n, rows, cols (big-endian), then uint8 pixels."""
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """The MNIST idx1 format: magic 2049, n (big-endian), then uint8 labels."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 400, n_test: int = 100, seed: int = 0) -> None:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with learnable 28×28 images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = np.arange(n) % 10
        images = class_images(labels, 28, 28, 1, seed + offset)[:, 0]
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> None:
    """``root/cifar-10-batches-py`` with five data batches, a test batch and batches.meta (pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(batches):
        n = n_test if name == "test_batch" else per_batch
        labels = np.arange(n) % 10
        data = class_images(labels, 32, 32, 3, seed + i).reshape(n, -1)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels.tolist(), "batch_label": name}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch}, handle)


def write_image_folder(root: Path, classes: tuple[str, ...] = ("n02", "n01", "n03"), train_per_class: int = 6,
                       val_per_class: int = 2, size: tuple[int, int] = (20, 16), seed: int = 0) -> Path:
    """``root/imagenet/{train,val}/<class>/<image>`` (ImageNet's ImageFolder layout): small RGB images,
    JPEG and PNG alternately, whose colour is their class (a tiny model learns them under noise and
    random crops); the classes are given out of order, so sorting them is the loader's job."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, count in (("train", train_per_class), ("val", val_per_class)):
        for name in classes:
            label = sorted(classes).index(name)
            folder = root / "imagenet" / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 50, size=(size[1], size[0], 3))
                pixels[..., label % 3] += 200
                suffix = "JPEG" if i % 2 == 0 else "png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}_{i}.{suffix}")
    return root / "imagenet"
