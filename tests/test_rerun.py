"""An edit of the config or of the package's code reruns exactly what it changes: real Snakemake runs a
small config to the end on a copy of the workflow and of the package, then each edit is planned with
`snakemake -n` on the up-to-date results: which jobs it plans, and which of them it plans because their
params changed (the dry run's reasons; `--list-changes params` of Snakemake 9.27.1 lists every output
with recorded params, changed or not). The package's code reaches Snakemake as the ``code`` param of
every rule (robustcert.fingerprint).

Same config, same bytes: the session's small run (on 2 cores) and a second run from scratch (on 1 core)
in another copy write byte-identical results (every file under results/ but the logs and the
benchmarks, which hold times), so that DVC sees an unchanged rerun as unchanged. Both read the one small
run, which `make test`'s workers make once (tests/conftest.py)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_workflow, snakemake

from robustcert import results

pytestmark = pytest.mark.workflow
TABLES = {"tabulate_results", "tabulate_method", "export_backdoorbench", "render_backdoorbench",
          "plot_headline", "all"}
SMOOTHING_AFTER_TRAINING = {"certify_smoothed", "predict_smoothed", "gather_smoothed", "summarize_smoothing",
                            "analyze_smoothing", "plot_smoothing_radius"}
BILEVEL_EVALUATION = {"evaluate_bilevel_radius", "tabulate_bilevel_transfer"}  # its rows, and their matrix


@pytest.fixture(scope="module")
def up_to_date(small_run) -> Path:
    """The session's small run (conftest.small_run): a copy of the workflow and of the package whose
    config/config.yaml is the small config, run to the end. Each test restores what it edits."""
    return small_run


def run(work: Path, *args: str):
    """Snakemake in the copy, with the copy's package."""
    return snakemake(work, *args, env={"PYTHONPATH": str(work / "src")})


def dry_run(work: Path) -> tuple[dict[str, int], list[str]]:
    """The jobs `snakemake -n` plans, and the outputs it plans because their params changed."""
    dry = run(work, "-n", "--cores", "2", "--", "all")
    return job_stats(dry.stdout), params_changed(dry.stdout)


def planned(work: Path, edit: Callable[[dict], None]) -> tuple[dict[str, int], list[str]]:
    """The jobs `snakemake -n` plans after an edit of the config, and the outputs it plans because
    their params changed."""
    path = work / "config" / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        return dry_run(work)
    finally:
        path.write_text(original)


def planned_after_code_edit(work: Path, module: str, old: str, new: str) -> tuple[dict[str, int], list[str]]:
    """The same after replacing ``old`` (once) by ``new`` in a module of the copy's package."""
    path = work / "src/robustcert" / module
    original = path.read_text()
    assert original.count(old) == 1, f"{old!r} not once in {module}"
    path.write_text(original.replace(old, new))
    try:
        return dry_run(work)
    finally:
        path.write_text(original)


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
    rows = results.read_rows(up_to_date / "results/tables/all.tsv")
    assert ("bilevel", "dpa") in set(zip(rows["attack"], rows["method"]))  # the bilevel poisons also go through DPA


def test_dropping_a_certificate_retrains_nothing(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["defenses"]["dpa"].update(certificates=["dpa"]))
    assert set(jobs) == {"plot_poison_budget", *TABLES}, jobs
    assert changed == ["results/plots/digits/poison_budget.pdf", "results/plots/digits/poison_budget.png"]  # legend


def test_more_monte_carlo_samples_recertify_without_retraining(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["defenses"]["smoothing"].update(n=20000))
    assert set(jobs) == SMOOTHING_AFTER_TRAINING | BILEVEL_EVALUATION | TABLES, jobs
    assert jobs["certify_smoothed"] == jobs["predict_smoothed"] == 2 * 2  # 2 attacks × 2 shards
    assert len(changed) == 2 * 2 * 2 + 1, changed  # CERTIFY and PREDICT shards, and the bilevel evaluation
    assert all(re.search(r"/(certify|predict)/shard_\d+\.tsv$|bilevel_sigma", p) for p in changed), changed


def test_other_shards_of_test_points_recertify_without_retraining(up_to_date):
    jobs, _ = planned(up_to_date, lambda c: c["defenses"]["smoothing"].update(points_per_job=20))
    assert set(jobs) == SMOOTHING_AFTER_TRAINING | TABLES, jobs
    assert jobs["certify_smoothed"] == 2  # one shard of 10 points per attack now


def test_another_evaluation_reruns_the_evaluation_not_the_attack(up_to_date):
    jobs, changed = planned(up_to_date, lambda c: c["attacks"]["bilevel"]["evaluation"].update(n_points=30))
    assert set(jobs) == BILEVEL_EVALUATION | TABLES, jobs
    assert changed == ["results/tables/rows/digits/seed_0/bilevel/smoothing/bilevel_sigma_0.25.tsv"]


