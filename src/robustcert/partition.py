"""Partitioning a training set into the subsets that the base models are trained on.

DPA (Levine & Feizi 2021): partition = hash(x) mod k with hash(x) = the sum of the uint8 pixel
values; a poisoned sample moves into exactly one partition, whatever its content.
Finite Aggregation (Wang, Levine, Feizi 2022): bucket h = hash mod k·d, and a sample of bucket h
goes to the d subsets (h + s) mod k·d, one per shift s. d = 1 with shift 0 is DPA.

A :class:`Partition` lists each subset's sample indices, in content order (label, then pixel
bytes) so that training does not depend on dataset order, and its per-channel mean/std.

Which samples each model trains on is an assignment (:data:`ASSIGNMENTS`, by name): ``hash`` (DPA,
and FA for d > 1) or ``whole`` (every model on the whole training set).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustcert.artifacts import Array, ArtifactError, NpzFormat

FA_SHIFT_SEED = 999999999 + 208  # the Finite Aggregation reference's seed for its shifts
MIN_STD = 1.0 / 255.0


@dataclass(frozen=True)
class Partition:
    """Subset j holds the training samples ``members[offsets[j]:offsets[j + 1]]``."""

    members: np.ndarray
    offsets: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    k: int
    shifts: np.ndarray

    @property
    def num_subsets(self) -> int:
        """k·d."""
        return len(self.offsets) - 1

    def subset(self, j: int) -> np.ndarray:
        """Indices of the training samples of subset j, in content order."""
        return self.members[self.offsets[j]:self.offsets[j + 1]]

    def sizes(self) -> np.ndarray:
        """Number of samples of every subset."""
        return np.diff(self.offsets)


def dpa_hash(images: np.ndarray, k: int) -> np.ndarray:
    """Partition id of each image: the sum of its uint8 pixel values (all channels) mod ``k``."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"dpa_hash needs uint8 images, got {images.dtype}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return images.reshape(len(images), -1).sum(axis=1, dtype=np.int64) % k


def fa_shifts(k: int, d: int, seed: int = FA_SHIFT_SEED) -> np.ndarray:
    """The d distinct shifts of Finite Aggregation, drawn as the reference draws them."""
    if d < 1 or d > k * d:
        raise ValueError(f"d must be in [1, k·d], got d={d}, k={k}")
    rng = random.Random(seed)
    return np.array(rng.sample(range(k * d), d), dtype=np.int64)


def content_order(images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``index`` sorted by label, then by pixel bytes (ties: by index)."""
    keys = [(int(labels[i]), images[i].tobytes(), int(i)) for i in index]
    return np.array([key[2] for key in sorted(keys)], dtype=np.int64)


def partition_dataset(images: np.ndarray, labels: np.ndarray, k: int, d: int = 1,
                      shifts: np.ndarray | None = None, seed: int = 0) -> Partition:
    """Split a training set into k·d content-ordered subsets (DPA when d = 1).

    FA's shifts, when not given, are drawn with the reference's seed plus ``seed``.
    """
    if shifts is None:
        shifts = np.zeros(1, np.int64) if d == 1 else fa_shifts(k, d, FA_SHIFT_SEED + seed)
    shifts = np.asarray(shifts, dtype=np.int64)
    if len(shifts) != d or len(np.unique(shifts)) != d:
        raise ValueError(f"need {d} distinct shifts, got {shifts.tolist()}")
    num_subsets = k * d
    buckets = dpa_hash(images, num_subsets)
    subsets = [content_order(images, labels, np.flatnonzero(np.isin(buckets, (j - shifts) % num_subsets)))
               for j in range(num_subsets)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in subsets])]).astype(np.int64)
    members = np.concatenate(subsets).astype(np.int64) if subsets else np.zeros(0, np.int64)
    mean, std = zip(*(channel_stats(images[s]) for s in subsets))
    return Partition(members, offsets, np.stack(mean), np.stack(std), k, shifts)


def whole_dataset(images: np.ndarray, labels: np.ndarray, k: int = 1, d: int = 1, seed: int = 0) -> Partition:
    """k subsets that each hold the whole training set (content-ordered): k models on the same data."""
    if k < 1 or d != 1:
        raise ValueError(f"the whole-set assignment takes k ≥ 1 models and d = 1, got k={k}, d={d}")
    members = content_order(images, labels, np.arange(len(labels)))
    mean, std = channel_stats(images[members])
    return Partition(np.tile(members, k), np.arange(k + 1, dtype=np.int64) * len(members),
                     np.tile(mean, (k, 1)), np.tile(std, (k, 1)), k, np.zeros(1, np.int64))


Assignment = Callable[..., Partition]
ASSIGNMENTS: dict[str, Assignment] = {"hash": partition_dataset, "whole": whole_dataset}


def assign(name: str, images: np.ndarray, labels: np.ndarray, k: int, d: int = 1, seed: int = 0) -> Partition:
    """The partition of the named assignment (``hash`` or ``whole``) with k (·d) subsets."""
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown partition assignment {name!r}; known: {sorted(ASSIGNMENTS)}")
    return ASSIGNMENTS[name](images, labels, k, d, seed=seed)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images in [0, 1] units (0.5/0.25 for no images)."""
    channels = images.shape[1]
    if len(images) == 0:
        return np.full(channels, 0.5, np.float32), np.full(channels, 0.25, np.float32)
    pixels = images.transpose(1, 0, 2, 3).reshape(channels, -1).astype(np.float64) / 255.0
    return pixels.mean(axis=1).astype(np.float32), np.maximum(pixels.std(axis=1), MIN_STD).astype(np.float32)


PARTITION = NpzFormat("partition", {"members": Array("iu", 1), "offsets": Array("iu", 1), "mean": Array("f", 2),
                                    "std": Array("f", 2), "k": Array("iu", 0), "shifts": Array("iu", 1)})


def save_partition(path: str | Path, partition: Partition) -> None:
    """Write a partition as an npz."""
    PARTITION.write(path, members=partition.members, offsets=partition.offsets, mean=partition.mean,
             std=partition.std, k=partition.k, shifts=partition.shifts)


def load_partition(path: str | Path, n_train: int | None = None) -> Partition:
    """Read a partition; check it against a training set of ``n_train`` samples when given."""
    a = PARTITION.read(path)
    partition = Partition(a["members"], a["offsets"], a["mean"], a["std"], int(a["k"]), a["shifts"])
    offsets = partition.offsets
    if (offsets[0] != 0 or offsets[-1] != len(partition.members) or np.any(np.diff(offsets) < 0)
            or partition.num_subsets != partition.k * len(partition.shifts)):
        raise ArtifactError(f"{path}: inconsistent offsets for k={partition.k}, d={len(partition.shifts)}")
    limit = n_train if n_train is not None else np.iinfo(np.int64).max
    if len(partition.members) and (partition.members.min() < 0 or partition.members.max() >= limit):
        raise ArtifactError(f"{path}: sample indices outside the training set of {n_train} images")
    return partition
