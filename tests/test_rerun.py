"""An edit of the config reruns exactly what it changes: real Snakemake runs a small config to the end,
then each edit is planned with `snakemake -n` on the up-to-date results: which jobs it plans, and which
of them it plans because their params changed (the dry run's reasons; `--list-changes params` of
Snakemake 9.27.1 lists every output with recorded params, changed or not)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO, WORKFLOW_FILES, snakemake

pytestmark = pytest.mark.workflow
CONFIG = REPO / "tests" / "configs" / "rerun_small.yaml"
TABLES = {"tabulate_results", "tabulate_method", "export_backdoorbench", "plot_headline", "all"}
SMOOTHING_AFTER_TRAINING = {"certify_smoothed", "predict_smoothed", "gather_smoothed", "summarize_smoothing",
                            "analyze_smoothing"}


@pytest.fixture(scope="module")
def up_to_date(tmp_path_factory) -> Path:
    """A copy of the workflow whose config/config.yaml is the small config, run to the end."""
    work = tmp_path_factory.mktemp("rerun") / "wf"
    work.mkdir()
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, work / name)
    shutil.copy2(CONFIG, work / "config" / "config.yaml")
    snakemake(work, "--cores", "2", "--", "all")
    return work


def planned(work: Path, edit: Callable[[dict], None]) -> tuple[dict[str, int], list[str]]:
    """The jobs `snakemake -n` plans after an edit, and the outputs it plans because their params changed."""
    path = work / "config" / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        dry = snakemake(work, "-n", "--cores", "2", "--", "all")
    finally:
        path.write_text(original)
    return job_stats(dry.stdout), params_changed(dry.stdout)


def job_stats(output: str) -> dict[str, int]:
    """{rule: jobs} from the 'Job stats' table of a dry run ({} when nothing is to be done)."""
    if "Job stats:" not in output:
        assert "Nothing to be done" in output, output[-3000:]
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


def params_changed(output: str) -> list[str]:
    """The outputs of the planned jobs whose reason is a change of params."""
    blocks = [b for b in output.split("\n\n") if "reason:" in b and "Params have changed" in b]
    return sorted(path for b in blocks for path in re.search(r"output: (.*)", b).group(1).split(", "))


def reversed_keys(value):
    """Every mapping with its keys in reverse order (lists as they are)."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


def test_the_results_are_up_to_date(up_to_date):
    assert planned(up_to_date, lambda config: None) == ({}, [])


def test_dropping_a_certificate_retrains_nothing(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["defenses"]["dpa"].update(certificates=["dpa"]))
    assert set(jobs) == {"plot_poison_budget", *TABLES}, jobs
    assert changed == ["results/plots/digits/poison_budget.pdf", "results/plots/digits/poison_budget.png"]  # legend


def test_more_monte_carlo_samples_recertify_without_retraining(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["defenses"]["smoothing"].update(n=20000))
    assert set(jobs) == SMOOTHING_AFTER_TRAINING | {"evaluate_bilevel_radius"} | TABLES, jobs
    assert jobs["certify_smoothed"] == jobs["predict_smoothed"] == 2 * 2  # 2 attacks × 2 shards
    assert len(changed) == 2 * 2 * 2 + 1, changed  # CERTIFY and PREDICT shards, and the bilevel evaluation
    assert all(re.search(r"/(certify|predict)/shard_\d+\.tsv$|bilevel_sigma", p) for p in changed), changed


def test_other_shards_of_test_points_recertify_without_retraining(up_to_date):
    jobs, _ = planned(up_to_date, lambda c: c["defenses"]["smoothing"].update(points_per_job=20))
    assert set(jobs) == SMOOTHING_AFTER_TRAINING | TABLES, jobs
    assert jobs["certify_smoothed"] == 2  # one shard of 10 points per attack now


def test_another_evaluation_reruns_the_evaluation_not_the_attack(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["attacks"]["bilevel"]["evaluation"].update(n_points=30))
    assert set(jobs) == {"evaluate_bilevel_radius", *TABLES}, jobs
    assert changed == ["results/tables/rows/digits/bilevel/smoothing/bilevel_sigma_0.25.tsv"]


def test_the_same_config_with_its_keys_in_another_order_plans_nothing(up_to_date):
    def reorder(config: dict) -> None:
        reordered = reversed_keys(config)
        config.clear()
        config.update(reordered)

    assert planned(up_to_date, reorder) == ({}, [])
