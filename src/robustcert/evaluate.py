"""From score matrices to certificate TSVs, and from those to the numbers of the results table.

A certificate TSV (``results/certify/…/<variant>.tsv``) has one row per test point:
``idx label predict radius correct`` where ``radius`` is the certified number of training-set
insertions/deletions the prediction survives and ``correct`` is 1 when ``predict == label``.
``<variant>.triggered.tsv`` has the same columns for the triggered copies of all test images (the
target class's too) plus ``target`` (header only when the attack has no trigger).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustcert import certify, metrics
from robustcert.artifacts import Array, ArtifactError, Column, NpzFormat, TsvFormat

INDEX, LABEL, PREDICTION = Column("int", minimum=0), Column("int", minimum=0), Column("int", minimum=-1)  # −1: abstain
CORRECT, RADIUS = Column("int", allowed=(0, 1)), Column("float", finite=False)
# a classifier's predictions on test points (the smoothed PREDICT, the robust model under attack)
PREDICTIONS = TsvFormat("predictions", {"idx": INDEX, "label": LABEL, "predict": PREDICTION, "correct": CORRECT})
# a certificate per test point; on the triggered test set also the attack's target
CERTIFICATE = TsvFormat("certificate", {"idx": INDEX, "label": LABEL, "predict": PREDICTION, "radius": RADIUS,
                                        "correct": CORRECT})
TRIGGERED_CERTIFICATE = TsvFormat("triggered certificate", {**CERTIFICATE.columns, "target": LABEL})
# the score matrix of an ensemble: logits [test points, models, classes] on the clean and triggered test sets
SCORES = NpzFormat("scores", {"logits": Array("f", 3), "labels": Array("iu", 1), "base_accuracy": Array("f", 1),
                              "triggered_logits": Array("f", 3), "triggered_index": Array("iu", 1),
                              "target": Array("iu", 0)})


def certify_scores(variant: str, logits: np.ndarray, labels: np.ndarray, index: np.ndarray,
                   shifts: np.ndarray) -> pd.DataFrame:
    """The certificate TSV rows of the certificate named ``variant`` (:data:`certify.CERTIFICATES`)."""
    if variant not in certify.CERTIFICATES:
        raise ValueError(f"unknown certificate {variant!r}; known: {sorted(certify.CERTIFICATES)}")
    prediction, radius = certify.CERTIFICATES[variant](logits, shifts)
    return pd.DataFrame({"idx": index, "label": labels, "predict": prediction, "radius": radius,
                         "correct": (prediction == labels).astype(np.int64)}, columns=list(CERTIFICATE.columns))


def summarize(frame: pd.DataFrame, triggered: pd.DataFrame, base_accuracy: np.ndarray,
              base_asr: np.ndarray, poison_size: int) -> dict[str, float | int]:
    """The scalar numbers of an aggregation certificate (docs/metrics.md defines each)."""
    median, median_ref = metrics.median_certified(frame["radius"], frame["correct"])
    row: dict[str, float | int] = {
        "n_test": len(frame),
        "accuracy": float(frame["correct"].mean()) if len(frame) else np.nan,
        "base_accuracy_mean": float(np.mean(base_accuracy)) if len(base_accuracy) else np.nan,
        "median_cert": median,
        "median_cert_ref": median_ref,
        "poison_size": poison_size,
        "certified_vs_attack": (float(metrics.certified_accuracy(frame["radius"], frame["correct"], [poison_size])[0])
                                if poison_size else np.nan),
    }
    target = int(triggered["target"].iloc[0]) if len(triggered) else -1
    row |= metrics.trigger_metrics(triggered["predict"], triggered["label"], target)
    row["asr_base_mean"] = float(np.mean(base_asr)) if len(base_asr) else np.nan
    row["certified_ra"] = metrics.certified_robust_accuracy(triggered["predict"], triggered["label"],
                                                            triggered["radius"], poison_size, target)
    return row


def save_scores(path: str | Path, scores: dict[str, np.ndarray]) -> None:
    """Write ``scores.npz``."""
    SCORES.write(path, **scores)


def load_scores(path: str | Path, models: int | None = None) -> dict[str, np.ndarray]:
    """Read and check ``scores.npz`` (the logits of ``models`` models, when given)."""
    scores = SCORES.read(path)
    logits, labels, trig = scores["logits"], scores["labels"], scores["triggered_logits"]
    if models is not None and logits.shape[1] != models:
        raise ArtifactError(f"{path}: logits of {logits.shape[1]} models, the defense has {models}")
    if logits.ndim != 3 or labels.shape != (logits.shape[0],):
        raise ArtifactError(f"{path}: logits {logits.shape} and labels {labels.shape} do not match")
    if trig.ndim != 3 or trig.shape[1:] != logits.shape[1:] or len(scores["triggered_index"]) != len(trig):
        raise ArtifactError(f"{path}: triggered logits {trig.shape} do not match logits {logits.shape}")
    if len(trig) and not np.array_equal(scores["triggered_index"], np.arange(len(labels))):
        raise ArtifactError(f"{path}: the triggered test set must be the whole test set, target class included "
                            f"({len(trig)} of {len(labels)} points): score it again")
    return scores
