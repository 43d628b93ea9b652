"""The workflow's view of a config that has passed schema validation.

The schemas under ``config/schemas/`` name, document and default every key: ``config.schema.yaml``
the top level, ``attacks/<type>.schema.yaml`` each attack type and ``defenses/<method>.schema.yaml``
each defense method. This module knows no attack type and no defense method: it finds an entry's
schema by its type or method, checks what a schema cannot (names that refer to each other, values that
make no sense for the dataset they meet, duplicate keys in the YAML files), lays out
the experiment grid, derives every seed from the config's one ``seed``, and makes params canonical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

Config = Mapping[str, Any]
# the config sections whose entries are validated against a schema chosen by one of their keys
ENTRY_KINDS = {"attacks": "type", "defenses": "method"}
# seed s gives streams (s·STRIDE + item) mod 2³²: seed 0 keeps the item's own seed (the references'
# seeds), and every other seed a block of them far from every other seed's (STRIDE is odd and close to
# 2³²/φ, so the first 1 000 seeds' blocks lie at least 1.9 million apart). The seeds fit in 32 bits
# because torch's CPU generator (mt19937) keeps only the low 32 bits of a seed: seed·2³² + item
# gave every replicate seed 0's models.
SEED_STRIDE = 0x9E3779B1
SEED_BITS = 32
# the most bytes the workflow adds to a dataset, attack or defense name in one file name (bilevel_…_objective.png)
NAME_ROOM = 32
# folders of the workflow (relative to its Snakefile) that no results folder may be, lie in or hold
WORKFLOW_FOLDERS = (".git", ".snakemake", ".dvc", "src", "config", "rules", "scripts", "envs", "profiles", "report")


@dataclass(frozen=True)
class Experiment:
    """One dataset × attack × defense cell of the plan, in one replicate (its ``seed``)."""

    dataset: str
    attack: str
    defense: str
    seed: int


def experiments(config: Config) -> list[Experiment]:
    """Every cell of every ``experiments`` grid, once per seed of the grid (its ``seeds``, else the
    config's ``seed``), in config order, without repeats."""
    cells = []
    for grid in config["experiments"]:
        for cell in product(grid["datasets"], grid["attacks"], grid["defenses"], grid_seeds(config, grid)):
            if Experiment(*cell) not in cells:
                cells.append(Experiment(*cell))
    return cells


def grid_seeds(config: Config, grid: Mapping[str, Any]) -> list[int]:
    """The replicates of one grid: its ``seeds``, else the config's one ``seed``."""
    return [int(s) for s in grid.get("seeds", [config["seed"]])]


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
    """Validate a config in place as Snakemake's ``validate`` does (JSON Schema 2020-12, filling defaults):
    the top level, each attack by its type, each defense by its method, then the names that refer to each
    other, the values the datasets make meaningless and the device ($ROBUSTCERT_DEVICE overriding the
    config)."""
    from jsonschema import ValidationError
    from snakemake.exceptions import WorkflowError

    from robustcert.device import effective_spec

    schema_dir = Path(schema_dir)
    try:
        filling_validator(str(schema_dir / "config.schema.yaml")).validate(config)
    except ValidationError as error:
        raise WorkflowError("Error validating config file.", error) from None
    for section, name, schema in entry_schemas(config, schema_dir):
        try:
            filling_validator(str(schema)).validate(config[section][name])
        except ValidationError as error:
            raise ValueError(f"invalid config: {section}.{name} ({schema.name}): "
                             f"{WorkflowError('Error validating config file.', error)}") from None
    check_references(config)
    check_values(config, schema_dir)
    effective_spec(config["device"])  # $ROBUSTCERT_DEVICE, which overrides it, too


@cache
def _schema_file(path: str) -> dict[str, Any]:
    """A schema file, read once per process."""
    import yaml

    with open(path) as file:
        return yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def filling_validator(path: str):
    """A validator of the schema file at ``path`` that fills in the defaults it gives (what Snakemake's
    ``validate`` does, without reading the schema and every file it refers to at each call: a third of a
    dry run's time), its ``$ref``s resolved against the files beside it."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from jsonschema import Draft202012Validator, validators
    from referencing import Registry, Resource

    schema = {**_schema_file(path), "$id": Path(path).resolve().as_uri()}
    registry = Registry(retrieve=lambda uri: Resource.from_contents(_schema_file(url2pathname(urlparse(uri).path))))
    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, property_schema in properties.items():
                if "default" in property_schema:
                    instance.setdefault(name, property_schema["default"])
        yield from check_properties(validator, properties, instance, subschema)

    filling = validators.extend(Draft202012Validator, {"properties": fill_defaults})
    return filling(schema, registry=registry.with_resource(uri=schema["$id"], resource=Resource.from_contents(schema)))


def check_references(config: Config) -> None:
    """Refuse experiment grids that name undefined datasets, attacks or defenses, and datasets without
    a test set that draw none."""
    from robustcert.data import source_of

    problems = []
    for i, grid in enumerate(config["experiments"]):
        for section in ("datasets", "attacks", "defenses"):
            unknown = [name for name in grid[section] if name not in config[section]]
            if unknown:
                problems.append(f"experiments[{i}].{section} names {unknown}, not defined under '{section}:' "
                                f"(defined: {sorted(config[section])})")
    for name, dataset in config["datasets"].items():
        source = source_of(dataset)
        if not source.file_backed and not dataset.get("n_test") and not source.has_test_set(dataset):
            problems.append(f"datasets.{name}: {source.name} has no standard test set, set n_test > 0")
    refuse(problems)


def check_values(config: Config, schema_dir: str | Path) -> None:
    """Refuse values that every schema admits but the datasets they meet make meaningless: held-out
    sets as large as the dataset, class labels (an attack's ``target``/``source``) outside its classes,
    more partitions (a defense's ``k``) than training images, learning-rate milestones beyond the
    epochs. Sizes are the sources' (:func:`robustcert.data.facts_of`), known before the split."""
    from robustcert.data import NUM_CLASSES, facts_of, held_out, planned_train_size, source_of

    problems = file_source_problems(config, schema_dir)
    for name, spec in config["datasets"].items():
        if source_of(spec).file_backed:
            continue  # sizes known once the tree is listed: the split checks them
        pool = facts_of(spec).pool_size
        if held_out(spec) >= pool:
            problems.append(f"datasets.{name}: n_val + n_test = {held_out(spec)} leaves no training image of the "
                            f"{pool} of {spec['source']}")
    for name, defense in config["defenses"].items():
        train = defense.get("train")
        late = [m for m in train.get("milestones", []) if m > train["epochs"]] if isinstance(train, Mapping) else []
        if late:
            problems.append(f"defenses.{name}.train.milestones {late} lie beyond its {train['epochs']} "
                            f"epochs (train.epochs)")
    for cell in experiments(config):
        attack, defense = config["attacks"].get(cell.attack, {}), config["defenses"].get(cell.defense, {})
        if source_of(config["datasets"][cell.dataset]).file_backed:
            continue  # file_source_problems
        classes = config["datasets"][cell.dataset].get("classes")
        labels = f"0..{len(classes) - 1}: its classes {classes} relabelled" if classes else f"0..{NUM_CLASSES - 1}"
        for key in ("target", "source"):
            label = attack.get(key)
            if label is not None and not 0 <= label < (len(classes) if classes else NUM_CLASSES):
                problems.append(f"attacks.{cell.attack}.{key} is {label}, not a class of datasets.{cell.dataset} "
                                f"({labels})")
        n_train = planned_train_size(config["datasets"][cell.dataset])
        if "k" in defense and 0 < n_train < defense["k"]:
            problems.append(f"defenses.{cell.defense}.k is {defense['k']}, more partitions than the {n_train} "
                            f"training images of datasets.{cell.dataset}")
    refuse(list(dict.fromkeys(problems + replicate_problems(config) + name_problems(config))))


def replicate_problems(config: Config) -> list[str]:
    """Replicates of one experiment whose seeds are equal modulo 2³²: :func:`derive_seed` gives them the
    same streams, so they would be the same models counted as two replicates."""
    first: dict[tuple[str, str, str, int], tuple[int, int]] = {}
    problems = []
    for i, grid in enumerate(config["experiments"]):
        for cell in product(grid["datasets"], grid["attacks"], grid["defenses"], grid_seeds(config, grid)):
            seed = cell[3]
            j, other = first.setdefault((*cell[:3], seed % 2**SEED_BITS), (i, seed))
            if other != seed:
                problems.append(f"experiments[{i}].seeds: {seed} and {other} (experiments[{j}]) are equal modulo 2³², "
                                "so every seed derived from them is the same (derive_seed): the same models would be "
                                "counted as two replicates")
    return problems


def name_problems(config: Config) -> list[str]:
    """Names of datasets, attacks and defenses too long to be a file name here: each is a folder or a
    file name of its results (with a prefix or suffix such as ``_clusters.png``)."""
    import os

    try:
        limit = os.pathconf(".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = limit - NAME_ROOM
    return [f"{section}.{name[:40]}…: the name is {len(name.encode())} bytes long; a file name here has at most "
            f"{limit} bytes, and the workflow adds up to {NAME_ROOM} to it, so use at most {longest}"
            for section in ("datasets", "attacks", "defenses") for name in config[section]
            if len(name.encode()) > longest]


def results_folder_problems(config: Config, workflow_dir: str | Path) -> list[str]:
    """A results folder that is, lies in or holds a folder of the workflow itself (git's, Snakemake's,
    DVC's, the package, the configs, the rules, the scripts) or the data root."""
    workflow_dir = Path(workflow_dir).resolve()
    results = (workflow_dir / config["pathvars"]["results"]).resolve()
    kept = {f"the workflow's {name}/": workflow_dir / name for name in WORKFLOW_FOLDERS}
    kept[f"data_root ({config['data_root']})"] = (workflow_dir / config["data_root"]).resolve()
    return [f"pathvars.results is {config['pathvars']['results']!r}, which "
            + ("is" if results == folder else "lies inside" if folder in results.parents else "holds")
            + f" {what}: the workflow would write its results, logs and models among those files"
            for what, folder in kept.items()
            if results == folder or folder in results.parents or results in folder.parents]


def check_results_folder(config: Config, workflow_dir: str | Path) -> None:
    """Refuse a results folder that overlaps a folder of the workflow or the data (:func:`results_folder_problems`)."""
    refuse(results_folder_problems(config, workflow_dir))


def file_source_problems(config: Config, schema_dir: str | Path) -> list[str]:
    """What a dataset entry's source does not admit: keys that only other sources read (each source
    declares its own, robustcert.data.SOURCES); of a file-backed source (ImageNet, robustcert.imagefolder),
    class subsets, a crop larger than the resize, and the attacks and defenses whose schema does not
    declare that they feed on files (``x-feeds: {files: …}``), or keys of theirs it declares
    ``refuses`` (unless the entry sets its ``unless`` key)."""
    from robustcert import imagefolder
    from robustcert.data import SOURCES, source_of

    problems = []
    readers = {key: sorted(s.name for s in SOURCES.values() if key in s.keys)
               for other in SOURCES.values() for key in other.keys}
    for name, spec in config["datasets"].items():
        source = source_of(spec)
        problems += [f"datasets.{name}.{key}: only source {', '.join(readers[key])} reads it, not {source.name}"
                     for key in readers if key in spec and key not in source.keys]
        if source.file_backed and spec.get("classes") is not None:
            problems.append(f"datasets.{name}.classes: a file-backed source ({source.name}) keeps every class")
        resize, crop = imagefolder.transform_sizes(spec)
        if source.file_backed and crop > resize:
            problems.append(f"datasets.{name}: crop {crop} is larger than resize {resize}")
    for cell in experiments(config):
        source = source_of(config["datasets"][cell.dataset])
        if not source.file_backed:
            continue
        where = f"experiments: datasets.{cell.dataset} (source {source.name}, read from its files)"
        for section, name in (("attacks", cell.attack), ("defenses", cell.defense)):
            problems += _feed_problems(where, section, name, config[section][name], Path(schema_dir))
    return problems


def _feed_problems(where: str, section: str, name: str, entry: Mapping[str, Any], schema_dir: Path) -> list[str]:
    """An attack or defense on a file-backed source that its schema does not declare ``x-feeds: files``
    for, or keys set that the declaration refuses."""
    kind = entry[ENTRY_KINDS[section]]
    schema = load_yaml_strictly(schema_dir / section / f"{kind}.schema.yaml")
    files = schema.get("x-feeds", {}).get("files")
    if files is None:
        return [f"{where} does not feed {section}.{name} ({ENTRY_KINDS[section]} {kind!r}: its schema does not "
                "declare x-feeds: files)"]
    if files.get("unless") and entry.get(files["unless"]):
        return []
    found = []
    for dotted in files.get("refuses", []):
        value: Any = entry
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value:
            found.append(f"{where}: {section}.{name}.{dotted} does not apply, {files['because']}")
    return found


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Read each config file again with a loader that refuses duplicate keys (Snakemake's loader lets
    the last one win silently), naming the file and the lines."""
    for path in paths:
        load_yaml_strictly(path)


def load_yaml_strictly(path: str | Path) -> Any:
    """The YAML document at ``path``; a duplicate key or a syntax error is a ValueError naming the file
    and the line."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ValueError(f"invalid config file {where}: {error.problem or error.context}") from None


def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """A SafeLoader that refuses a key repeated in one mapping (merge keys ``<<`` excepted)."""

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first[key] + 1})", key_node.start_mark)
            first[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def refuse(problems: list[str]) -> None:
    """Raise one error listing every problem of the config, if there are any."""
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))


def derive_seed(seed: int, item: int = 0) -> int:
    """The seed of one item (a model, a shard, a partition draw) under the replicate's ``seed``: the
    item itself under seed 0, a 32-bit seed in that seed's own block otherwise (:data:`SEED_STRIDE`)."""
    return (int(seed) * SEED_STRIDE + int(item)) % 2**SEED_BITS


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted (recursively), so that key order is never a rerun trigger."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m robustcert.config FILE…``: read each config file strictly and say where the first
    YAML syntax error or duplicate key is (Snakemake's own "Config file is not valid JSON or YAML"
    names neither the file nor the line)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m robustcert.config", description=main.__doc__)
    parser.add_argument("files", nargs="+", help="config files, e.g. config/config.yaml and your --configfile")
    try:
        for path in parser.parse_args(argv).files:
            load_yaml_strictly(path)
    except (ValueError, OSError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
