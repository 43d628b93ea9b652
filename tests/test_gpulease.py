"""GPU leases (robustcert.gpulease, robustcert.device) with real processes and fake device ids.

No GPU is needed: the devices are ids in CUDA_VISIBLE_DEVICES, the leases are real flocks
taken by real child processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from robustcert import gpulease
from robustcert.gpulease import (
    GpuLeaseError,
    GpuLeaseTimeout,
    acquire_gpu_lease,
    parse_visible_devices,
    visible_gpus,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A child that leases a GPU, reports it as one JSON line, then holds the lease until its stdin
# closes (or it is killed).
HOLDER = textwrap.dedent(
    """
    import json, os, sys
    from robustcert.gpulease import acquire_gpu_lease, GpuLeaseError
    lock_dir, timeout = sys.argv[1], float(sys.argv[2])
    try:
        lease = acquire_gpu_lease(lock_dir, timeout_s=timeout, poll_s=0.05)
    except GpuLeaseError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}), flush=True)
        sys.exit(3)
    print(json.dumps({"pid": os.getpid(), "device": lease.device_id, "slot": lease.slot,
                      "env": os.environ["CUDA_VISIBLE_DEVICES"]}), flush=True)
    sys.stdin.read()
    """
)

# A child that goes through select_device() as a job would, with torch told it has CUDA (there
# is no GPU here): the lease logic runs for real, only the CUDA probes are faked.
DEVICE_JOB = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.backends.cuda.is_built = lambda: True
    torch.cuda.is_available = lambda: True
    torch.cuda.is_initialized = lambda: False
    from robustcert import device
    spec = sys.argv[1] if len(sys.argv) > 1 else "auto"
    dev = device.select_device(spec)
    lease = device.current_lease()
    report = {"device": str(dev), "env": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "leased": None if lease is None else lease.device_id}
    if len(sys.argv) > 2:  # asking again returns the same device and keeps the one lease
        report["again"] = str(device.select_device(spec))
        assert device.current_lease() is lease
    print(json.dumps(report), flush=True)
    sys.stdin.read()
    """
)


def _env(**extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "ROBUSTCERT_"))}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    for key, value in extra.items():
        if value is not None:
            env[key] = value
    return env


class Child:
    def __init__(self, code: str, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def report(self, timeout: float = 60) -> dict:
        line = _readline(self.proc, timeout)
        if not line:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise AssertionError(f"child {self.proc.pid} reported nothing; stderr: {err}")
        return json.loads(line)

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"child {proc.pid} did not report within {timeout}s")
    return proc.stdout.readline()


@pytest.fixture
def children():
    started: list[Child] = []

    def start(code: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(code, args, env)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=30)


def holder(children, lock_dir: Path, visible: str, timeout: float = 0) -> Child:
    return children(HOLDER, [str(lock_dir), str(timeout)], _env(CUDA_VISIBLE_DEVICES=visible))


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "value, ids",
    [
        ("0,1", ["0", "1"]),
        (" 2 , 3 ", ["2", "3"]),
        ("", []),
        ("NoDevFiles", []),
        ("-1", []),
        ("1,-1,2", ["1"]),  # CUDA ignores everything from the first invalid entry on
        ("1,1,0", ["1", "0"]),
        ("GPU-8a1b,MIG-3c4d", ["GPU-8a1b", "MIG-3c4d"]),
    ],
)
def test_parse_visible_devices(value, ids):
    assert parse_visible_devices(value) == ids


def test_visible_gpus_reads_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4,6"}) == ["4", "6"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_visible_gpus_counts_without_cuda(monkeypatch):
    monkeypatch.setattr(gpulease, "count_machine_gpus", lambda: 3)
    assert visible_gpus({}) == ["0", "1", "2"]


def test_default_lock_dir(monkeypatch, tmp_path):
    assert gpulease.default_lock_dir({"ROBUSTCERT_GPU_LOCK_DIR": "/x/y"}) == Path("/x/y")
    assert gpulease.default_lock_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "robustcert-gpu-locks"
    assert gpulease.default_lock_dir({"USER": "ann"}) == Path("/tmp/robustcert-gpu-locks-ann")


# ----------------------------------------------------------------------------- leases


