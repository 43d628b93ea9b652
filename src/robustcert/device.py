"""Which device a job computes on: from config or the environment, never hard-coded.

A job that ends up on CUDA first takes a GPU lease (:mod:`robustcert.gpulease`), so that jobs
running side by side (``snakemake --resources gpu=N``) each get a GPU of their own: the lease
narrows ``CUDA_VISIBLE_DEVICES`` to the leased GPU and the job computes on ``cuda:0``. Under
SLURM, ``CUDA_VISIBLE_DEVICES`` already names the GPUs SLURM gave the job and the lease draws
from those. Where no GPU is visible the job runs on the CPU and takes no lease.

Call :func:`select_device` before anything initialises CUDA (e.g. ``torch.cuda.is_available()``),
since CUDA reads ``CUDA_VISIBLE_DEVICES`` only once.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import TYPE_CHECKING

from robustcert.gpulease import (
    LOCK_DIR_ENV,
    GpuLease,
    acquire_gpu_lease,
    default_lock_dir,
    visible_gpus,
)

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "ROBUSTCERT_DEVICE"
# the values of the config key `device` (its pattern in config/schemas/config.schema.yaml) and of $ROBUSTCERT_DEVICE
DEVICE_SPEC = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N (the N-th visible GPU)"
GPU_LOCK_DIR_ENV = LOCK_DIR_ENV  # "ROBUSTCERT_GPU_LOCK_DIR"

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_lease: GpuLease | None = None
_leased_device: torch.device | None = None
_leased_index: int | None = None  # the leased GPU's position among the visible ones
_last_summary = ""


def select_device(spec: str | None = "auto") -> torch.device:
    """The device named by ``spec`` ("auto", "cpu", "cuda" or "cuda:N"; anything else is a ValueError
    naming where it came from and the accepted values).

    ``$ROBUSTCERT_DEVICE`` overrides the config. "auto" is CUDA when a GPU is visible and this
    torch build can use it, else the CPU. Asking for CUDA where there is none is an error, not a
    silent fall-back. A CUDA result holds a GPU lease for the rest of the process (one per
    process: calling again returns the same device); "cuda:N" leases the N-th visible GPU.
    """
    import torch

    spec = effective_spec(spec)
    auto = spec == "auto"
    if not auto:
        device = torch.device(spec)
        if device.type != "cuda":
            return device
        index = device.index
    else:
        index = None

    global _lease, _leased_device, _leased_index
    with _lock:
        if _lease is not None and _lease.held and _leased_device is not None:
            if index is None or _leased_index == index:
                return _leased_device
            raise RuntimeError(
                f"device {spec!r} was asked for, but this process already leased GPU "
                f"{_lease.device_id} (cuda:{_leased_index} before the lease)"
            )

        visible_env = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = "unset" if visible_env is None else repr(visible_env)
        if not torch.backends.cuda.is_built():
            return _cpu_or_fail(auto, spec, f"this torch build has no CUDA (CUDA_VISIBLE_DEVICES {shown})")
        visible = visible_gpus()
        if not visible:
            return _cpu_or_fail(auto, spec, f"no GPU is visible (CUDA_VISIBLE_DEVICES {shown})")
        if index is not None and index >= len(visible):
            raise RuntimeError(f"device {spec!r} was asked for, but only {len(visible)} GPU(s) are visible: {visible}")
        candidates = visible if index is None else [visible[index]]

        initialised = torch.cuda.is_initialized()  # then CUDA_VISIBLE_DEVICES can no longer narrow it
        lease = acquire_gpu_lease(lock_dir(), candidates, set_env=not initialised)
        if not torch.cuda.is_available():
            lease.release()
            return _cpu_or_fail(
                auto, spec, f"GPU {lease.device_id} is visible but CUDA cannot use it (no driver or device?)"
            )
        position = visible.index(lease.device_id)
        device = torch.device("cuda", position if initialised else 0)
        _lease, _leased_device, _leased_index = lease, device, position
        _report(
            f"{device} = GPU {lease.device_id} (slot {lease.slot} of {','.join(lease.candidates)}), "
            f"leased via {lease.lock_path}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
        )
        return device


def effective_spec(spec: str | None) -> str:
    """``$ROBUSTCERT_DEVICE`` if set, else ``spec`` (default "auto"); a ValueError naming the variable
    or the config key and the accepted values if it is not one of them (checked before any job, too)."""
    override = os.environ.get(DEVICE_ENV, "").strip()
    chosen = override or (spec or "auto").strip()
    if not DEVICE_SPEC.fullmatch(chosen):
        where = f"${DEVICE_ENV}" if override else "the config key device"
        raise ValueError(f"{where} is {chosen!r}; accepted values: {DEVICE_CHOICES}")
    return chosen


def lock_dir() -> str:
    """The GPU lock folder: ``$ROBUSTCERT_GPU_LOCK_DIR`` or the default of :mod:`robustcert.gpulease`."""
    return str(default_lock_dir())


def current_lease() -> GpuLease | None:
    """The GPU lease :func:`select_device` took in this process, if any."""
    return _lease if _lease is not None and _lease.held else None


def device_summary() -> str:
    """One line on the last automatic device decision of this process (for job logs)."""
    return _last_summary


def _cpu_or_fail(auto: bool, spec: str, why: str) -> torch.device:
    import torch

    if not auto:
        raise RuntimeError(f"device {spec!r} was asked for, but CUDA is not available on this machine: {why}")
    _report(f"cpu: {why}")
    return torch.device("cpu")


def _report(line: str) -> None:
    global _last_summary
    if line == _last_summary:  # say it once, not on every call
        return
    _last_summary = line
    if _log.hasHandlers() and _log.isEnabledFor(logging.INFO):  # the job configured logging
        _log.info("%s", line)
    else:
        print(f"robustcert.device: {line}", file=sys.stderr, flush=True)
