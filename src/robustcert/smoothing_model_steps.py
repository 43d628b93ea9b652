"""The steps of the randomized-smoothing rules that run models (``resources: gpu=1``): train f with
Gaussian augmentation, and CERTIFY and PREDICT one shard of the certified test points.

Certify TSVs have the reference's columns ``idx label predict radius correct time`` (radius at full
precision; ``time`` = seconds per point, the shard's time over its points, since a shard certifies
its points in one batched call). Predict TSVs: ``idx label predict correct time``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustcert import data, partition, train
from robustcert.device import select_device
from robustcert.model_steps import model_spec
from robustcert.smoothing import Smooth, resolve_batch_size
from robustcert.smoothing_steps import point_shards
from robustcert.steps import load_training_set, log, write_tsv


def train_smoothed(split_path: str, poison_path: str, output: str, defense: Mapping[str, Any], sigma: float,
                   device: str, threads: int) -> None:
    """Train the base classifier f on the (poisoned) training set with Gaussian noise of σ."""
    torch.set_num_threads(threads)
    split, _, x, y = load_training_set(split_path, poison_path)
    whole = partition.partition_dataset(x, y, k=1)
    cfg = train.TrainConfig(**{**defense["train"], "noise_sigma": sigma})
    spec = model_spec(defense["arch"], split)
    states = train.train_shard(x, y, whole, [0], spec, cfg, select_device(device))
    train.save_shard(output, spec, [0], states)


def _smoothed_classifier(model_path: str, num_classes: int, sigma: float, defense: Mapping[str, Any], shard: int,
                         device: str) -> Smooth:
    target = select_device(device)
    _, _, models = train.load_shard(model_path)
    model = models[0].to(target)
    return Smooth(model, num_classes, sigma, generator=int(defense["seed"]) + shard, bf16=defense["bf16"],
                  channels_last=True,  # about 2× on CPU for the small CNNs, and the fast path on CUDA
                  compiled=defense["compile"])


def _test_points(split_path: str, shard: int, defense: Mapping[str, Any]) -> tuple[data.Split, np.ndarray]:
    split = data.load_split(split_path)
    return split, point_shards(len(split.y_test), defense)[shard]


def certify_smoothed(model_path: str, split_path: str, output: str, defense: Mapping[str, Any], sigma: float,
                     shard: int, device: str, threads: int) -> None:
    """CERTIFY the test points of one shard."""
    torch.set_num_threads(threads)
    split, points = _test_points(split_path, shard, defense)
    smooth = _smoothed_classifier(model_path, split.num_classes, sigma, defense, shard, device)
    x = torch.from_numpy(split.x_test[points]).float() / 255.0
    start = time.perf_counter()
    batch_size = resolve_batch_size(defense["batch_size"], smooth.device, x.shape[1:])
    prediction, radius = smooth.certify_batch(x, defense["n0"], defense["n"], defense["alpha"], batch_size)
    per_point = (time.perf_counter() - start) / max(len(points), 1)
    labels = split.y_test[points]
    log.info("certified %d points at σ=%g in batches of %d%s: %.3f s per point", len(points), sigma, batch_size,
             " (compiled)" if smooth.compiled else "", per_point)
    write_tsv(pd.DataFrame({"idx": points, "label": labels, "predict": prediction, "radius": radius,
                            "correct": (prediction == labels).astype(int), "time": per_point}), output)


def predict_smoothed(model_path: str, split_path: str, output: str, defense: Mapping[str, Any], sigma: float,
                     shard: int, device: str, threads: int) -> None:
    """PREDICT the test points of one shard (−1: abstain)."""
    torch.set_num_threads(threads)
    split, points = _test_points(split_path, shard, defense)
    smooth = _smoothed_classifier(model_path, split.num_classes, sigma, defense, shard, device)
    batch_size = resolve_batch_size(defense["batch_size"], smooth.device, split.x_test.shape[1:])
    rows = []
    for i in points:
        start = time.perf_counter()
        x = torch.from_numpy(split.x_test[i]).float() / 255.0
        prediction = smooth.predict(x, defense["n"], defense["alpha"], batch_size)
        label = int(split.y_test[i])
        rows.append((int(i), label, prediction, int(prediction == label), time.perf_counter() - start))
    write_tsv(pd.DataFrame(rows, columns=["idx", "label", "predict", "correct", "time"]), output)
