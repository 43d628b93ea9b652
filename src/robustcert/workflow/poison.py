"""The poison stage (rules/poison.smk): the attacks whose poisons a generator of
:data:`robustcert.poison.GENERATORS` makes from the split alone. Attack types that need a model
have their own stage (rules/bilevel.smk) and the same output path, told apart by wildcard constraints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustcert.config import Config, canonical
from robustcert.poison import GENERATORS
from robustcert.workflow import log
from robustcert.workflow.common import attacks_of, one_of


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
