"""The steps of the bilevel-poisoning rules (rules/bilevel.smk): generate the clean-label poisons of
an attack ``bilevel_radius`` on a split, and evaluate them as the reference does (the target
class's ACR and certified accuracy under a smoothed victim trained on poisons vs on clean data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustcert import bilevel, data, poison, train
from robustcert.plot import plot_objective
from robustcert.device import select_device
from robustcert.model_steps import model_spec
from robustcert.partition import channel_stats
from robustcert.smoothing import resolve_batch_size
from robustcert.steps import log, write_tsv

ATTACK_KEYS = {f.name for f in dataclasses.fields(bilevel.BilevelConfig)}


def attack_config(spec: Mapping[str, Any]) -> bilevel.BilevelConfig:
    """The solver's settings from an ``attacks.<name>`` entry of type ``bilevel_radius``."""
    return bilevel.BilevelConfig(**{k: v for k, v in spec.items() if k in ATTACK_KEYS})


def poison_bilevel_radius(split_path: str, output: str, objective_output: str, plot_prefix: str,
                          spec: Mapping[str, Any], device: str, threads: int) -> None:
    """Poison every training image of the target class; write the poison and f per outer step."""
    torch.set_num_threads(threads)
    split = data.load_split(split_path)
    cfg = attack_config(spec)
    target_index = np.flatnonzero(split.y_train == cfg.target)
    clean = split.y_train != cfg.target
    mean, std = channel_stats(split.x_train[clean])
    surrogate = model_spec(spec["arch"], split)
    steps: list[dict[str, Any]] = []
    result = bilevel.bilevel_radius_attack(
        lambda: surrogate.build(mean, std), split.x_train[clean], split.y_train[clean],
        split.x_train[target_index], split.x_val[split.y_val == cfg.target], cfg, select_device(device),
        log_fn=lambda entry: (steps.append(entry), log.info("step %(step)d epoch %(epoch)d: f=%(f).4f", entry)),
    )
    poisons = bilevel.to_poison(target_index, result.poisons, split.y_train[target_index],
                                split.x_train[target_index], cfg.epsilon)
    poison.save_poison(output, poisons)
    trace = pd.DataFrame(steps)
    write_tsv(trace, objective_output)
    plot_objective(trace, plot_prefix, title=f"bilevel poisoning of class {cfg.target}: soft certified radius")


def evaluate_bilevel_radius(clean_model: str, poisoned_model: str, split_path: str, output: str,
                            describe: Mapping[str, Any], spec: Mapping[str, Any], defense: Mapping[str, Any],
                            sigma: float, radii: Sequence[float], device: str, threads: int) -> None:
    """Certify the same target-class test points under the clean and the poisoned victim; one table row."""
    torch.set_num_threads(threads)
    split = data.load_split(split_path)
    target = select_device(device)
    evaluation = spec["evaluation"]
    batch_size = resolve_batch_size(defense["batch_size"], target, split.x_test.shape[1:])
    results = {}
    for name, path in (("clean", clean_model), ("poisoned", poisoned_model)):
        _, _, models = train.load_shard(path)
        results[name] = bilevel.target_class_certification(
            models[0].to(target), split.x_test, split.y_test, int(spec["target"]), evaluation["n_points"],
            defense["n0"], defense["n"], defense["alpha"], sigma, batch_size, evaluation["seed"],
            split.num_classes, radii)
    clean, poisoned = results["clean"], results["poisoned"]
    row = {**describe, "target": int(spec["target"]), "epsilon": float(spec["epsilon"]),
           "n0": defense["n0"], "n": defense["n"], "alpha": defense["alpha"], "n_test": len(clean["index"]),
           "acr_clean": clean["acr"], "acr": poisoned["acr"],
           "acr_drop": 1.0 - poisoned["acr"] / clean["acr"] if clean["acr"] > 0 else np.nan}
    for r in radii:
        row[f"cert_acc_clean@l2={r:g}"] = clean["certified_accuracy"][r]
        row[f"cert_acc@l2={r:g}"] = poisoned["certified_accuracy"][r]
    log.info("target class %d: ACR %.4f clean → %.4f poisoned", spec["target"], clean["acr"], poisoned["acr"])
    write_tsv(pd.DataFrame([row]), output)
