"""The steps of the rules that run models (``resources: gpu=1``): training and scoring of the
aggregation defenses. Kept apart from :mod:`robustcert.steps` so that light jobs never import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from robustcert import data, partition, score, train
from robustcert.device import select_device
from robustcert.evaluate import save_scores
from robustcert.steps import load_training_set, log


def train_shard(split_path: str, poison_path: str, partition_path: str, output: str, subsets: Sequence[int],
                defense: Mapping[str, Any], device: str, threads: int) -> None:
    """Train the base models of one shard of subsets."""
    torch.set_num_threads(threads)
    split, _, x, y = load_training_set(split_path, poison_path)
    parts = partition.load_partition(partition_path, len(y))
    spec = model_spec(defense["arch"], split)
    cfg = train.TrainConfig(**defense["train"])
    states = train.train_shard(x, y, parts, list(subsets), spec, cfg, select_device(device))
    train.save_shard(output, spec, subsets, states)


def model_spec(arch: str, split: data.Split) -> train.ModelSpec:
    """The architecture for a split's images."""
    channels, height, _ = split.image_shape
    return train.ModelSpec(arch, channels, split.num_classes, height)


def score_ensemble(split_path: str, poison_path: str, partition_path: str, shard_paths: Sequence[str], output: str,
                   device: str, threads: int) -> None:
    """Write the score matrix of all base models on the clean and triggered test sets."""
    torch.set_num_threads(threads)
    split, attack, _, y = load_training_set(split_path, poison_path)
    parts = partition.load_partition(partition_path, len(y))
    models = score.load_ensemble(shard_paths, parts.num_subsets)
    scores = score.score_ensemble(models, split.x_test, split.y_test, attack, select_device(device))
    log.info("base models: mean test accuracy %.4f", scores["base_accuracy"].mean())
    save_scores(output, scores)
