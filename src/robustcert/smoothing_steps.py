"""The light steps of the randomized-smoothing rules (rules/smoothing.smk): which test points are
certified, by which job; the results-table row; the table and plot per defense. The steps that run
models (training, CERTIFY, PREDICT) are in :mod:`robustcert.smoothing_model_steps`.

Certify TSVs have the reference's columns ``idx label predict radius correct time`` (radius at full
precision; ``time`` = seconds per point, the shard's time over its points, since a shard certifies
its points in one batched call). Predict TSVs: ``idx label predict correct time``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustcert import analysis
from robustcert.steps import read_tsv, write_tsv


def certified_points(n_test: int, skip: int, limit: int | None) -> np.ndarray:
    """Indices of the certified test points: every ``skip``-th, at most ``limit`` (the reference's --skip/--max)."""
    return np.arange(0, n_test, skip)[:limit]


def point_shards(n_test: int, defense: Mapping[str, Any]) -> list[np.ndarray]:
    """The certified points cut into jobs of ``points_per_job``."""
    points = certified_points(n_test, defense["skip"], defense["max"])
    per_job = defense["points_per_job"]
    return [points[i:i + per_job] for i in range(0, len(points), per_job)]


def summarize_smoothing(certify_path: str, predict_path: str, output: str, describe: Mapping[str, Any],
                        defense: Mapping[str, Any], n_test: int, radii: Sequence[float]) -> None:
    """One results-table row for a smoothed classifier at one σ."""
    certified = analysis.read_certify_tsv(certify_path)
    predicted = read_tsv(predict_path)
    accuracy = analysis.certified_accuracy(certified["radius"], certified["correct"], radii)
    skip, limit = defense["skip"], defense["max"]
    row = {
        **describe,
        "n0": defense["n0"], "n": defense["n"], "alpha": defense["alpha"],
        "test_points": f"range(0, {n_test}, {skip})" + (f"[:{limit}]" if limit else ""),
        "n_test": len(certified),
        "accuracy": float(predicted["correct"].mean()),
        "abstain": float((predicted["predict"] == analysis.ABSTAIN).mean()),
        "certify_abstain": float((certified["predict"] == analysis.ABSTAIN).mean()),
        "acr": analysis.average_certified_radius(certified["radius"], certified["correct"]),
        **{f"cert_acc@l2={r:g}": float(a) for r, a in zip(radii, accuracy)},
        "seconds_per_point": float(certified["time"].mean()),
    }
    write_tsv(pd.DataFrame([row]), output)


def analyze_smoothing(certify_paths: Sequence[str], sigmas: Sequence[float], radii: Sequence[float], title: str,
                      table_output: str, plot_prefix: str) -> None:
    """The certified-accuracy table (best σ per radius marked) and plot over the σ of one defense."""
    frames = {f"σ={s:g}": analysis.read_certify_tsv(p) for s, p in zip(sigmas, certify_paths)}
    write_tsv(analysis.certified_accuracy_table(frames, radii).reset_index(), table_output)
    analysis.plot_certified_accuracy(frames, plot_prefix, title=title)
