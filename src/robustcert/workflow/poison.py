"""The poison stage (rules/poison.smk): the attacks whose poisons a generator of
:data:`robustcert.poison.GENERATORS` makes from the split alone. Attack types that need a model
have their own stage (rules/bilevel.smk) and the same output path, told apart by wildcard constraints.
Every poison, whoever made it, gets the rows of its budget (results/tables/attacks.tsv).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustcert.config import Config, canonical, experiments, refuse
from robustcert.data import facts_of, held_out, planned_train_size
from robustcert.poison import GENERATORS, make_trigger
from robustcert.workflow import log
from robustcert.workflow.common import attacks_of, common_params, one_of

BUDGET_TABLE = "attacks"
BUDGET_ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/budget.tsv"


def attack_constraint(config: Config) -> str:
    """The {attack} names that poison_training_set makes."""
    return one_of(attacks_of(config, GENERATORS))


def check_attacks(config: Config) -> None:
    """Refuse, before any job, the backdoors and label flips that cannot mean what they say on the
    datasets of their experiments: a backdoor without a trigger or one that does not fit the images,
    a label flip onto its own class, a fraction that selects no sample, or more samples than are
    eligible. Class sizes are the published datasets' (a subset of one has fewer, so what is refused
    here is refused there too; the generators check the rest on the real split)."""
    problems = []
    for cell in experiments(config):
        attack = config["attacks"][cell.attack]
        if attack["type"] in _CHECKS:
            problems += [f"attacks.{cell.attack}: {p}" for p in _CHECKS[attack["type"]](attack, config["datasets"][cell.dataset])]
    refuse(list(dict.fromkeys(problems)))


def _check_backdoor(attack: Mapping[str, Any], dataset: Mapping[str, Any]) -> list[str]:
    facts = facts_of(dataset)
    if not attack.get("preset") and not ("position" in attack and "size" in attack):
        return ["a backdoor needs a trigger: set preset, or position and size"]
    try:
        make_trigger(attack, facts.image_shape)
    except ValueError as err:
        return [f"{err} of dataset source {dataset['source']}"]
    n_train = planned_train_size(dataset)
    count = round(attack["fraction"] * n_train)
    in_target = facts.class_counts[attack["target"]] if 0 <= attack["target"] < len(facts.class_counts) else 0
    # the training set keeps at least the target images that the held-out sets cannot hold
    kept_target = max(in_target - held_out(dataset), 0)
    eligible = min(in_target, n_train) if not attack.get("dirty_label", True) else n_train - kept_target
    return _count_problems(attack["fraction"], count, eligible, n_train)


def _check_label_flip(attack: Mapping[str, Any], dataset: Mapping[str, Any]) -> list[str]:
    facts, source, target = facts_of(dataset), attack.get("source"), attack["target"]
    if source == target:
        return [f"source and target are both {target}: the flip changes no label"]
    counts = dict(enumerate(facts.class_counts))
    eligible = counts.get(source, 0) if source is not None else facts.pool_size - counts.get(target, 0)
    return _count_problems(attack["fraction"], round(attack["fraction"] * eligible), eligible,
                           planned_train_size(dataset))


def _count_problems(fraction: float, count: int, eligible: int, n_train: int) -> list[str]:
    if count == 0:
        return [f"fraction {fraction} selects no sample of the {n_train} training images (at most "
                f"{eligible} eligible)"]
    if count > eligible:
        return [f"fraction {fraction} asks for {count} samples, but at most {eligible} of the training images "
                f"are eligible"]
    return []


_CHECKS = {"backdoor": _check_backdoor, "label_flip": _check_label_flip}


def attack_params(config: Config, wildcards: Any) -> dict[str, Any]:
    """The attack entry the generator reads."""
    return canonical(config["attacks"][wildcards.attack])


def poison_training_set(split_path: str, output: str, spec: Mapping[str, Any], seed: int) -> None:
    """Run an attack on the training set of a split and write what it changed."""
    from robustcert import data, poison

    split = data.load_split(split_path)
    result = poison.generate_poison(spec, split.x_train, split.y_train, seed)
    log.info("attack %s changed %d of %d training samples", spec["type"], len(result.index), len(split.y_train))
    poison.save_poison(output, result)


def budget_rows(config: Config) -> list[str]:
    """The budget rows of every attack of the grid, once per dataset and seed."""
    cells = dict.fromkeys((e.dataset, e.seed, e.attack) for e in experiments(config))
    return [BUDGET_ROW.format(dataset=dataset, seed=seed, attack=attack) for dataset, seed, attack in cells]


def budget_keys(config: Config, wildcards: Any) -> dict[str, str]:
    """The names that open an attack's budget rows (no defense)."""
    from robustcert.results import NO_DEFENSE

    return {"dataset": wildcards.dataset, "attack": wildcards.attack,
            "attack_type": config["attacks"][wildcards.attack]["type"], "defense": NO_DEFENSE,
            "method": NO_DEFENSE, "certificate": NO_DEFENSE}


def budget_params(config: Config, wildcards: Any) -> dict[str, Any]:
    """What the budget reads beyond the files: the attack's target class (None without one), and the
    parameters of its rows."""
    return {"target": config["attacks"][wildcards.attack].get("target"),
            "row_params": common_params(config, wildcards)}


def summarize_attack(split_path: str, poison_path: str, output: str, keys: Mapping[str, str],
                     params: Mapping[str, Any]) -> None:
    """The rows of one poison's budget (robustcert.poison.budget)."""
    from robustcert import poison
    from robustcert.results import Metric, tidy_rows, write_rows

    split, attack = poison.load_split_and_poison(split_path, poison_path)
    numbers = poison.budget(attack, split, params["target"])
    write_rows(output, tidy_rows(keys, params["row_params"], [Metric(k, v) for k, v in numbers.items()]))
