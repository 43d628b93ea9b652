"""The workflow's view of a config that has passed schema validation.

The schema (``config/config.schema.yaml``) names, documents and defaults every key; this module
checks what a schema cannot (names that refer to each other) and derives the experiment plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

Config = Mapping[str, Any]
CERTIFICATES_OF_METHOD = {"dpa": ("dpa", "dpa_roe"), "fa": ("fa", "fa_roe")}


@dataclass(frozen=True)
class Experiment:
    """One dataset × attack × defense cell of the plan."""

    dataset: str
    attack: str
    defense: str


def experiments(config: Config) -> list[Experiment]:
    """Every cell of every ``experiments`` grid, in config order, without repeats."""
    cells = []
    for grid in config["experiments"]:
        for cell in product(grid["datasets"], grid["attacks"], grid["defenses"]):
            if Experiment(*cell) not in cells:
                cells.append(Experiment(*cell))
    return cells


def num_subsets(defense: Config) -> int:
    """k·d base models (d = 1 for DPA)."""
    return int(defense["k"]) * int(defense.get("d", 1))


def shards(defense: Config) -> list[range]:
    """The subsets each training job trains, ``partitions_per_job`` at a time."""
    total, per_job = num_subsets(defense), int(defense["partitions_per_job"])
    return [range(start, min(start + per_job, total)) for start in range(0, total, per_job)]


def check_config(config: Config) -> None:
    """Refuse references to undefined datasets, attacks or defenses, and impossible settings."""
    problems = []
    for i, grid in enumerate(config["experiments"]):
        for key, section in (("datasets", "datasets"), ("attacks", "attacks"), ("defenses", "defenses")):
            unknown = [name for name in grid[key] if name not in config[section]]
            if unknown:
                problems.append(f"experiments[{i}].{key} names {unknown}, not defined under '{section}:' "
                                f"(defined: {sorted(config[section])})")
    for name, defense in config["defenses"].items():
        allowed = CERTIFICATES_OF_METHOD.get(defense["method"], ())
        wrong = [c for c in defense.get("certificates", []) if c not in allowed]
        if wrong:
            problems.append(f"defenses.{name}.certificates {wrong} do not apply to method "
                            f"'{defense['method']}' (allowed: {list(allowed)})")
    bilevel_on_smoothing = [e for e in experiments(config) if config["attacks"][e.attack]["type"] == "bilevel_radius"
                            and config["defenses"][e.defense]["method"] == "smoothing"]
    if bilevel_on_smoothing and not any(a["type"] == "none" for a in config["attacks"].values()):
        problems.append("a bilevel_radius attack is evaluated against the clean victim: define an attack of type none")
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "digits" and not dataset.get("n_test"):
            problems.append(f"datasets.{name}: digits has no standard test set, set n_test > 0")
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))
