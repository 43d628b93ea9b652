"""PatchCleanser (robustcert.patchcleanser): the mask set covers every patch, double masking and the
certificate as the paper defines them, the batched prediction map equals one pair at a time, and
certified points cannot be changed by any patch content anywhere (soundness)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from robustcert import masks, patchcleanser as pc
from robustcert import train


def covers(mask: tuple[int, int, int, int], top: int, left: int, patch: int) -> bool:
    row, col, height, width = mask
    return row <= top and top + patch <= row + height and col <= left and left + patch <= col + width


SMALL = [(h, w, p, k) for h in range(1, 9) for w in range(1, 9) for p in range(1, min(h, w) + 1)
         for k in range(1, 7) if not masks.check_mask_set(h, w, p, k)]


def test_every_patch_lies_inside_a_mask_exhaustively_on_small_images():
    assert len(SMALL) > 300
    for height, width, patch, k in SMALL:
        masks = pc.mask_set(height, width, patch, k)
        assert len(masks) == k * k and len(set(masks)) == k * k
        assert all(r + mh <= height and c + mw <= width for r, c, mh, mw in masks)
        for top, left in itertools.product(range(height - patch + 1), range(width - patch + 1)):
            assert any(covers(m, top, left, patch) for m in masks), (height, width, patch, k, top, left)


def test_the_reference_mask_set_of_cifar():
    masks = pc.mask_set(32, 32, 5, 6)  # stride ⌈28/6⌉ = 5, side 9, starts 0 5 10 15 20 and the last, 23
    assert len(masks) == 36 and masks[:7] == [(0, c, 9, 9) for c in (0, 5, 10, 15, 20, 23)] + [(5, 0, 9, 9)]
    assert masks[-1] == (23, 23, 9, 9)


@pytest.mark.parametrize("args,problem", [
    ((8, 8, 9, 2), "patch size 9 is not between 1 and the image's side 8"),
    ((8, 8, 3, 0), "k=0"),
    ((8, 8, 3, 7), "collapse to 6 distinct masks"),
    ((8, 6, 6, 2), "collapse to 1 distinct masks for patch size 6 on the image's W=6"),
])
def test_mask_sets_that_do_not_fit_are_refused(args, problem):
    with pytest.raises(ValueError, match=problem):
        pc.mask_set(*args)


def symmetric(upper: list[list[int]]) -> np.ndarray:
    full = np.array(upper)
    return np.triu(full) + np.triu(full, 1).T


def test_double_masking_unanimous_disagreeing_and_majority():
    unanimous = np.full((3, 3), 2)
    # the one-mask predictions 1 1 0: mask 2 disagrees and its row agrees: class 0
    second_round = symmetric([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    # mask 2 disagrees but its row does not agree with it: the majority, 1
    majority = symmetric([[1, 1, 1], [0, 1, 1], [0, 0, 0]])
    # a tie of the one-mask counts (0, 1 | 2 masks each) to the smaller class: 0; no row agrees
    tie = symmetric([[1, 2, 2, 2], [0, 0, 2, 2], [0, 0, 1, 2], [0, 0, 0, 0]])
    maps = [unanimous, second_round, majority]
    assert pc.double_masking(np.stack(maps)).tolist() == [2, 0, 1]
    assert pc.double_masking(tie[None]).tolist() == [0]
    assert pc.disagreeing(np.stack(maps), np.array([2, 0, 1])).tolist() == [0, 2, 1]


def test_the_first_agreeing_minority_mask_decides():
    # one-mask 0 1 2 2 2: masks 0 and 1 disagree with the majority 2, both rows agree: mask 0's class
    prediction_map = np.array([[0, 0, 0, 0, 0], [0, 1, 1, 1, 1], [0, 1, 2, 2, 2], [0, 1, 2, 2, 2], [0, 1, 2, 2, 2]])
    assert pc.double_masking(prediction_map[None]).tolist() == [0]


def test_certified_iff_every_entry_is_the_label():
    maps = np.stack([np.full((4, 4), 3), np.full((4, 4), 3)])
    maps[1, 0, 3] = maps[1, 3, 0] = 1
    assert pc.certified(maps, np.array([3, 3])).tolist() == [True, False]
    assert pc.certified(maps, np.array([1, 3])).tolist() == [False, False]


def worst_cases(prediction_map: np.ndarray, fixed: np.ndarray, classes: int, rng: np.random.Generator):
    """Maps an adversary can produce: the entries of the masks that cover the patch (``fixed``) kept,
    every other entry any class: all assignments when few, else every constant plus random ones."""
    free = [(i, j) for i in range(len(fixed)) for j in range(i, len(fixed)) if not (fixed[i] or fixed[j])]
    assignments = (itertools.product(range(classes), repeat=len(free)) if classes ** len(free) <= 4096
                   else [*([c] * len(free) for c in range(classes)),
                         *(rng.integers(0, classes, len(free)) for _ in range(2000))])
    for values in assignments:
        attacked = prediction_map.copy()
        for (i, j), value in zip(free, values):
            attacked[i, j] = attacked[j, i] = value
        yield attacked


@pytest.mark.parametrize("height,width,patch,k", [(5, 5, 2, 2), (6, 5, 2, 2), (6, 6, 2, 3)])
def test_no_patch_changes_the_output_on_a_certified_point(height, width, patch, k):
    """Soundness: for a certified point, every patch position and every prediction of the masks that do
    not cover the patch (the worst case the certificate allows) leave double masking at the label."""
    rng = np.random.default_rng(0)
    masks = pc.mask_set(height, width, patch, k)
    label, classes = 1, 3
    prediction_map = np.full((len(masks), len(masks)), label)
    assert pc.certified(prediction_map[None], np.array([label]))[0]
    checked = 0
    for top, left in itertools.product(range(height - patch + 1), range(width - patch + 1)):
        fixed = np.array([covers(m, top, left, patch) for m in masks])
        for attacked in worst_cases(prediction_map, fixed, classes, rng):
            assert pc.double_masking(attacked[None])[0] == label
            checked += 1
    assert checked > 1000


class Mean(nn.Module):
    """A classifier of small images by the mean of three pixel regions: confident on most images."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return self.scale * torch.stack([flat.mean(1), 0.5 + 0 * flat[:, 0], 1 - flat.mean(1)], dim=1) * 20


