# What every stage shares: config validation (the top level, then each attack by its type and each
# defense by its method, defaults filled), wildcard constraints, the generic
# getters, and the two collections that every method file extends after its include:
#   FINAL_OUTPUT  the plots and tables of the default target
#   RESULT_ROWS   {table name: the row files of results/tables/<name>.tsv and all.tsv}
# and code_of, which every rule with a script uses. This file names no method and no attack type.
#
# The code of a step: every rule that runs a script carries, as its first param, the digest of the
# script and of exactly the robustcert code that script runs (robustcert.fingerprint):
#
#     params:
#         code=code_of("scripts/<step>.py"),   # the rule's own script, as in its script: line
#
# Snakemake records it with the outputs, and its params trigger reruns a job when, and only when, the
# code its step reaches changes — not for comments or docstrings (tests/test_fingerprint.py checks
# that every rule has the line). The scripts ignore it.

from pathlib import Path

from robustcert.config import check_config_files, check_results_folder, validate_config
from robustcert.fingerprint import code_of as fingerprint_of
from robustcert.sharing import PROG as SHARING, TouchLedger, unrestored
from robustcert.workflow.common import OVERVIEW, report_category
from robustcert.workflow.split import split_of


check_config_files(workflow.configfiles)
validate_config(config, Path(workflow.basedir) / "config/schemas")
check_results_folder(config, workflow.basedir)
PULLED_WITHOUT_RECORDS = unrestored(config["pathvars"]["results"])
if PULLED_WITHOUT_RECORDS:
    # Results checked out by a plain `dvc pull`: without their Snakemake records a change of config or
    # code would go unseen, and their checkout-time dates would retrain what is up to date.
    raise WorkflowError(f"{', '.join(PULLED_WITHOUT_RECORDS)}: these results were pulled without Snakemake's records "
                        f"of them. Run `make pull` (`{SHARING} pull`), not a plain `dvc pull`, then snakemake.")

# `snakemake --touch` records the current params for outputs made with others; `make push` judges them
# by the records of the runs that made them (robustcert.sharing.TouchLedger; other runs: no-ops).
TOUCHES = TouchLedger(config["pathvars"]["results"], lambda: workflow.touch)
workflow.onstart(TOUCHES.start)
workflow.onsuccess(TOUCHES.record)
workflow.onerror(TOUCHES.record)

FINAL_OUTPUT = ["<results>/tables/all.tsv"]
RESULT_ROWS = {}


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    attack="[A-Za-z0-9_-]+",
    defense="[A-Za-z0-9_-]+",
    seed=r"\d+",
    certificate="[a-z_]+",
    shard=r"\d+",
    sigma=r"[0-9.]+(e-?[0-9]+)?",
    algorithm="certify|predict",


def code_of(script):
    """The digest of a script (relative to the workflow's folder) and of the package code it runs."""
    return fingerprint_of(Path(workflow.basedir) / script)


def get_final_output():
    """Everything the default target makes: the results tables and the plots every method registered."""
    return FINAL_OUTPUT


def get_result_rows(wildcards):
    """The row files of every result (for all.tsv) or of one method (for its wide table)."""
    method = getattr(wildcards, "method", None)
    return [path for name, rows in RESULT_ROWS.items() if method in (None, name) for path in rows]


def get_split(wildcards):
    """The split that a job of one replicate reads (robustcert.workflow.split.split_of)."""
    return split_of(config, wildcards.dataset, wildcards.seed)


def get_seed(wildcards):
    """The seed of the replicate a job belongs to (the path's seed_<n>)."""
    return int(wildcards.seed)


def get_sigma(wildcards):
    return float(wildcards.sigma)


def get_report_category(wildcards):
    """The report's category of a method's tables: the method's own, beside its figures."""
    return report_category(wildcards.method)
