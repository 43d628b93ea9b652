"""Figures: certified accuracy against the poisoning budget (headless, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustcert.evaluate import certified_accuracy  # noqa: E402


def plot_poison_budget(frames: Mapping[str, pd.DataFrame], title: str, outputs: Sequence[str | Path]) -> None:
    """Certified accuracy (y) against the number of poisoned training samples (x), one line per label."""
    largest = max((int(f["radius"].max()) for f in frames.values() if len(f)), default=0)
    budgets = np.arange(0, max(largest, 0) + 2)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for label, frame in frames.items():
        ax.step(budgets, certified_accuracy(frame, budgets), where="post", label=label)
    ax.set(xlabel="poisoned training samples (insertions or deletions)", ylabel="certified accuracy",
           ylim=(0, 1.02), xlim=(0, budgets[-1]), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    for path in outputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_objective(trace: pd.DataFrame, prefix: str | Path, title: str) -> None:
    """An attack's surrogate objective ``f`` per outer step (``prefix``.png and .pdf)."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if len(trace):
        ax.plot(trace["step"], trace["f"], marker=".", label="f (soft certified radius)")
        ax.legend(fontsize="small")
    ax.set(xlabel="outer step", ylabel="objective", title=title)
    ax.grid(alpha=0.3)
    for path in (f"{prefix}.png", f"{prefix}.pdf"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    plt.close(fig)
