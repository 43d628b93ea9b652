"""Shared fixtures: the repository, a Snakemake runner, the runs that tests share, and tiny datasets in
real formats.

How a new test that needs Snakemake results is written (keeps `make test` within its budget):
- Read the results of a run the session already makes: ask for the ``default_run`` fixture (the default
  config, run once) or a module-scoped fixture of your test file (a small config run once for the
  module's tests, as ``tests/test_rerun.py`` and ``tests/test_replicates.py`` do). A new full run per
  test needs a reason written beside it.
- Mark a test that runs Snakemake jobs for real ``@pytest.mark.workflow``: `make test-fast` leaves those
  out (dry runs, ``--lint`` and refusals before any job stay in it).
- Test configs are as small as the code path allows (1–3 epochs, a few test points, tiny models).
- Under pytest-xdist (`make test` runs two workers with ``--dist loadfile``) the tests of one file stay
  on one worker, and so do the files that read the default run (``DEFAULT_RUN_READERS`` below, checked
  at collection), so that every run is made once; ``small_run`` is read by tests/test_rerun.py alone.
  The readers of the default run start first, then the longest files.
- The session ends with a table of the Snakemake runs it started and their wall times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs", "profiles", "report"]
# Every Snakemake call of the session: its wall time, the test and the arguments (one file for all workers).
RUN_LOG = REPO / ".pytest_cache" / "snakemake-runs.tsv"
LOG_OWNER = "ROBUSTCERT_RUN_LOG_OWNER"  # set by the session that started the log
# The test files that take longest (measured), started first; the other files with a real run follow,
# then the unit tests. The SLURM test comes first: it mostly waits on its cluster's polls (and, on a fresh
# machine, on apt), so its worker's idle core goes to the default run, which keeps two busy.
LONGEST_FILES = ("test_slurm.py", "test_dvc.py", "test_core_install.py", "test_rerun.py",
                 "test_claims.py", "test_checked_reads.py")


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 2400,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``snakemake`` of this environment in ``workdir`` (``env``: more environment variables)."""
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "ROBUSTCERT_DEVICE": os.environ.get("ROBUSTCERT_DEVICE", "cpu"), **(env or {})}
    start = time.monotonic()
    result = subprocess.run([str(exe), *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    _log_run(time.monotonic() - start, args)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def _log_run(seconds: float, args: tuple[str, ...]) -> None:
    """Append one Snakemake call to the session's run log."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    kind = "dry" if {"-n", "--dry-run", "--lint"} & set(args) else "run"
    RUN_LOG.parent.mkdir(exist_ok=True)
    with RUN_LOG.open("a") as log:
        log.write(f"{seconds:.1f}\t{kind}\t{test}\t{' '.join(args)[:160]}\n")


def copy_workflow(target: Path) -> Path:
    """``target``, a new folder holding a copy of the workflow (not of results/)."""
    target.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A copy of the workflow (not of results/) in a temporary folder."""
    return copy_workflow(tmp_path / "wf")


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data root with a 400 + 100 image MNIST in torchvision's raw idx format."""
    from formats import write_mnist

    root = tmp_path / "data"
    write_mnist(root)
    return root


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """A copy of the workflow after the README's main job (`make run` on a machine of 2 cores without a
    GPU: the default config to `all`) and its HTML report, run once per test session; tests read it and
    change nothing in it."""
    work = copy_workflow(tmp_path_factory.mktemp("default") / "wf")
    snakemake(work, "--cores", "2", "--resources", "gpu=2", "--", "all")
    snakemake(work, "--report", "results/report.html", "--", "all")
    return work


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A copy of the workflow and of the package (in src/, which its Snakemake imports: run it with
    ``PYTHONPATH=<copy>/src``) whose config/config.yaml is tests/configs/rerun_small.yaml, run to the end
    once per session. tests/test_rerun.py plans edits on it (restoring each) and compares its results
    with a second run from scratch."""
    work = copy_workflow(tmp_path_factory.mktemp("small") / "wf")
    shutil.copytree(REPO / "src/robustcert", work / "src/robustcert", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "tests/configs/rerun_small.yaml", work / "config" / "config.yaml")
    snakemake(work, "--cores", "2", "--", "all", env={"PYTHONPATH": str(work / "src")})
    return work


# ----------------------------------------------------------------- scheduling and the run log

def pytest_configure(config) -> None:
    # the controller (or a run without xdist) starts the log; a pytest that a test starts (the GPU
    # check's CUDA tests) inherits the variable and appends to it
    if not hasattr(config, "workerinput") and not os.environ.get(LOG_OWNER):
        os.environ[LOG_OWNER] = str(os.getpid())
        RUN_LOG.parent.mkdir(exist_ok=True)
        RUN_LOG.write_text("")


# The files whose tests read the session's ``default_run``: `make test` sends them to one worker, which makes
# the run once (a file that reads it and is not listed here is refused at collection).
DEFAULT_RUN_READERS = ("test_default_run.py", "test_detection.py", "test_workflow_patch.py")


def pytest_collection_modifyitems(config, items) -> None:
    """The files that read the default run first, then the longest files, so that the two workers finish
    together (`make test` keeps this order with ``--no-loadscope-reorder``); within a file, collection
    order."""
    readers = {item.path.name for item in items if "default_run" in item.fixturenames}
    if unlisted := sorted(readers - set(DEFAULT_RUN_READERS)):
        raise pytest.UsageError(f"{', '.join(unlisted)} read the default run: add them to DEFAULT_RUN_READERS in "
                                "tests/conftest.py, so that one worker makes the run once")
    slow = {item.path.name for item in items if {"workflow", "core_install"} & {m.name for m in item.iter_markers()}}
    order = {name: rank for rank, name in enumerate((*DEFAULT_RUN_READERS, *LONGEST_FILES))}
    items.sort(key=lambda item: order.get(item.path.name, len(order) if item.path.name in slow else len(order) + 1))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``--dist loadfile`` (`make test`), the files of DEFAULT_RUN_READERS form one unit of work, each
    other file one unit: a run that a file's tests share, and the default run, are each made once."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedRunScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "default_run" if Path(path).name in DEFAULT_RUN_READERS else path

    return SharedRunScheduling(config, log)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The Snakemake calls of the session: how many, their total time, the longest."""
    if hasattr(config, "workerinput") or not RUN_LOG.exists():
        return
    rows = [line.split("\t") for line in RUN_LOG.read_text().splitlines() if line.count("\t") >= 3]
    if not rows:
        return
    runs = [r for r in rows if r[1] == "run"]
    terminalreporter.section("Snakemake calls")
    terminalreporter.write_line(f"{len(runs)} runs ({sum(float(r[0]) for r in runs):.0f} s), "
                                f"{len(rows) - len(runs)} dry runs and lints "
                                f"({sum(float(r[0]) for r in rows if r[1] != 'run'):.0f} s); the longest:")
    for seconds, kind, test, args in sorted(rows, key=lambda r: -float(r[0]))[:15]:
        terminalreporter.write_line(f"{float(seconds):7.1f} s  {kind}  {test}  {args}")
