"""The poison stage (rules/poison.smk): the attacks whose poisons a generator of
:data:`robustcert.poison.GENERATORS` makes from the split alone. Attack types that need a model
have their own stage (rules/bilevel.smk) and the same output path, told apart by wildcard constraints.
Every poison, whoever made it, gets the rows of its budget (results/tables/attacks.tsv).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustcert.config import Config, canonical, experiments
from robustcert.poison import GENERATORS
from robustcert.workflow import log
from robustcert.workflow.common import attacks_of, common_params, one_of

BUDGET_TABLE = "attacks"
BUDGET_ROW = "results/tables/rows/{dataset}/{attack}/budget.tsv"


def attack_constraint(config: Config) -> str:
    """The {attack} names that poison_training_set makes."""
    return one_of(attacks_of(config, GENERATORS))


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
    """The budget rows of every attack of the grid, once per dataset."""
    pairs = dict.fromkeys((e.dataset, e.attack) for e in experiments(config))
    return [BUDGET_ROW.format(dataset=dataset, attack=attack) for dataset, attack in pairs]


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

    split, attack, _, _ = poison.load_poisoned_training_set(split_path, poison_path)
    numbers = poison.budget(attack, split, params["target"])
    write_rows(output, tidy_rows(keys, params["row_params"], [Metric(k, v) for k, v in numbers.items()]))
