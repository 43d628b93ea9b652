"""What every figure of a run shares and the plan must know without importing matplotlib: one colour
per defense entry, in config order (Okabe–Ito, then a few more), so that a defense has the same colour
in every figure."""

from __future__ import annotations

from collections.abc import Sequence

COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
          "#882255", "#44AA99", "#999933", "#AA4499")


def palette(defenses: Sequence[str]) -> dict[str, str]:
    """The colour of each defense: the i-th colour of :data:`COLORS` for the i-th defense (cycling)."""
    return {name: COLORS[i % len(COLORS)] for i, name in enumerate(defenses)}
