"""Same config, same bytes: two from-scratch runs in two copies of the workflow (the session's
``small_run`` on 2 cores, and one more on 1 core) write byte-identical results (every file under
results/ but the logs and the benchmarks, which hold times), so that DVC sees an unchanged rerun as
unchanged, whatever the number of cores."""

from __future__ import annotations

from pathlib import Path

import shutil

import pytest
from conftest import REPO, copy_workflow, snakemake

# a small complete config with most kinds of result file: split, poisoned set (bilevel), partitions,
# ensemble checkpoints, score matrices, smoothing models and certificate shards, row files, all.tsv and
# the wide tables, plots (PNG and PDF)
CONFIG = REPO / "tests/configs/rerun_small.yaml"
TIMED = ("logs", "benchmarks")


def _results(workdir: Path) -> dict[str, bytes]:
    results = workdir / "results"
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*"))
            if path.is_file() and path.relative_to(results).parts[0] not in TIMED}


@pytest.mark.workflow
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
