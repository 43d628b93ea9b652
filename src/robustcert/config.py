"""The workflow's view of a config that has passed schema validation.

The schemas under ``config/schemas/`` name, document and default every key: ``config.schema.yaml``
the top level, ``attacks/<type>.schema.yaml`` each attack type and ``defenses/<method>.schema.yaml``
each defense method. This module knows no attack type and no defense method: it finds an entry's
schema by its type or method, checks what a schema cannot (names that refer to each other), lays out
the experiment grid, derives every seed from the config's one ``seed``, and makes params canonical.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

Config = Mapping[str, Any]
# the config sections whose entries are validated against a schema chosen by one of their keys
ENTRY_KINDS = {"attacks": "type", "defenses": "method"}
# seed s gives streams s·STRIDE + item: seed 0 keeps the item's own seed (the references' seeds),
# and every other seed a disjoint block of them, so that `seed: 1` is a true replicate
SEED_STRIDE = 2**32


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


def entry_schemas(config: Config, schema_dir: str | Path) -> Iterator[tuple[str, str, Path]]:
    """(section, entry name, schema file) for every attack and defense entry.

    An entry's schema is ``<schema_dir>/<section>/<its type or method>.schema.yaml``; a type or
    method without one is refused, naming those that exist.
    """
    schema_dir = Path(schema_dir)
    for section, key in ENTRY_KINDS.items():
        known = sorted(p.name.removesuffix(".schema.yaml") for p in (schema_dir / section).glob("*.schema.yaml"))
        for name, entry in config[section].items():
            path = schema_dir / section / f"{entry[key]}.schema.yaml"
            if not path.exists():
                raise ValueError(f"invalid config: {section}.{name}.{key} is {entry[key]!r}, which has no schema "
                                 f"(known: {known})")
            yield section, name, path


def validate_config(config: dict[str, Any], schema_dir: str | Path) -> None:
    """Validate a config in place with Snakemake's validator, filling defaults: the top level, each
    attack by its type, each defense by its method, then the names that refer to each other."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema_dir = Path(schema_dir)
    validate(config, schema=str(schema_dir / "config.schema.yaml"))
    for section, name, schema in entry_schemas(config, schema_dir):
        try:
            validate(config[section][name], schema=str(schema))
        except WorkflowError as error:
            raise ValueError(f"invalid config: {section}.{name} ({schema.name}): {error}") from None
    check_references(config)


def check_references(config: Config) -> None:
    """Refuse experiment grids that name undefined datasets, attacks or defenses."""
    problems = []
    for i, grid in enumerate(config["experiments"]):
        for section in ("datasets", "attacks", "defenses"):
            unknown = [name for name in grid[section] if name not in config[section]]
            if unknown:
                problems.append(f"experiments[{i}].{section} names {unknown}, not defined under '{section}:' "
                                f"(defined: {sorted(config[section])})")
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "digits" and not dataset.get("n_test"):
            problems.append(f"datasets.{name}: digits has no standard test set, set n_test > 0")
    refuse(problems)


def refuse(problems: list[str]) -> None:
    """Raise one error listing every problem of the config, if there are any."""
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))


def derive_seed(seed: int, item: int = 0) -> int:
    """The seed of one item (a model, a shard, a partition draw) under the config's ``seed``."""
    return int(seed) * SEED_STRIDE + int(item)


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted (recursively), so that key order is never a rerun trigger."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value
