# What every stage shares: config validation (the top level, then each attack by its type and each
# defense by its method, defaults filled), wildcard constraints, the generic
# getters, and the two collections that every method file extends after its include:
#   FINAL_OUTPUT  the plots and tables of the default target
#   RESULT_ROWS   {table name: the row files of results/tables/<name>.tsv and all.tsv}
# This file names no method and no attack type.

from pathlib import Path

from robustcert.config import check_config_files, validate_config


check_config_files(workflow.configfiles)
validate_config(config, Path(workflow.basedir) / "config/schemas")

FINAL_OUTPUT = ["results/tables/all.tsv"]
RESULT_ROWS = {}


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    attack="[A-Za-z0-9_-]+",
    defense="[A-Za-z0-9_-]+",
    certificate="[a-z_]+",
    shard=r"\d+",
    sigma=r"[0-9.]+(e-?[0-9]+)?",
    algorithm="certify|predict",


def get_final_output():
    """Everything the default target makes: the results tables and the plots every method registered."""
    return FINAL_OUTPUT


def get_result_rows(wildcards):
    """The row files of every result (for all.tsv) or of one method (for its wide table)."""
    method = getattr(wildcards, "method", None)
    return [path for name, rows in RESULT_ROWS.items() if method in (None, name) for path in rows]


def get_sigma(wildcards):
    return float(wildcards.sigma)
