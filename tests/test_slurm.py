"""The workflow on a real SLURM cluster, through profiles/slurm and the SLURM executor plugin.

The cluster is a single node started on this machine by tests/slurm/start_cluster.sh (root
only; it installs Debian's slurmctld/slurmd/munge if missing and declares two fake GPUs). The
test is opt-in, since it installs packages and writes /etc/slurm: it runs when
ROBUSTCERT_SLURM_TESTS=1 or when pytest is asked for the marker (``pytest -m slurm``).
Where the cluster cannot be started it is skipped with the script's reason; with
ROBUSTCERT_REQUIRE_SLURM=1 (CI on a machine that can run it) that is a failure instead.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import snakemake

REPO = Path(__file__).resolve().parents[1]
START = REPO / "tests" / "slurm" / "start_cluster.sh"
STOP = REPO / "tests" / "slurm" / "stop_cluster.sh"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TEST_CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
GPU_RULES = ("train_shard", "score_ensemble")
WORKFLOW_TIMEOUT_S = 420


def _job_resources(dry_run: str) -> dict[str, str]:
    """rule name -> the resources line of its jobs, from a dry run's job blocks."""
    blocks = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?:\n\n|\Z)", dry_run, flags=re.M | re.S)
    return {rule: (re.search(r"resources: (.*)", body) or [None, ""])[1] for rule, body in blocks}


# ----------------------------------------------------------------------------- the profile (no cluster needed)


def test_profile_names_no_rule_and_every_gpu_rule_declares_its_resources(workflow_copy):
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["rerun-incomplete"] is True
    assert not {"set-resources", "set-threads"} & set(profile), "profiles/slurm names rules"
    dry = snakemake(workflow_copy, "-n", "--cores", "2", "--resources", "gpu=2", "--", "all").stdout
    resources = _job_resources(dry)
    gpu_rules = {rule for rule, line in resources.items() if "gpu=1" in line}
    assert set(GPU_RULES) <= gpu_rules and {"train_smoothed", "poison_bilevel_radius"} <= gpu_rules, resources
    for rule in gpu_rules:
        assert re.search(r"\bmem_mb=\d+", resources[rule]) and re.search(r"\bruntime=\d+", resources[rule]), rule
    assert not any({"slurm_partition", "slurm_account"} & set(r) for r in [profile.get("default-resources", {})])


# ----------------------------------------------------------------------------- the cluster


def _enabled(config: pytest.Config) -> bool:
    if os.environ.get("ROBUSTCERT_SLURM_TESTS") == "1" or os.environ.get("ROBUSTCERT_REQUIRE_SLURM") == "1":
        return True
    markexpr = config.getoption("markexpr", default="") or ""
    return re.search(r"(?<!not )\bslurm\b", markexpr) is not None


def _cannot(reason: str) -> None:
    if os.environ.get("ROBUSTCERT_REQUIRE_SLURM") == "1":
        pytest.fail(f"ROBUSTCERT_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster(request):
    if not _enabled(request.config):
        pytest.skip("SLURM cluster test is opt-in (installs packages, writes /etc/slurm): "
                    "set ROBUSTCERT_SLURM_TESTS=1 or run `pytest -m slurm`")
    if sys.platform != "linux":
        _cannot("a local SLURM cluster needs Linux")
    try:
        started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        _cannot("tests/slurm/start_cluster.sh did not finish within 420 s")
    out = started.stdout + started.stderr
    if started.returncode != 0:
        reason = next((line for line in out.splitlines() if line.startswith(("SKIP:", "FAIL:"))), out.strip()[-500:])
        _cannot(f"the SLURM cluster could not be started: {reason}\n{out[-3000:]}")
    print(out.strip())
    was_running = "already running" in out
    yield out
    if not was_running:
        subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)


def _copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "results", ".snakemake", "data", "logs", "__pycache__", ".pytest_cache", "*.egg-info"
    )
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def _clean_env(tmp: Path, work: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SNAKEMAKE_", "ROBUSTCERT_", "CUDA_"))
    }
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    env["PYTHONPATH"] = str(work / "src")  # the jobs import the copy's package
    env["ROBUSTCERT_GPU_LOCK_DIR"] = str(tmp / "gpu-locks")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


DEVICE_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ robustcert\.device: .*?"
    r"CUDA_VISIBLE_DEVICES(?:=| ')(?P<ids>[^'\s)]*)",
    re.M,
)


