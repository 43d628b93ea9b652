"""PatchCleanser (Xiang, Mahloujifar, Mittal, USENIX Security 2022; ref: inspire-group/PatchCleanser):
a certified defense against an adversarial patch that needs no special architecture. It masks the
image and asks an ordinary classifier.

A **mask set** (:func:`mask_set`) for a p×p patch on an H×W image with k masks per axis is R-covering:
every p×p patch lies inside at least one of its k² rectangular masks. Masked pixels take a fixed value.

The **prediction map** of an image (:meth:`Cleanser.prediction_map`) is the classifier's prediction
with every pair of masks applied (entry [i, j], symmetric; the diagonal one mask alone): k²(k²+1)/2
forward passes per image (666 for k = 6). A point is **certified** (:func:`certified`) iff every entry
equals its label: a patch inside mask i* leaves row i* of the map unchanged, and double masking
(:func:`double_masking`) then returns the label whatever the other entries are.

Where we deliberately differ from the reference: the pairs of all images of a batch go through one
forward pass, each masked image built by one gather of the pair's mask (no loop over pairs); ties in
the majority of the one-mask predictions go to the smaller class index (the reference's
``np.argmax`` of the counts does the same).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustcert.masks import mask_set

# masked inputs per forward pass that ``auto`` batch sizes aim at (values, as robustcert.patch)
BATCH_VALUES = {"cpu": 600_000, "cuda": 4096 * 3 * 32 * 32}


def mask_tensor(height: int, width: int, patch: int, k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The masked region [M, H, W] (bool, True where masked) of every mask of :func:`mask_set`."""
    masks = torch.zeros(k * k, height, width, dtype=torch.bool, device=device)
    for m, (r, c, h, w) in enumerate(mask_set(height, width, patch, k)):
        masks[m, r:r + h, c:c + w] = True
    return masks


def pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The index pairs (i ≤ j) of ``count`` masks, i outer: [count(count+1)/2] each."""
    return np.triu_indices(count)


def _majority(one_mask: np.ndarray) -> np.ndarray:
    """The most frequent class of each row of [n, M] (ties to the smaller class index)."""
    classes = int(one_mask.max()) + 1
    counts = (one_mask[:, :, None] == np.arange(classes)).sum(axis=1)
    return counts.argmax(axis=1)


def double_masking(prediction_map: np.ndarray) -> np.ndarray:
    """Double-masking inference of prediction maps [n, M, M] (symmetric, int; the diagonal one mask
    alone): [n] predictions. The one-mask predictions unanimous: that class. Otherwise, going through
    the masks in order whose one-mask prediction is not the majority's, the first mask i whose whole
    row (every second mask on top of it) equals its own prediction gives that prediction; else the
    majority. The majority is the most frequent one-mask prediction, ties to the smaller class index."""
    prediction_map = np.asarray(prediction_map)
    one_mask = np.diagonal(prediction_map, axis1=1, axis2=2)
    majority = _majority(one_mask)
    agreeing_row = (prediction_map == one_mask[:, :, None]).all(axis=2)
    candidate = agreeing_row & (one_mask != majority[:, None])
    first = candidate.argmax(axis=1)
    return np.where(candidate.any(axis=1), one_mask[np.arange(len(one_mask)), first], majority)


def certified(prediction_map: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n] bool: every entry of a point's prediction map [n, M, M] equals its label."""
    return (np.asarray(prediction_map) == np.asarray(labels)[:, None, None]).all(axis=(1, 2))


def disagreeing(prediction_map: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """[n] the number of masks whose one-mask prediction differs from the point's prediction."""
    one_mask = np.diagonal(np.asarray(prediction_map), axis1=1, axis2=2)
    return (one_mask != np.asarray(predictions)[:, None]).sum(axis=1)


def apply_masks(x: torch.Tensor, image: torch.Tensor, masks: torch.Tensor, value: float) -> torch.Tensor:
    """Images ``x[image]`` with ``masks`` [b, H, W] (True: masked) set to ``value``: one gather and one where."""
    return torch.where(masks[:, None], torch.as_tensor(value, dtype=x.dtype, device=x.device), x[image])


class Cleanser:
    """PatchCleanser around a classifier ``model`` (images in [0, 1]) for one mask set; ``batch_size``
    masked images per forward pass."""

    def __init__(self, model: nn.Module, height: int, width: int, patch: int, k: int, value: float,
                 batch_size: int) -> None:
        self.model, self.value, self.batch_size = model.eval(), value, batch_size
        self.device = next(model.parameters()).device
        self.masks = mask_tensor(height, width, patch, k, self.device)
        first, second = (torch.from_numpy(a).to(self.device) for a in pairs(len(self.masks)))
        self.first, self.second = first, second
        self.pair_masks = self.masks[first] | self.masks[second]

    def prediction_map(self, x: torch.Tensor) -> np.ndarray:
        """The prediction map [n, M, M] of images ``x`` [n, C, H, W]: every (image, pair) in chunks of
        ``batch_size``, each masked image built by one gather of its pair's mask."""
        x = x.to(self.device)
        count, n = len(self.pair_masks), len(x)
        image = torch.arange(n, device=self.device).repeat_interleave(count)
        pair = torch.arange(count, device=self.device).repeat(n)
        predictions = torch.empty(n * count, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            for start in range(0, n * count, self.batch_size):
                chunk = slice(start, start + self.batch_size)
                masked = apply_masks(x, image[chunk], self.pair_masks[pair[chunk]], self.value)
                predictions[chunk] = self.model(masked).argmax(dim=1)
        size = len(self.masks)
        full = torch.empty(n, size, size, dtype=torch.int64, device=self.device)
        flat = predictions.view(n, count)
        full[:, self.first, self.second] = flat
        full[:, self.second, self.first] = flat
        return full.cpu().numpy()

    def one_mask_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax [n, M, C] of the model on each one-mask image of ``x`` (one differentiable pass)."""
        n, size = len(x), len(self.masks)
        image = torch.arange(n, device=x.device).repeat_interleave(size)
        masks = self.masks.repeat(n, 1, 1)
        return F.softmax(self.model(apply_masks(x, image, masks, self.value)).float(), dim=1).view(n, size, -1)


def surrogate_loss(cleanser: Cleanser, labels: torch.Tensor):
    """The loss the patch attack ascends on PatchCleanser: cross-entropy of ``labels`` under the mean
    softmax over the one-mask images (a differentiable surrogate of double masking), per example."""
    def loss(x: torch.Tensor) -> torch.Tensor:
        probs = cleanser.one_mask_probabilities(x).mean(dim=1)
        return F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="none")

    return loss


def cleansed_correct(cleanser: Cleanser):
    """Whether the double-masking prediction of each image is its label: [n, 1]."""
    def judge(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        predictions = double_masking(cleanser.prediction_map(x))
        return torch.from_numpy(predictions == labels.cpu().numpy())[:, None]

    return judge


def random_masks(masks: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, H, W]: for each image the union of two masks drawn uniformly from ``masks`` (the same
    one twice: one mask), as masked training (the reference's Cutout-like augmentation) sees them."""
    drawn = torch.randint(len(masks), (2, count), generator=generator).to(masks.device)
    return masks[drawn[0]] | masks[drawn[1]]


def auto_batch_size(device: torch.device, image_shape: tuple[int, int, int]) -> int:
    """Masked images per forward pass suited to the device and the input's size."""
    channels, height, width = image_shape
    return max(1, BATCH_VALUES.get(device.type, BATCH_VALUES["cuda"]) // (channels * height * width))