def test_the_same_config_with_its_keys_in_another_order_plans_nothing(up_to_date):
    def reorder(config: dict) -> None:
        reordered = reversed_keys(config)
        config.clear()
        config.update(reordered)

    assert planned(up_to_date, reorder) == ({}, [])


# ------------------------------------------------------------------ edits of the package's code


def test_a_training_change_retrains_and_reruns_what_follows_not_the_split_or_the_poisons(up_to_date):
    jobs, changed = planned_after_code_edit(up_to_date, "train.py", "return self.lr * self.gamma",
                                            "return 1.0 * self.lr * self.gamma")
    assert jobs["train_shard"] == 2 * 2 and jobs["train_smoothed"] == 2, jobs  # 2 attacks × 2 shards; × σ
    assert {"score_ensemble", "certify_ensemble", "summarize_certificates", "certify_smoothed", *TABLES} <= set(jobs)
    assert not {"split_dataset", "poison_training_set"} & set(jobs), jobs
    # the bilevel attack trains its victims with the training code: it reruns, and so do the partition
    # and the budget of its poisons (not those of the clean data)
    assert jobs["poison_bilevel_radius"] == jobs["partition_training_set"] == jobs["summarize_attack"] == 1, jobs
    # The trained models themselves are planned because their code changed; what follows, for its input.
    assert [p for p in changed if p.startswith("results/models/")] and \
        not [p for p in changed if p.startswith(("results/data/", "results/partition/"))], changed
    assert {p for p in changed if p.startswith("results/poison/")} == {
        "results/poison/digits/seed_0/bilevel.npz", "results/poison/digits/seed_0/bilevel.objective.tsv"}, changed


def test_a_plotting_change_replots_only(up_to_date):
    jobs, changed = planned_after_code_edit(up_to_date, "plot.py", "largest = max((int(c.frame", "largest = 0 + max((int(c.frame")
    assert jobs == {"plot_poison_budget": 1, "all": 1}, jobs
    assert changed == ["results/plots/digits/poison_budget.pdf", "results/plots/digits/poison_budget.png"]


def test_comments_and_docstrings_change_nothing(up_to_date):
    assert planned_after_code_edit(up_to_date, "train.py", '"""The training recipe (',
                                   '# a comment\n\n    """The training recipe, edited (') == ({}, [])


def test_list_changes_params_names_the_changed_outputs_rules(up_to_date):
    """`--list-changes params` lists outputs; `--summary` names their rules: those of the code edit."""
    path = up_to_date / "src/robustcert/plot.py"
    original = path.read_text()
    path.write_text(original.replace("largest = max((int(c.frame", "largest = 0 + max((int(c.frame"))
    try:
        listed = set(run(up_to_date, "--list-changes", "params", "--cores", "1").stdout.split())
        summary = run(up_to_date, "--summary", "--cores", "1").stdout
    finally:
        path.write_text(original)
    # --summary's columns: output_file, date, rule, log-file(s), status, plan
    rows = [line.split("\t") for line in summary.splitlines()[1:] if line.count("\t") >= 5]
    pending = {rule for _, _, rule, _, _, plan in (row[:6] for row in rows) if plan == "update pending"}
    assert pending == {"plot_poison_budget"}, pending
    assert {"results/plots/digits/poison_budget.png", "results/plots/digits/poison_budget.pdf"} <= listed


# ----------------------------------------------------------------- same config, same bytes

# a small complete config with most kinds of result file: split, poisoned set (bilevel), partitions,
# ensemble checkpoints, score matrices, smoothing models and certificate shards, row files, all.tsv and
# the wide tables, plots (PNG and PDF)
CONFIG = REPO / "tests/configs/rerun_small.yaml"
TIMED = ("logs", "benchmarks")


def _results(workdir: Path) -> dict[str, bytes]:
    results = workdir / "results"
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*"))
            if path.is_file() and path.relative_to(results).parts[0] not in TIMED}


def test_the_same_config_run_twice_from_scratch_gives_the_same_bytes(small_run, tmp_path):
    workdir = copy_workflow(tmp_path / "second")
    shutil.copy2(CONFIG, workdir / "config" / "config.yaml")
    snakemake(workdir, "--cores", "1", "--", "all")
    first, second = _results(small_run), _results(workdir)
    assert sorted(first) == sorted(second)
    assert any(name.endswith(".pt") for name in first) and any(name.endswith(".png") for name in first)
    assert "tables/all.tsv" in first and any(name.endswith(".pdf") for name in first)
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, f"{len(differ)} of {len(first)} result files differ between the runs: {differ}"
