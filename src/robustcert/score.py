"""Score matrices: the logits of every base model on every test point.

``scores.npz`` (written and read by :mod:`robustcert.evaluate`) holds ``logits`` [n_test, m, C] (column j = the model of subset j, whatever order
the shard files come in), ``labels`` [n_test], ``base_accuracy`` [m] on the clean test set, and,
for attacks with a trigger, ``triggered_logits`` [n_test, m, C] on the triggered copies of the test
images ``triggered_index`` (all of them, those of class ``target`` too:
:func:`robustcert.poison.triggered_test_set`). Without a trigger these are empty and ``target`` is −1.

With a :class:`ScoringNoise` (RAB) every model sees the test images plus its own fixed noise draw; a
triggered copy carries the same draw as its clean image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustcert.artifacts import ArtifactError
from robustcert.poison import Poison, triggered_test_set
from robustcert.train import load_shard

# the stream of the test-time noise, apart from the training streams seed + j of robustcert.train
TEST_NOISE_STREAM = 1


@dataclass(frozen=True)
class ScoringNoise:
    """A fixed Gaussian noise draw N(0, σ²I) on the test inputs per model (RAB's test-time noise), in
    [0, 1] pixel units, unclipped.

    Model j's draw over the whole test set [n_test, C, H, W] comes from a CPU generator seeded with
    :meth:`model_seed` (config seed, j and :data:`TEST_NOISE_STREAM` through numpy's SeedSequence), so
    it is the same on every device and in every job. The reference meant to seed it with a hash of
    the model file but drew from torch's global generator; we derive it from the seed and the index.
    """

    sigma: float
    seed: int

    def model_seed(self, model: int) -> int:
        """The seed of model ``model``'s test noise."""
        return int(np.random.SeedSequence([self.seed, model, TEST_NOISE_STREAM]).generate_state(1, np.uint64)[0])

    def draw(self, model: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Model ``model``'s noise over a test set of images of this shape [n_test, C, H, W]."""
        generator = torch.Generator().manual_seed(self.model_seed(model))
        return self.sigma * torch.randn(shape, generator=generator)


def load_ensemble(paths: Sequence[str | Path], num_subsets: int,
                  purpose: Mapping[str, Any] | None = None) -> list[nn.Module]:
    """The models of all shards, ordered by subset id; every subset exactly once; each shard trained for
    ``purpose`` (:func:`robustcert.train.load_shard`), when given."""
    by_subset: dict[int, nn.Module] = {}
    for path in paths:
        _, subsets, models = load_shard(str(path), purpose)
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
                    batch_size: int = 1024, noise: Callable[[int], torch.Tensor] | None = None) -> np.ndarray:
    """Logits [n, m, C] of uint8 images [n, C, H, W] under every model (model j on the images plus
    ``noise(j)`` [n, C, H, W], when given)."""
    x = torch.from_numpy(images).float() / 255.0
    columns = []
    for j, model in enumerate(models):
        model.to(device).eval()
        inputs = x + noise(j) if noise is not None else x
        outputs = [model(batch.to(device)).float().cpu() for batch in inputs.split(batch_size)]
        columns.append(torch.cat(outputs) if outputs else torch.zeros(0, _num_classes(model)))
        model.cpu()
    return torch.stack(columns, dim=1).numpy()


def score_ensemble(models: Sequence[nn.Module], x_test: np.ndarray, y_test: np.ndarray, poison: Poison,
                   device: torch.device, test_noise: ScoringNoise | None = None) -> dict[str, np.ndarray]:
    """All arrays of ``scores.npz`` (see :data:`robustcert.evaluate.SCORES`)."""
    triggered_index, triggered_images = triggered_test_set(poison, x_test, y_test)
    clean_noise = triggered_noise = None
    if test_noise is not None:
        def clean_noise(j: int) -> torch.Tensor:
            return test_noise.draw(j, x_test.shape)

        def triggered_noise(j: int) -> torch.Tensor:
            return test_noise.draw(j, x_test.shape)[torch.from_numpy(triggered_index)]
    logits = ensemble_logits(models, x_test, device, noise=clean_noise)
    return {
        "logits": logits,
        "labels": y_test,
        "base_accuracy": (logits.argmax(axis=2) == y_test[:, None]).mean(axis=0),
        "triggered_logits": ensemble_logits(models, triggered_images, device, noise=triggered_noise),
        "triggered_index": triggered_index,
        "target": np.int64(poison.target),
    }


def _num_classes(model: nn.Module) -> int:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
