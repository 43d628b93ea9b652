"""Every figure of the workflow, headless (Agg), in one style: 6 × 4.5 in, constrained layout, a light
grid, saved as PNG (150 dpi) and PDF side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustcert.metrics import certified_accuracy  # noqa: E402

SIZE = (6, 4.5)
DPI = 150


def plot_poison_budget(frames: Mapping[str, pd.DataFrame], title: str, outputs: Sequence[str | Path]) -> None:
    """Certified accuracy (y) against the number of poisoned training samples (x), one line per label."""
    largest = max((int(f["radius"].max()) for f in frames.values() if len(f)), default=0)
    budgets = np.arange(0, max(largest, 0) + 2)
    fig, ax = _figure()
    for label, frame in frames.items():
        ax.step(budgets, certified_accuracy(frame["radius"], frame["correct"], budgets), where="post", label=label)
    ax.set(xlabel="poisoned training samples (insertions or deletions)", ylabel="certified accuracy",
           ylim=(0, 1.02), xlim=(0, budgets[-1]), title=title)
    ax.legend(fontsize="small")
    _save(fig, outputs)


def plot_certified_accuracy(frames: Mapping[str, pd.DataFrame], prefix: str | Path, max_radius: float | None = None,
                            title: str | None = None, step: float = 0.01) -> list[Path]:
    """Certified accuracy (y) against the L2 radius (x), one line per label, saved as ``prefix``.png/.pdf."""
    if max_radius is None:
        max_radius = max(math.ceil(frame["radius"].max() * 4) / 4 for frame in frames.values()) or 1.0
    radii = np.arange(0.0, max_radius + step, step)
    fig, ax = _figure()
    for label, frame in frames.items():
        ax.plot(radii, certified_accuracy(frame["radius"], frame["correct"], radii), label=label)
    ax.set(xlim=(0, max_radius), ylim=(0, 1), xlabel="radius", ylabel="certified accuracy", title=title)
    ax.legend(loc="upper right")
    paths = [Path(f"{prefix}.png"), Path(f"{prefix}.pdf")]
    _save(fig, paths)
    return paths


def plot_objective(trace: pd.DataFrame, prefix: str | Path, title: str) -> None:
    """An attack's surrogate objective ``f`` per outer step (``prefix``.png and .pdf)."""
    fig, ax = _figure()
    if len(trace):
        ax.plot(trace["step"], trace["f"], marker=".", label="f (soft certified radius)")
        ax.legend(fontsize="small")
    ax.set(xlabel="outer step", ylabel="objective", title=title)
    _save(fig, [f"{prefix}.png", f"{prefix}.pdf"])


def _figure() -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: plt.Figure, paths: Sequence[str | Path]) -> None:
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
