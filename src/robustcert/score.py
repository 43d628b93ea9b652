"""Score matrices: the logits of every base model on every test point.

``scores.npz`` (written and read by :mod:`robustcert.evaluate`) holds ``logits`` [n_test, m, C] (column j = the model of subset j, whatever order
the shard files come in), ``labels`` [n_test], ``base_accuracy`` [m] on the clean test set, and,
for attacks with a trigger, ``triggered_logits`` [n_t, m, C] on the triggered copies of the test
images ``triggered_index`` (those not of class ``target``). Without a trigger these are empty and
``target`` is −1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustcert.artifacts import ArtifactError
from robustcert.poison import Poison, triggered_test_set
from robustcert.train import load_shard

def load_ensemble(paths: Sequence[str | Path], num_subsets: int) -> list[nn.Module]:
    """The models of all shards, ordered by subset id; every subset exactly once."""
    by_subset: dict[int, nn.Module] = {}
    for path in paths:
        _, subsets, models = load_shard(str(path))
        for j, model in zip(subsets, models):
            if j in by_subset or not 0 <= j < num_subsets:
                raise ArtifactError(f"{path}: subset {j} is duplicated or outside [0, {num_subsets})")
            by_subset[j] = model
    missing = sorted(set(range(num_subsets)) - set(by_subset))
    if missing:
        raise ArtifactError(f"the shards {list(map(str, paths))} lack the models of subsets {missing}")
    return [by_subset[j] for j in range(num_subsets)]


@torch.inference_mode()
def ensemble_logits(models: Sequence[nn.Module], images: np.ndarray, device: torch.device,
                    batch_size: int = 1024) -> np.ndarray:
    """Logits [n, m, C] of uint8 images [n, C, H, W] under every model."""
    x = torch.from_numpy(images)
    columns = []
    for model in models:
        model.to(device).eval()
        outputs = [model(batch.to(device).float() / 255.0).float().cpu() for batch in x.split(batch_size)]
        columns.append(torch.cat(outputs) if outputs else torch.zeros(0, _num_classes(model)))
        model.cpu()
    return torch.stack(columns, dim=1).numpy()


def score_ensemble(models: Sequence[nn.Module], x_test: np.ndarray, y_test: np.ndarray, poison: Poison,
                   device: torch.device) -> dict[str, np.ndarray]:
    """All arrays of ``scores.npz`` (see :data:`robustcert.evaluate.SCORES`)."""
    logits = ensemble_logits(models, x_test, device)
    triggered_index, triggered_images = triggered_test_set(poison, x_test, y_test)
    return {
        "logits": logits,
        "labels": y_test,
        "base_accuracy": (logits.argmax(axis=2) == y_test[:, None]).mean(axis=0),
        "triggered_logits": ensemble_logits(models, triggered_images, device),
        "triggered_index": triggered_index,
        "target": np.int64(poison.target),
    }


def _num_classes(model: nn.Module) -> int:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
