"""One function per workflow rule: read the rule's input files, call the domain modules, write
the outputs. The scripts under ``scripts/`` only unpack the ``snakemake`` object and call these,
so every step can be run and tested without Snakemake.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustcert import data, evaluate, partition, poison
from robustcert.artifacts import atomic_path

log = logging.getLogger("robustcert")


def start_log(path: str | Path) -> None:
    """Send stderr and the package's log messages to a rule's log file."""
    sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        force=True)


def split_dataset(output: str, spec: Mapping[str, Any], data_root: str, seed: int) -> None:
    """Load a dataset and write its fixed train/validation/test split."""
    source = data.load_source(spec["source"], data_root, spec.get("download", False),
                              spec.get("verify_checksums", True))
    split = data.split_source(source, spec["n_val"], spec.get("n_test"), seed)
    log.info("%s: %d train, %d validation, %d test images of shape %s", spec["source"], len(split.y_train),
             len(split.y_val), len(split.y_test), split.image_shape)
    data.save_split(output, split)


def poison_training_set(split_path: str, output: str, spec: Mapping[str, Any], seed: int) -> None:
    """Run an attack on the training set of a split and write what it changed."""
    split = data.load_split(split_path)
    result = poison.generate_poison(spec, split.x_train, split.y_train, seed)
    log.info("attack %s changed %d of %d training samples", spec["type"], len(result.index), len(split.y_train))
    poison.save_poison(output, result)


def load_training_set(split_path: str, poison_path: str) -> tuple[data.Split, poison.Poison, np.ndarray, np.ndarray]:
    """The split, the poison, and the poisoned training images and labels."""
    split = data.load_split(split_path)
    attack = poison.load_poison(poison_path, len(split.y_train), split.image_shape)
    return (split, attack, *attack.apply(split.x_train, split.y_train))


def partition_training_set(split_path: str, poison_path: str, output: str, defense: Mapping[str, Any]) -> None:
    """Partition the poisoned training set for a DPA (d = 1) or Finite Aggregation defense."""
    _, _, x, y = load_training_set(split_path, poison_path)
    result = partition.partition_dataset(x, y, int(defense["k"]), int(defense.get("d", 1)))
    sizes = result.sizes()
    log.info("%d subsets of %d..%d samples (mean %.1f)", result.num_subsets, sizes.min(), sizes.max(), sizes.mean())
    partition.save_partition(output, result)


def certify_ensemble(scores_path: str, partition_path: str, variant: str, clean_output: str,
                     triggered_output: str) -> None:
    """Write the certificate TSVs of one variant on the clean and the triggered test sets."""
    scores = evaluate.load_scores(scores_path)
    shifts = partition.load_partition(partition_path).shifts
    labels = scores["labels"]
    clean = evaluate.certify_scores(variant, scores["logits"], labels, np.arange(len(labels)), shifts)
    index = scores["triggered_index"]
    triggered = evaluate.certify_scores(variant, scores["triggered_logits"], labels[index], index, shifts)
    triggered["target"] = int(scores["target"])
    write_tsv(clean, clean_output)
    write_tsv(triggered, triggered_output)


def summarize_certificates(scores_path: str, poison_path: str, clean_path: str, triggered_path: str, output: str,
                           describe: Mapping[str, Any], budgets: Sequence[int]) -> None:
    """Write one row of the results table: ``describe`` (names, parameters) then the numbers."""
    scores = evaluate.load_scores(scores_path)
    attack = poison.load_poison(poison_path)
    row = evaluate.summarize(
        read_tsv(clean_path), read_tsv(triggered_path), scores["base_accuracy"],
        evaluate.base_attack_success(scores["triggered_logits"], int(scores["target"])),
        budgets, attack.symmetric_difference,
    )
    write_tsv(pd.DataFrame([{**describe, **row}]), output)


def tabulate_results(row_paths: Sequence[str], output: str) -> None:
    """Concatenate result rows (columns: the union, in order of first appearance)."""
    table = pd.concat([read_tsv(p) for p in row_paths], ignore_index=True)
    write_tsv(table.convert_dtypes(convert_string=False, convert_boolean=False), output)


def plot_certificates(tsv_paths: Sequence[str], labels: Sequence[str], title: str, outputs: Sequence[str]) -> None:
    """Plot certified accuracy against the poisoning budget, one line per certificate TSV."""
    from robustcert.plot import plot_poison_budget  # matplotlib: only this job needs it

    plot_poison_budget({label: read_tsv(p) for label, p in zip(labels, tsv_paths)}, title, outputs)


def gather_shards(shard_paths: Sequence[str], output: str) -> None:
    """Concatenate the TSVs of a sharded step in ``idx`` order."""
    frame = pd.concat([read_tsv(p) for p in shard_paths], ignore_index=True).sort_values("idx")
    write_tsv(frame, output)


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A TSV written by :func:`write_tsv`."""
    return pd.read_csv(path, sep="\t")


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a TSV atomically (floats at full, shortest round-trip precision)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