def _gpu_job_devices(results: Path) -> list[tuple[str, str, dt.datetime, dt.datetime]]:
    """(log, device id, start, end) of every GPU job.

    The id and the start come from the line select_device() logs; the end is when Snakemake
    wrote the job's benchmark file (the log itself is quiet while a model trains).
    """
    jobs = []
    for rule in GPU_RULES:
        for log in sorted((results / "logs" / rule).rglob("*.log")):
            text = log.read_text()
            match = DEVICE_LINE.search(text)
            assert match, f"{log} does not say which device the job got:\n{text[-2000:]}"
            start = dt.datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S")
            bench = results / "benchmarks" / log.relative_to(results / "logs").with_suffix(".tsv")
            end = dt.datetime.fromtimestamp((bench if bench.exists() else log).stat().st_mtime)
            jobs.append((str(log.relative_to(results)), match["ids"], start, end))
    return jobs


def _snakemake_on_slurm(work: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    """Run the test config through profiles/slurm on the test cluster: (exit status, output)."""
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(snakemake),
        "--workflow-profile", "profiles/slurm",
        "--configfile", str(TEST_CONFIG.relative_to(REPO)),
        # no accounting database on the test cluster: poll squeue (its MinJobAge is 300 s)
        "--slurm-status-command", "squeue",
        # poll every 20 s: the plugin adds 10 s after each poll that finds nothing finished and
        # a job here takes 10-20 s (two Snakemake start-ups and the script), so polling sooner
        # mostly means waiting for the second poll, 30+ s later
        "--slurm-init-seconds-before-status-checks", "20",
        "--seconds-between-status-checks", "20",
        "--slurm-keep-successful-logs",
        # the test node's CPUs are declared, not real (2 cores here): tests/configs/slurm.yaml has threads: 1
        "--latency-wait", "10",
        *extra,
        "--", "results/tables/all.tsv",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=work, env=_clean_env(tmp_path, work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=WORKFLOW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # Snakemake cancels its SLURM jobs on SIGINT
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(f"the workflow did not finish within {WORKFLOW_TIMEOUT_S} s:\n{output[-6000:]}")
    return proc.returncode, output


@pytest.mark.slurm
@pytest.mark.workflow
def test_a_job_asking_for_more_gpus_than_the_cluster_has_fails_with_slurms_reason(slurm_cluster, tmp_path):
    """The first job asks for 3 GPUs of a cluster with 2: sbatch refuses it, and Snakemake stops with
    SLURM's reason and the rule's name before anything runs."""
    work = _copy_repo(tmp_path / "repo")
    returncode, output = _snakemake_on_slurm(work, tmp_path, "--set-resources", "split_dataset:gpu=3")
    assert returncode != 0, output[-3000:]
    assert "Requested node configuration is not available" in output, output[-3000:]
    assert "split_dataset" in output
    assert not list((work / "results").rglob("split.npz")), "a job ran although its submission failed"


@pytest.mark.slurm
@pytest.mark.workflow
def test_workflow_runs_through_slurm_with_distinct_gpus(slurm_cluster, tmp_path):
    work = _copy_repo(tmp_path / "repo")
    returncode, output = _snakemake_on_slurm(work, tmp_path)

    slurm_logs = "\n".join(
        f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    )
    assert returncode == 0, f"snakemake failed:\n{output[-6000:]}\n{slurm_logs[-6000:]}"
    assert "SLURM run ID" in output and "submitted with SLURM jobid" in output, "the jobs did not go through SLURM"

    table = work / "results" / "tables" / "all.tsv"
    assert table.exists()
    lines = table.read_text().splitlines()
    assert len(lines) >= 2 and "\t" in lines[0], lines

    jobs = _gpu_job_devices(work / "results")
    n_train = sum(1 for log, *_ in jobs if log.startswith("logs/train_shard"))
    assert n_train == 2 and len(jobs) == 3, jobs
    assert all(ids in {"0", "1"} for _, ids, _, _ in jobs), jobs  # one of the two GPUs, never both
    assert {ids for _, ids, _, _ in jobs} == {"0", "1"}, jobs
    overlapping = [
        (a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:] if a[2] <= b[3] and b[2] <= a[3]
    ]  # fmt: skip
    assert overlapping, f"no two GPU jobs ran at the same time, so nothing was shown: {jobs}"
    for a, b in overlapping:
        assert a[1] != b[1], f"{a[0]} and {b[0]} ran at the same time on the same GPU {a[1]}"
