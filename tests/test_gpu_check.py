"""The GPU check (benchmarks/gpu_check.sh) rehearsed on the CPU at toy sizes, so that it cannot rot while
no GPU is lent; and its projection of the paper configs' GPU-hours."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustcert.config import experiments

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402

STATUSES = {"ok", "timeout", "skipped", "no time left"}  # a timeout is a busy machine; "failed" is rot


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one CPU smoke run of the whole check."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("ROBUSTCERT_DEVICE", None)
    subprocess.run([str(REPO / "benchmarks/gpu_check.sh"), "--cpu-smoke", str(out)], env=env, check=True,
                   timeout=gpu_check.MODES["cpu-smoke"]["budget"] + 300)
    return out


@pytest.mark.workflow
def test_cpu_smoke_writes_a_row_with_status_and_seconds_per_step_and_a_log(smoke: Path) -> None:
    with (smoke / "gpu_check.tsv").open() as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    assert list(rows[0]) == gpu_check.COLUMNS
    assert list(gpu_check.STEPS) == list(dict.fromkeys(row["step"] for row in rows))
    for row in rows:
        assert row["status"] in STATUSES, f"{row['step']}: {row['status']} (see {smoke / 'gpu_check.log'})"
        assert math.isfinite(float(row["seconds"]))
    ran = {row["step"] for row in rows if row["status"] != "no time left"}
    log = (smoke / "gpu_check.log").read_text()
    assert ran and all(f"===== {step}: " in log for step in ran)


@pytest.mark.workflow
def test_cpu_smoke_measures_the_certify_rate_and_projects_with_it(smoke: Path) -> None:
    with (smoke / "gpu_check.tsv").open() as table:
        figures = {(row["step"], row["metric"]): row for row in csv.DictReader(table, delimiter="\t")}
    if figures[("certify", "rate.certify.lenet.fp32")]["status"] != "ok":
        pytest.skip("the certify step did not finish in time on this machine")
    rate = float(figures[("certify", "rate.certify.lenet.fp32")]["value"])
    assert rate > 0
    mnist = float(figures[("projection", "mnist.smoothing.certification")]["value"])
    assert mnist > 0 and "rate.certify.lenet.fp32" in figures[("projection", "mnist.smoothing.certification")]["note"]


def test_projection_counts_epochs_images_and_experiments_of_the_config() -> None:
    config = gpu_check.load_config(REPO / "config/cifar10.yaml")
    parts, unmeasured = gpu_check.project(config, {"rate.train.nin": (1000.0, "given")})
    hours = {metric: value for metric, value, _ in parts}
    dpa = config["defenses"]["dpa_50"]
    cells = [cell for cell in experiments(config) if cell.defense == "dpa_50"]
    images = sum(gpu_check.training_images(config["datasets"][cell.dataset]) for cell in cells)
    assert hours["dpa_50.training"] == pytest.approx(dpa["train"]["epochs"] * images / 1000 / 3600)
    fa = config["defenses"]["fa_50_16"]
    assert hours["fa_50_16.training"] == pytest.approx(
        fa["train"]["epochs"] * fa["d"] * gpu_check.training_images(config["datasets"]["cifar10"]) / 1000 / 3600)
    assert hours["smoothing.certification"] is None  # no rate given
    assert any(name.startswith("robust ") for name in unmeasured)