def test_concurrent_processes_get_distinct_slots(children, tmp_path):
    ids = ["3", "5", "7"]
    holders = [holder(children, tmp_path, ",".join(ids)) for _ in ids]
    reports = [h.report() for h in holders]
    assert all("error" not in r for r in reports), reports
    assert sorted(r["device"] for r in reports) == ids
    assert all(r["env"] == r["device"] for r in reports)  # each job sees only its own GPU
    # and the fourth finds nothing free
    late = holder(children, tmp_path, ",".join(ids)).report()
    assert late["error"] == "GpuLeaseTimeout"


def test_killed_holder_frees_its_slot(children, tmp_path):
    first = holder(children, tmp_path, "0")
    assert first.report()["device"] == "0"
    assert holder(children, tmp_path, "0").report()["error"] == "GpuLeaseTimeout"
    first.kill()  # SIGKILL: no clean-up code runs, the kernel drops the flock
    assert holder(children, tmp_path, "0").report()["device"] == "0"


def test_released_lease_frees_its_slot_in_process(tmp_path):
    lease = acquire_gpu_lease(tmp_path, ["0"], timeout_s=0, set_env=False)
    with pytest.raises(GpuLeaseTimeout):  # flock is per open file: even this process must wait
        acquire_gpu_lease(tmp_path, ["0"], timeout_s=0, set_env=False)
    lease.release()
    lease.release()  # idempotent
    with acquire_gpu_lease(tmp_path, ["0"], timeout_s=0, set_env=False) as again:
        assert again.held and again.device_id == "0"
    assert not again.held


def test_lease_sets_and_restores_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    lease = acquire_gpu_lease(tmp_path, timeout_s=0)
    assert lease.device_id == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    lease.release()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_more_holders_than_slots_fail_clearly(children, tmp_path):
    holders = [holder(children, tmp_path, "0,1") for _ in range(2)]
    pids = {h.report()["pid"] for h in holders}
    start = time.monotonic()
    with pytest.raises(GpuLeaseTimeout) as failure:
        acquire_gpu_lease(tmp_path, ["0", "1"], timeout_s=0.5, poll_s=0.05, set_env=False)
    assert time.monotonic() - start >= 0.5
    message = str(failure.value)
    assert "no free GPU after 0.5s" in message and "--resources gpu=N" in message
    assert all(f"pid {pid}" in message for pid in pids)  # names who holds the slots


def test_more_holders_than_slots_wait_for_a_free_one(children, tmp_path):
    first, second = (holder(children, tmp_path, "0,1") for _ in range(2))
    taken = {first.report()["device"], second.report()["device"]}
    assert taken == {"0", "1"}
    waiter = holder(children, tmp_path, "0,1", timeout=60)
    time.sleep(0.5)
    assert waiter.proc.poll() is None  # still waiting, not failed
    second.release()
    got = waiter.report(timeout=30)
    assert got["device"] in taken and "error" not in got


def test_nothing_to_lease(tmp_path):
    with pytest.raises(GpuLeaseError, match="no GPU is visible"):
        acquire_gpu_lease(tmp_path, [], timeout_s=0)


# ----------------------------------------------------------------------------- bad lock folders


