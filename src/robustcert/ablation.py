"""The geometry of the ablations of patch smoothing (robustcert.patch), in plain Python so that the
workflow's plan checks a config before any job without loading torch: the kinds, which positions
exist, the label of an ablation in paths and tables, and Δ, the most positions one patch overlaps.

``band`` keeps s columns (all rows, wrapping around: W positions), ``row`` s rows (H positions),
``block`` an s×s square (wrapping in both axes: H·W positions). With ``count`` k > 1 an ablation keeps k
bands (blocks: a k×k grid) spaced W/k (H/k) apart, and W/k (H/k · W/k) positions are distinct.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("band", "row", "block")


@dataclass(frozen=True)
class Ablation:
    """Which region of an H × W image each position keeps: ``kind`` (band, row, block), side ``size``
    (s), and ``count`` regions per ablation (k; multi-band / multi-block)."""

    kind: str
    size: int
    height: int
    width: int
    count: int = 1

    def __post_init__(self) -> None:
        problems = check_ablation(self.kind, self.size, self.count, self.height, self.width)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def period(self) -> tuple[int, int]:
        """The spacing of the kept regions in rows and columns (H/k, W/k; the image side for no repeat)."""
        rows = self.height // self.count if self.kind in ("row", "block") else self.height
        cols = self.width // self.count if self.kind in ("band", "block") else self.width
        return rows, cols

    @property
    def num_positions(self) -> int:
        """How many distinct ablations vote."""
        rows, cols = self.period
        return {"band": cols, "row": rows, "block": rows * cols}[self.kind]

    @property
    def label(self) -> str:
        """How the ablation appears in paths and tables: ``band_s4``, ``block_s2_k2``."""
        return f"{self.kind}_s{self.size}" + (f"_k{self.count}" if self.count > 1 else "")

    def delta(self, patch: int) -> int:
        """Δ: the most positions a patch of side ``patch`` can overlap."""
        if not 1 <= patch <= min(self.height, self.width):
            raise ValueError(f"patch size {patch} must be between 1 and the image's side {min(self.height, self.width)}")
        rows, cols = self.period
        reach = patch + self.size - 1
        return {"band": min(reach, cols), "row": min(reach, rows),
                "block": min(reach, rows) * min(reach, cols)}[self.kind]


def check_ablation(kind: str, size: int, count: int, height: int, width: int) -> list[str]:
    """What is wrong with an ablation for H × W images (empty if nothing)."""
    if kind not in KINDS:
        return [f"ablation kind {kind!r} is not one of {KINDS}"]
    sides = {"band": [("W", width)], "row": [("H", height)], "block": [("H", height), ("W", width)]}[kind]
    problems = []
    for name, side in sides:
        if size < 1 or count < 1 or size * count > side:
            problems.append(f"{kind} ablation s={size} × k={count} does not fit the image's {name}={side}")
        elif side % count:
            problems.append(f"{kind} ablation k={count} does not divide the image's {name}={side}")
    return problems


