"""Poison generation: named attacks that change training samples, and the triggers they leave.

A poison is a :class:`Poison`: the indices of the training samples it changed with their new
images and labels (a changed sample is one deletion plus one insertion, so the symmetric
difference between clean and poisoned training sets is ``2 · len(index)``), and, for backdoors,
the trigger that turns a test image into an attack: pixels under ``trigger_mask`` are set to
``trigger_value`` (mode ``set``) or raised by it (mode ``add``, clipped at 255), in uint8 units.

Attack types (config ``attacks.<name>.type``):
- ``none``: nothing changes.
- ``backdoor``: a ``fraction`` of the training set (drawn from images whose label is not
  ``target``) gets the trigger and, with ``dirty_label``, the label ``target``; with clean labels
  the trigger goes on images of the target class instead. Pattern: a ``preset`` (docs/methods.md §3, §6)
  or ``position``/``size``/``value`` of a filled rectangle.
- ``label_flip``: a ``fraction`` of the images of class ``source`` (of every class but ``target``
  when ``source`` is null) get the label ``target``.
- ``l2_backdoor``: RAB's backdoors (docs/methods.md §3), planted as ``backdoor`` plants its trigger, with
  a trigger of L2 norm ``delta`` (in [0, 1] pixel units, before rounding to uint8 levels and
  clipping): ``one_pixel``, ``four_pixel`` (:data:`RAB_FOUR_PIXELS`), each pixel on every channel
  raised by δ/√(pixels · channels), or ``blending``, a fixed Gaussian pattern over the whole image
  scaled to norm δ and added (drawn by the attack's generator before the poisoned samples).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustcert import metrics
from robustcert.artifacts import Array, ArtifactError, NpzFormat
from robustcert.data import Split, load_split

NO_TARGET = -1
POISON = NpzFormat("poison", {"index": Array("iu", 1), "x": Array("u", 4), "y": Array("iu", 1), "target": Array("i", 0),
                              "trigger_mask": Array("b", 3), "trigger_value": Array("iu", 3), "trigger_mode": Array("U", 0)})
Pixel = tuple[int, int]


@dataclass(frozen=True)
class Trigger:
    """Where and how a trigger changes an image ([C, H, W] mask and uint8 values)."""

    mask: np.ndarray
    value: np.ndarray
    mode: str = "set"

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Triggered copies of uint8 images [n, C, H, W]."""
        if self.mode == "set":
            return np.where(self.mask, self.value, images).astype(np.uint8)
        raised = images.astype(np.int16) + np.where(self.mask, self.value, 0)
        return np.clip(raised, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Poison:
    """What an attack changed, and how it triggers test images (``target`` −1: no trigger)."""

    index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    trigger: Trigger | None = None
    target: int = NO_TARGET

    @property
    def symmetric_difference(self) -> int:
        """Insertions plus deletions that turn the clean training set into the poisoned one."""
        return 2 * len(self.index)

    def apply(self, x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The poisoned training set."""
        x, y = x_train.copy(), y_train.copy()
        x[self.index], y[self.index] = self.x, self.y
        return x, y


def trigger_pixels(preset: str, height: int, width: int) -> tuple[list[Pixel], str]:
    """The pixels and mode of a named trigger pattern for images of height × width.

    localised: filled 3×3 square one pixel from the bottom-right corner ((24..26, 24..26) on 28×28);
    distributed: 2×2 squares one pixel from the top-left and bottom-right corners;
    one_pixel: the pixel (H−2, W−2), added; four_pixel: (18,20), (19,19), (20,18), (20,20) on 28×28,
    counted from the bottom-right corner on other sizes, added (RAB, docs/methods.md §3).
    """
    patterns = {
        "localised": (_square(height - 4, width - 4, 3, 3), "set"),
        "distributed": (_square(1, 1, 2, 2) + _square(height - 3, width - 3, 2, 2), "set"),
        "one_pixel": ([(height - 2, width - 2)], "add"),
        "four_pixel": ([(height - 10, width - 8), (height - 9, width - 9),
                        (height - 8, width - 10), (height - 8, width - 8)], "add"),
    }
    if preset not in patterns:
        raise ValueError(f"unknown trigger preset {preset!r}; known: {sorted(patterns)}")
    pixels, mode = patterns[preset]
    off_image = [p for p in pixels if not (0 <= p[0] < height and 0 <= p[1] < width)]
    if off_image:
        raise ValueError(f"trigger preset {preset!r} does not fit {height}×{width} images (pixels {off_image})")
    return pixels, mode


# RAB's four-pixel triggers: MNIST's (28×28) and CIFAR-10's (32×32); other sizes take MNIST's, scaled
RAB_FOUR_PIXELS: dict[int, list[Pixel]] = {28: [(18, 20), (19, 19), (20, 18), (20, 20)],
                                           32: [(14, 16), (15, 15), (16, 14), (16, 16)]}


def rab_four_pixels(height: int, width: int) -> list[Pixel]:
    """RAB's four pixels for square images of this size (MNIST's scaled to other sizes)."""
    if height == width and height in RAB_FOUR_PIXELS:
        return RAB_FOUR_PIXELS[height]
    pixels = [(round(r * height / 28), round(c * width / 28)) for r, c in RAB_FOUR_PIXELS[28]]
    if len(set(pixels)) != len(pixels):
        raise ValueError(f"RAB's four pixels do not stay distinct on {height}×{width} images: give `pixels`")
    return pixels


def l2_trigger(spec: Mapping[str, Any], image_shape: tuple[int, int, int], rng: np.random.Generator) -> Trigger:
    """The additive trigger of L2 norm ``delta`` of an ``l2_backdoor`` attack (``pattern`` one_pixel,
    four_pixel or blending; ``pixels`` overrides the pattern's positions), rounded to uint8 levels."""
    delta = float(spec["delta"])
    channels, height, width = image_shape
    if spec["pattern"] == "blending":
        noise = rng.standard_normal(image_shape)
        mask, change = np.ones(image_shape, dtype=bool), delta * noise / np.linalg.norm(noise)
    else:
        pixels = spec.get("pixels") or (trigger_pixels("one_pixel", height, width)[0] if spec["pattern"] == "one_pixel"
                                        else rab_four_pixels(height, width))
        outside = [p for p in pixels if not (0 <= p[0] < height and 0 <= p[1] < width)]
        if outside:
            raise ValueError(f"trigger pixels {outside} lie outside {height}×{width} images")
        mask = np.zeros(image_shape, dtype=bool)
        for row, col in pixels:
            mask[:, row, col] = True
        change = np.where(mask, delta / np.sqrt(mask.sum()), 0.0)
    return Trigger(mask=mask, value=np.rint(change * 255).astype(np.int16), mode="add")


def make_trigger(spec: Mapping[str, Any], image_shape: tuple[int, int, int]) -> Trigger:
    """The trigger of a backdoor attack config (``preset``, or ``position``/``size``) and ``value``."""
    channels, height, width = image_shape
    if spec.get("preset"):
        pixels, mode = trigger_pixels(spec["preset"], height, width)
    else:
        (row, col), (rows, cols) = spec["position"], spec["size"]
        if row < 0 or col < 0 or row + rows > height or col + cols > width:
            raise ValueError(f"trigger at {spec['position']} of size {spec['size']} does not fit "
                             f"{height}×{width} images")
        pixels, mode = _square(row, col, rows, cols), "set"
    mask = np.zeros(image_shape, dtype=bool)
    for row, col in pixels:
        mask[:, row, col] = True
    value = np.where(mask, round(float(spec["value"]) * 255), 0).astype(np.uint8)
    return Trigger(mask=mask, value=value, mode=spec.get("mode") or mode)


def generate_poison(spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                    seed: int) -> Poison:
    """Apply the attack described by ``spec`` (an ``attacks.<name>`` config entry) with its generator."""
    kind = spec["type"]
    if kind not in GENERATORS:
        raise ValueError(f"unknown attack type {kind!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[kind](spec, x_train, y_train, np.random.default_rng(seed))


def triggered_test_set(poison: Poison, x_test: np.ndarray, y_test: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The triggered test set: the indices of all test images, of every class (the target's included, for
    ``asr_all``; the other metrics keep :func:`robustcert.metrics.non_target` ones), and their triggered
    copies. Empty without a trigger."""
    if poison.trigger is None:
        return np.zeros(0, np.int64), x_test[:0]
    index = np.arange(len(y_test), dtype=np.int64)
    return index, poison.trigger.apply(x_test)


def save_poison(path: str | Path, poison: Poison) -> None:
    """Write a poison as an npz (``index``, ``x``, ``y``, ``target``, ``trigger_*``)."""
    trigger = poison.trigger
    shape = poison.x.shape[1:]
    POISON.write(
        path, index=poison.index, x=poison.x, y=poison.y, target=poison.target,
        trigger_mask=trigger.mask if trigger else np.zeros(shape, bool),
        trigger_value=trigger.value if trigger else np.zeros(shape, np.uint8),
        trigger_mode=trigger.mode if trigger else "",
    )


def load_poison(path: str | Path, n_train: int | None = None,
                image_shape: tuple[int, ...] | None = None) -> Poison:
    """Read a poison; check it against the training set it changes when its size and shape are given."""
    a = POISON.read(path)
    index, x, y = a["index"], a["x"], a["y"]
    shape = tuple(image_shape) if image_shape is not None else tuple(a["trigger_mask"].shape)
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != shape or not len(index) == len(x) == len(y):
        raise ArtifactError(f"{path}: poison of {len(index)} indices, images {x.dtype} {x.shape}, "
                            f"{len(y)} labels does not fit images of shape {shape}")
    limit = n_train if n_train is not None else np.iinfo(np.int64).max
    if len(index) and (index.min() < 0 or index.max() >= limit or len(np.unique(index)) != len(index)):
        raise ArtifactError(f"{path}: poison indices must be distinct and lie in [0, {limit})")
    mode = str(a["trigger_mode"])
    trigger = Trigger(a["trigger_mask"], a["trigger_value"], mode) if mode else None
    return Poison(index.astype(np.int64), x, y.astype(np.int64), trigger, int(a["target"]))


def _square(row: int, col: int, rows: int, cols: int) -> list[Pixel]:
    return [(r, c) for r in range(row, row + rows) for c in range(col, col + cols)]


def _draw(rng: np.random.Generator, candidates: np.ndarray, count: int, what: str) -> np.ndarray:
    if count == 0:
        raise ValueError(f"{what}: the fraction selects no sample of the {len(candidates)} eligible")
    if count > len(candidates):
        raise ValueError(f"{what}: {count} samples asked for, only {len(candidates)} eligible")
    return np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.int64)


def _backdoor(spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
              rng: np.random.Generator) -> Poison:
    return _plant(make_trigger(spec, x_train.shape[1:]), spec, x_train, y_train, rng)


def _l2_backdoor(spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                 rng: np.random.Generator) -> Poison:
    return _plant(l2_trigger(spec, x_train.shape[1:], rng), spec, x_train, y_train, rng)


def _plant(trigger: Trigger, spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
           rng: np.random.Generator) -> Poison:
    """A ``fraction`` of the training set (non-target images; target images for clean labels) triggered
    and, with ``dirty_label``, relabelled to ``target``."""
    target = int(spec["target"])
    dirty = bool(spec.get("dirty_label", True))
    eligible = np.flatnonzero(y_train != target) if dirty else np.flatnonzero(y_train == target)
    count = int(round(float(spec["fraction"]) * len(y_train)))
    index = _draw(rng, eligible, count, "backdoor")
    labels = np.full(count, target, np.int64) if dirty else y_train[index]
    return Poison(index, trigger.apply(x_train[index]), labels, trigger, target)


def _label_flip(spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                rng: np.random.Generator) -> Poison:
    target, source = int(spec["target"]), spec.get("source")
    eligible = np.flatnonzero(y_train != target if source is None else y_train == int(source))
    count = int(round(float(spec["fraction"]) * len(eligible)))
    index = _draw(rng, eligible, count, "label_flip")
    return Poison(index, x_train[index], np.full(count, target, np.int64))


def _no_attack(spec: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
               rng: np.random.Generator) -> Poison:
    return Poison(np.zeros(0, np.int64), x_train[:0].copy(), y_train[:0].copy())


Generator = Callable[[Mapping[str, Any], np.ndarray, np.ndarray, np.random.Generator], Poison]
# the attack types that poison_training_set makes, by config `type`; attacks that need a model
# (bilevel_radius) have rules of their own
GENERATORS: dict[str, Generator] = {"none": _no_attack, "backdoor": _backdoor, "label_flip": _label_flip,
                                    "l2_backdoor": _l2_backdoor}


def load_poisoned_training_set(split_path: str | Path, poison_path: str | Path
                               ) -> tuple[Split, Poison, np.ndarray, np.ndarray]:
    """The split, its poison (checked against it), and the poisoned training images and labels."""
    split, attack = load_split_and_poison(split_path, poison_path)
    return (split, attack, *attack.apply(split.x_train, split.y_train))


def load_split_and_poison(split_path: str | Path, poison_path: str | Path) -> tuple[Split, Poison]:
    """The split and its poison, checked against it (the training set itself not made: it may be file-backed)."""
    split = load_split(split_path)
    return split, load_poison(poison_path, len(split.y_train), split.image_shape)


def budget(poison: Poison, split: Split, target: int | None) -> dict[str, float]:
    """The size of an attack in every unit the field reports (docs/metrics.md, attack budgets).

    Counts: samples changed, their share of the training set and of the ``target`` class's clean
    training samples (NaN without a target), the symmetric difference, labels changed. Norms, in
    [0, 1] pixel units: of the whole training-set change (L2 over every changed sample together, as
    RAB certifies; the largest L∞), and of the trigger (pixels it covers; the mean L2 and L∞ change
    of a triggered non-target test image; NaN without a trigger).
    """
    clean = split.x_train[poison.index].astype(np.float64) / 255
    change = (poison.x.astype(np.float64) / 255 - clean).reshape(len(poison.index), int(np.prod(split.image_shape)))
    target_count = int((split.y_train == target).sum()) if target is not None else 0
    numbers = {
        "poisoned": len(poison.index),
        "poison_fraction": len(poison.index) / len(split.y_train),
        "target_class_fraction": len(poison.index) / target_count if target_count else float("nan"),
        "symmetric_difference": poison.symmetric_difference,
        "labels_changed": int((poison.y != split.y_train[poison.index]).sum()),
        "poison_l2": float(np.sqrt((change ** 2).sum())),
        "poison_linf": float(np.abs(change).max()) if change.size else 0.0,
    }
    return numbers | _trigger_size(poison, split)


def _trigger_size(poison: Poison, split: Split) -> dict[str, float]:
    index, triggered = triggered_test_set(poison, split.x_test, split.y_test)
    keep = metrics.non_target(split.y_test[index], poison.target)
    index, triggered = index[keep], triggered[keep]
    if poison.trigger is None or not len(index):
        return {"trigger_area": float("nan"), "trigger_l2": float("nan"), "trigger_linf": float("nan")}
    change = (triggered.astype(np.float64) - split.x_test[index]).reshape(len(index), -1) / 255
    return {"trigger_area": int(poison.trigger.mask.any(axis=0).sum()),
            "trigger_l2": float(np.linalg.norm(change, axis=1).mean()),
            "trigger_linf": float(np.abs(change).max(axis=1).mean())}
