"""Bilevel poisoning (rules/bilevel.smk; Mehra et al. 2021): an attack of type ``bilevel_radius``
makes clean-label poisons of one class against its ``victim`` (a smoothing objective: Gaussian
augmentation, MACER, SmoothAdv), in the poison format of the poison stage, so that they flow into
every defense; under each smoothing defense it is also evaluated as the reference does: the target
class's ACR and certified accuracy of the victim trained on the poisons against the victim trained
on clean data (the attack of type ``none``), on the same test points and noise. Each row names the
attack's victim (``victim``, ``victim_sigma``, ``victim_<setting>``) beside the defense's objective
(``objective``, …), so the method's wide table holds Mehra et al.'s transfer table: attack victim ×
evaluation victim → target-class ACR drop; :func:`robustcert.bilevel.transfer_table` sets it out as a
matrix (``tables/bilevel_transfer.tsv``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log
from robustcert.workflow.common import attacks_of, common_params, experiments_of, one_of, row_keys, sigma_label
from robustcert.workflow.smoothing import (
    METHOD as SMOOTHING,
    MODEL as SMOOTHED_MODEL,
    objective_fields,
    objective_params,
    objective_problems,
)

ATTACK_TYPE = "bilevel_radius"
CERTIFICATE = "target_class_certify"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/bilevel_sigma_{sigma}.tsv"
OBJECTIVE_PLOT = "<results>/plots/{dataset}/seed_{seed}/bilevel_{attack}_objective.{ext}"
TRANSFER = "<results>/tables/bilevel_transfer.tsv"
# what evaluation reads of the smoothing defense
EVALUATION_KEYS = ("n0", "n", "alpha", "batch_size")


class Plan:
    """The bilevel attacks of a config and their evaluations under smoothing defenses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.attacks = attacks_of(config, [ATTACK_TYPE])
        self.evaluated = experiments_of(config, [SMOOTHING], [ATTACK_TYPE])
        clean = attacks_of(config, ["none"])
        problems = [problem for name in self.attacks
                    for problem in objective_problems(f"attacks.{name}.victim", config["attacks"][name]["victim"])]
        if self.evaluated and not clean:
            problems.append("a bilevel_radius attack is evaluated against the clean victim: define an attack of type none")
        refuse(problems)
        self.clean_attack = clean[0] if clean else None

    def attack_constraint(self) -> str:
        """The {attack} names this stage poisons."""
        return one_of(self.attacks)

    def rows(self) -> list[str]:
        """The evaluation row file of every bilevel attack × smoothing defense × σ."""
        return [ROW.format(**vars(e), sigma=sigma_label(s)) for e in self.evaluated
                for s in self.config["defenses"][e.defense]["sigmas"]]

    def transfer(self) -> list[str]:
        """The transfer table, where there are evaluations."""
        return [TRANSFER] if self.evaluated else []

    def plots(self) -> list[str]:
        """The objective trace of every bilevel attack on every dataset it runs on."""
        cells = sorted({(e.dataset, e.seed, e.attack) for e in experiments_of(self.config, attack_types=[ATTACK_TYPE])})
        return [OBJECTIVE_PLOT.format(dataset=d, seed=s, attack=a, ext=ext) for d, s, a in cells
                for ext in ("png", "pdf")]

    def attack_params(self, wildcards: Any) -> dict[str, Any]:
        """What the attack reads of its entry (not its evaluation)."""
        spec = self.config["attacks"][wildcards.attack]
        return canonical({key: value for key, value in spec.items() if key != "evaluation"})

    def evaluation_params(self, wildcards: Any) -> dict[str, Any]:
        """What the evaluation reads: the attack's target and evaluation, and the defense's Monte Carlo settings."""
        spec, defense = self.config["attacks"][wildcards.attack], self.config["defenses"][wildcards.defense]
        return canonical({"target": spec["target"], "n_points": spec["evaluation"]["n_points"],
                          **{key: defense[key] for key in EVALUATION_KEYS}})

    def clean_victim(self, wildcards: Any) -> str:
        """The same smoothing victim trained on clean data."""
        return SMOOTHED_MODEL.format(dataset=wildcards.dataset, seed=wildcards.seed, attack=self.clean_attack,
                                     defense=wildcards.defense, sigma=wildcards.sigma)

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open an evaluation's rows."""
        return row_keys(self.config, wildcards, CERTIFICATE)

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change an evaluation's numbers."""
        spec, defense = self.config["attacks"][wildcards.attack], self.config["defenses"][wildcards.defense]
        return {**common_params(self.config, wildcards), **victim_params(spec), "arch": defense["arch"],
                "epochs": defense["train"]["epochs"], **objective_params(defense["train"]["objective"]),
                "sigma_train": float(wildcards.sigma), "sigma_certify": float(wildcards.sigma),
                "target": spec["target"], "epsilon": float(spec["epsilon"]), "n0": defense["n0"], "n": defense["n"],
                "alpha": defense["alpha"]}