def test_the_batched_map_is_one_pair_at_a_time_and_certified_points_resist_every_patch():
    torch.manual_seed(0)
    model = Mean()
    height = width = 6
    patch, k, value = 2, 2, 0.5
    x = torch.rand(12, 1, height, width) * 0.3 + torch.tensor([0.0, 0.7]).repeat(6)[:, None, None, None]
    cleanser = pc.Cleanser(model, height, width, patch, k, value, batch_size=7)
    prediction_map = cleanser.prediction_map(x)
    masks = pc.mask_tensor(height, width, patch, k)
    for i, j in zip(*pc.pairs(len(masks))):
        one = torch.where(masks[i] | masks[j], torch.tensor(value), x)
        expected = model(one).argmax(1).numpy()
        assert (prediction_map[:, i, j] == expected).all() and (prediction_map[:, j, i] == expected).all()
    labels = pc.double_masking(prediction_map)
    certified = pc.certified(prediction_map, labels)
    assert certified.sum() >= 3
    for top, left in itertools.product(range(height - patch + 1), range(width - patch + 1)):
        for content in (0.0, 1.0):
            attacked = x[certified].clone()
            attacked[:, :, top:top + patch, left:left + patch] = content
            assert (pc.double_masking(cleanser.prediction_map(attacked)) == labels[certified]).all()


def test_masked_training_masks_two_random_masks_of_the_set():
    cfg = train.TrainConfig(objective="masking", masking_patch=2, masking_k=2, masking_value=0.25)
    objective = train.objective_of(cfg)
    x = torch.ones(64, 1, 6, 6)
    masked = objective.perturb(x, torch.Generator().manual_seed(0))
    masks = pc.mask_tensor(6, 6, 2, 2)
    unions = {tuple((masks[i] | masks[j]).flatten().tolist()) for i in range(4) for j in range(4)}
    drawn = {tuple((m[0] == 0.25).flatten().tolist()) for m in masked}
    assert drawn <= unions and len(drawn) > 3
    assert ((masked == 1) | (masked == 0.25)).all()
