"""The workflow itself, run with the real Snakemake: lint, dry runs, schema errors, the tiny MNIST chain
(the default config end to end: tests/test_default_run.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

from robustcert import results

CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def test_lint_is_clean(workflow_copy):
    result = snakemake(workflow_copy, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_dry_run_of_every_config_without_data(workflow_copy, config):
    result = snakemake(workflow_copy, "-n", "--configfile", f"config/{config.name}", "--cores", "2",
                       "--resources", "gpu=2", "--", "all")  # all: each config's tables are under its own <results>
    trains = "train_shard" in result.stdout or "train_smoothed" in result.stdout  # imagenet.yaml: smoothing only
    assert trains and "tabulate_results" in result.stdout


def _bad_config(workflow_copy: Path, edit) -> subprocess.CompletedProcess:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    edit(config)
    (workflow_copy / "bad.yaml").write_text(yaml.safe_dump(config))
    return snakemake(workflow_copy, "-n", "--configfile", "bad.yaml", "--cores", "1", check=False)


@pytest.mark.parametrize("edit,named", [
    (lambda c: c["defenses"]["dpa"]["train"].update(epoch=3), "epoch"),
    (lambda c: c["defenses"]["dpa"].update(k="twenty"), "twenty"),
    (lambda c: c["attacks"]["backdoor"].update(fraction=1.5), "1.5"),
    (lambda c: c["experiments"][0]["attacks"].append("missing_attack"), "missing_attack"),
    (lambda c: c["defenses"]["dpa"].update(certificates=["fa"]), "defenses.dpa (dpa.schema.yaml)"),
    (lambda c: c["defenses"]["fa"].update(method="patchwork"), "defenses.fa.method is 'patchwork', which has no schema"),
    (lambda c: c["defenses"]["smoothing"].update(batch_size="automatic"), "automatic"),
])
def test_bad_config_is_one_error_naming_it_before_any_job(workflow_copy, edit, named):
    result = _bad_config(workflow_copy, edit)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (workflow_copy / "results").exists()


def _mnist_run(workdir: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return snakemake(workdir, "--configfile", str(REPO / "tests/configs/tiny_mnist.yaml"),
                     "--config", f"data_root={data_root}", "--cores", "2", "--resources", "gpu=1", *extra,
                     "--", "results/tables/all.tsv")


@pytest.mark.workflow
def test_tiny_mnist_through_the_whole_chain_and_deterministic_after_a_kill(workflow_copy, tiny_mnist):
    _mnist_run(workflow_copy, tiny_mnist)
    table = results.wide(results.read_rows(workflow_copy / "results/tables/all.tsv"))
    assert list(table["attack"]) == ["none", "backdoor"] and set(table["source"]) == {"mnist"}
    assert (table["n_test"] == 100).all() and (table["k"] == 4).all()
    assert table.loc[table.attack == "backdoor", "poison_size"].item() == 2 * round(0.05 * 350)
    assert table["accuracy"].min() > 0.5  # the bars are learnable
    first = (workflow_copy / "results/tables/all.tsv").read_text()

    # Kill the whole run in the middle of training, rerun: it completes with the same numbers.
    (workflow_copy / "results").rename(workflow_copy / "results_first")
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.Popen(
        [str(exe), "--configfile", str(REPO / "tests/configs/tiny_mnist.yaml"), "--config",
         f"data_root={tiny_mnist}", "--cores", "2", "--resources", "gpu=1", "--", "results/tables/all.tsv"],
        cwd=workflow_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "ROBUSTCERT_DEVICE": "cpu"})
    logs = workflow_copy / "results/logs/train_shard"
    deadline = time.time() + 300
    while time.time() < deadline and not (logs.exists() and any(logs.rglob("*.log"))):
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workflow_copy / "results/tables/all.tsv").exists()
    _mnist_run(workflow_copy, tiny_mnist, "--unlock")  # a SIGKILLed Snakemake leaves its lock behind
    _mnist_run(workflow_copy, tiny_mnist)
    assert (workflow_copy / "results/tables/all.tsv").read_text() == first