def victim_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The attack's victim as row parameters: ``victim`` (its objective), ``victim_sigma``, ``victim_<setting>``."""
    named = {"victim" if key == "objective" else f"victim_{key}": value
             for key, value in objective_params(spec["victim"]).items()}
    return {"victim": named.pop("victim"), "victim_sigma": float(spec["sigma"]), **named}


def poison_bilevel_radius(split_path: str, output: str, objective_output: str, plot_prefix: str,
                          spec: Mapping[str, Any], seed: int, device: str, threads: int) -> None:
    """Poison every training image of the target class; write the poison and f per outer step."""
    target_device = compute_prologue(threads, device)
    import numpy as np
    import pandas as pd

    from robustcert import bilevel, data, poison, train
    from robustcert.artifacts import write_tsv
    from robustcert.partition import channel_stats
    from robustcert.plot import plot_objective

    split = data.load_split(split_path)
    fields = {f.name for f in dataclasses.fields(bilevel.BilevelConfig)}
    cfg = bilevel.BilevelConfig(**{k: v for k, v in spec.items() if k in fields}, seed=derive_seed(seed))
    target_index = np.flatnonzero(split.y_train == cfg.target)
    clean = split.y_train != cfg.target
    mean, std = channel_stats(split.x_train[clean])
    surrogate = train.ModelSpec.for_split(spec["arch"], split)
    victim = bilevel.ObjectiveVictim(train.objective_of(train.TrainConfig(**objective_fields(spec["victim"]),
                                                                          noise_sigma=cfg.sigma)))
    steps: list[dict[str, Any]] = []
    result = bilevel.bilevel_radius_attack(
        lambda: surrogate.build(mean, std), split.x_train[clean], split.y_train[clean],
        split.x_train[target_index], split.x_val[split.y_val == cfg.target], cfg, target_device, victim,
        log_fn=lambda entry: (steps.append(entry), log.info("step %(step)d epoch %(epoch)d: f=%(f).4f", entry)),
    )
    poisons = bilevel.to_poison(target_index, result.poisons, split.y_train[target_index],
                                split.x_train[target_index], cfg.epsilon)
    poison.save_poison(output, poisons)
    trace = pd.DataFrame(steps)
    write_tsv(trace, objective_output)
    plot_objective(trace, plot_prefix, title=f"bilevel poisoning of class {cfg.target}: soft certified radius")


def evaluate_bilevel_radius(clean_model: str, poisoned_model: str, split_path: str, output: str,
                            keys: Mapping[str, str], params: Mapping[str, Any], settings: Mapping[str, Any],
                            sigma: float, radii: Sequence[float], seed: int, device: str, threads: int) -> None:
    """Certify the same target-class test points under the clean and the poisoned victim; the results rows."""
    target_device = compute_prologue(threads, device)
    from robustcert import bilevel, data, train
    from robustcert.smoothing import resolve_batch_size

    split = data.load_split(split_path)
    batch_size = resolve_batch_size(settings["batch_size"], target_device, split.x_test.shape[1:])
    results = {}
    for name, path in (("clean", clean_model), ("poisoned", poisoned_model)):
        _, _, models = train.load_shard(path, {"method": "smoothing"})
        results[name] = bilevel.target_class_certification(
            models[0].to(target_device), split.x_test, split.y_test, int(settings["target"]), settings["n_points"],
            settings["n0"], settings["n"], settings["alpha"], sigma, batch_size, derive_seed(seed),
            split.num_classes, radii)
    clean, poisoned = results["clean"], results["poisoned"]
    drop = 1.0 - poisoned["acr"] / clean["acr"] if clean["acr"] > 0 else float("nan")
    metrics = [
        Metric("n_test", len(clean["index"])), Metric("acr_clean", clean["acr"]), Metric("acr", poisoned["acr"]),
        Metric("acr_drop", drop),
        *on_axis("cert_acc_clean", "l2", radii, [clean["certified_accuracy"][r] for r in radii]),
        *on_axis("cert_acc", "l2", radii, [poisoned["certified_accuracy"][r] for r in radii]),
    ]
    log.info("target class %d: ACR %.4f clean → %.4f poisoned", settings["target"], clean["acr"], poisoned["acr"])
    write_rows(output, tidy_rows(keys, params, metrics))


def tabulate_transfer(row_paths: Sequence[str], output: str) -> None:
    """The transfer table (:func:`robustcert.bilevel.transfer_table`) of every evaluation's rows."""
    from robustcert import bilevel, results
    from robustcert.artifacts import write_tsv

    table = bilevel.transfer_table(results.concatenate(results.read_rows(p) for p in row_paths))
    log.info("transfer table: %d attacks × %d evaluation victims", len(table), table.shape[1] - 4)
    write_tsv(table, output)