def _in_child_as(uid: int | None, fn) -> str:
    """Run fn() in a forked child (as uid, if given); return its error message or "ok"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            fn()
            msg = "ok"
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            msg = f"{type(e).__name__}: {e}"
        os.write(write, msg.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_unwritable_lock_folder_is_a_clear_error():
    base = Path(tempfile.mkdtemp(prefix="robustcert-locktest-", dir="/tmp"))  # pytest's tmp is 0700
    base.chmod(0o755)
    locks = base / "locks"
    locks.mkdir()
    locks.chmod(0o555)
    try:
        uid = 65534 if os.geteuid() == 0 else None  # root may write anywhere: test as "nobody"
        message = _in_child_as(uid, lambda: acquire_gpu_lease(locks, ["0"], timeout_s=0))
        assert message.startswith("GpuLeaseError"), message
        assert str(locks) in message and "not writable" in message and "ROBUSTCERT_GPU_LOCK_DIR" in message
        # a folder that cannot be created names that cause
        message = _in_child_as(uid, lambda: acquire_gpu_lease(locks / "sub", ["0"], timeout_s=0))
        assert message.startswith("GpuLeaseError") and "cannot be created" in message, message
        assert "ermission denied" in message
    finally:
        locks.chmod(0o755)
        shutil.rmtree(base)


def test_lock_folder_that_is_a_file(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for bad in (not_a_dir, not_a_dir / "locks"):
        with pytest.raises(GpuLeaseError, match="not a folder"):
            acquire_gpu_lease(bad, ["0"], timeout_s=0)


# ----------------------------------------------------------------------------- select_device


def test_select_device_gives_concurrent_jobs_distinct_gpus(children, tmp_path):
    jobs = [
        children(DEVICE_JOB, [], _env(CUDA_VISIBLE_DEVICES="0,1", ROBUSTCERT_GPU_LOCK_DIR=str(tmp_path)))
        for _ in range(2)
    ]
    reports = [j.report() for j in jobs]
    assert [r["device"] for r in reports] == ["cuda:0", "cuda:0"]  # each sees only its own GPU ...
    assert sorted(r["env"] for r in reports) == ["0", "1"]  # ... and those differ
    assert all(r["leased"] == r["env"] for r in reports)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-0.lock", "gpu-1.lock"]


def test_select_device_cuda_index_leases_that_gpu(children, tmp_path):
    job = children(
        DEVICE_JOB, ["cuda:1", "again"], _env(CUDA_VISIBLE_DEVICES="4,6", ROBUSTCERT_GPU_LOCK_DIR=str(tmp_path))
    )
    assert job.report() == {"device": "cuda:0", "env": "6", "leased": "6", "again": "cuda:0"}


@pytest.mark.parametrize(
    "extra",
    [
        {"CUDA_VISIBLE_DEVICES": ""},  # no GPU visible
        {"CUDA_VISIBLE_DEVICES": "0,1", "ROBUSTCERT_DEVICE": "cpu"},  # the override wins
    ],
)
def test_select_device_cpu_takes_no_lease(children, tmp_path, extra):
    locks = tmp_path / "locks"
    job = children(DEVICE_JOB, [], _env(ROBUSTCERT_GPU_LOCK_DIR=str(locks), **extra))
    report = job.report()
    assert report["device"] == "cpu" and report["leased"] is None
    assert not locks.exists()


@pytest.mark.parametrize("env,spec,where", [
    ("bogus", "auto", "$ROBUSTCERT_DEVICE is 'bogus'"),
    ("cuda:x", "cpu", "$ROBUSTCERT_DEVICE is 'cuda:x'"),
    (None, "mps", "the config key device is 'mps'"),
])
def test_select_device_refuses_unknown_devices_naming_where_they_came_from(monkeypatch, env, spec, where):
    from robustcert import device

    if env is None:
        monkeypatch.delenv("ROBUSTCERT_DEVICE", raising=False)
    else:
        monkeypatch.setenv("ROBUSTCERT_DEVICE", env)
    with pytest.raises(ValueError) as err:
        device.select_device(spec)
    assert str(err.value) == f"{where}; accepted values: auto, cpu, cuda or cuda:N (the N-th visible GPU)"


def test_device_values_are_those_of_the_config_schema():
    import re

    import yaml

    from robustcert.device import DEVICE_SPEC

    schema = yaml.safe_load((Path(__file__).parents[1] / "config/schemas/config.schema.yaml").read_text())
    assert schema["properties"]["device"]["pattern"] == f"^({DEVICE_SPEC.pattern})$"
    assert [bool(re.fullmatch(DEVICE_SPEC, v)) for v in ("auto", "cpu", "cuda", "cuda:12", "cuda:", "meta")] == \
        [True, True, True, True, False, False]


def test_select_device_without_cuda_build_is_cpu(monkeypatch, tmp_path):
    """This torch may well be a CPU build: then "auto" is the CPU, with no lease, whatever the ids say."""
    import torch

    from robustcert import device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("ROBUSTCERT_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("ROBUSTCERT_DEVICE", raising=False)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    assert device.select_device("auto") == torch.device("cpu")
    assert device.current_lease() is None and not (tmp_path / "locks").exists()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device.select_device("cuda")
    monkeypatch.setenv("ROBUSTCERT_DEVICE", "cpu")
    assert device.select_device("cuda") == torch.device("cpu")


def test_select_device_falls_back_when_cuda_cannot_use_the_gpu(monkeypatch, tmp_path):
    """Ids are visible (e.g. given by SLURM) but CUDA finds no device: auto -> CPU, lease released."""
    import torch

    from robustcert import device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("ROBUSTCERT_DEVICE", raising=False)
    monkeypatch.setenv("ROBUSTCERT_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.select_device("auto") == torch.device("cpu")
    assert device.current_lease() is None and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    with acquire_gpu_lease(tmp_path, ["1"], timeout_s=0, set_env=False):
        pass  # the slot was given back
    with pytest.raises(RuntimeError, match="CUDA cannot use it"):
        device.select_device("cuda")
