"""PatchCleanser's mask sets (no torch, so that a config's mask sets are checked before any job;
robustcert.patchcleanser uses them): for a p×p patch on an H×W image with k masks per axis, k²
rectangles such that every p×p patch lies inside at least one of them (R-covering)."""

from __future__ import annotations

import math


def _axis(side: int, patch: int, k: int) -> tuple[list[int], int]:
    """The start positions and the mask side along one axis."""
    stride = math.ceil((side - patch + 1) / k)
    mask = min(patch + stride - 1, side)
    starts = list(range(0, side - mask + 1, stride))
    if starts[-1] != side - mask:
        starts.append(side - mask)
    return starts, mask


def check_mask_set(height: int, width: int, patch: int, k: int) -> list[str]:
    """What is wrong with a mask set for H×W images (empty if nothing): a patch larger than the image,
    k < 1, or k so large that the masks of an axis collapse (fewer than k distinct positions)."""
    if patch < 1 or patch > min(height, width):
        return [f"patch size {patch} is not between 1 and the image's side {min(height, width)}"]
    if k < 1:
        return [f"k={k} masks per axis: at least 1"]
    problems = []
    for name, side in (("H", height), ("W", width)):
        count = len(_axis(side, patch, k)[0])
        if count < k:
            problems.append(f"k={k} masks per axis collapse to {count} distinct masks for patch size {patch} "
                            f"on the image's {name}={side}")
    return problems


def mask_set(height: int, width: int, patch: int, k: int) -> list[tuple[int, int, int, int]]:
    """The R-covering mask set (row, col, mask_height, mask_width) of a p×p patch on an H×W image, k
    masks per axis, rows outer and columns inner: stride ⌈(side − p + 1)/k⌉, mask side
    min(p + stride − 1, side), starts 0, stride, … ≤ side − mask side, plus side − mask side when not
    aligned. Refuses (ValueError) what :func:`check_mask_set` finds wrong."""
    problems = check_mask_set(height, width, patch, k)
    if problems:
        raise ValueError("; ".join(problems))
    rows, mask_height = _axis(height, patch, k)
    cols, mask_width = _axis(width, patch, k)
    return [(r, c, mask_height, mask_width) for r in rows for c in cols]
