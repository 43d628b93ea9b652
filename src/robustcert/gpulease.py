"""GPU leases: every GPU job on one machine gets a GPU of its own.

``snakemake --cores 8 --resources gpu=2`` runs at most two ``gpu=1`` jobs at once but tells
them nothing about *which* GPU to use, so without help both would compute on GPU 0. A job
therefore takes a lease on one free GPU slot before CUDA initialises:

* one lock file per visible device in a lock folder shared by the jobs (``$ROBUSTCERT_GPU_LOCK_DIR``,
  else ``$XDG_RUNTIME_DIR/robustcert-gpu-locks``, else ``/tmp/robustcert-gpu-locks-<user>``);
* a non-blocking exclusive ``flock`` on the first free one, held through an open file descriptor
  for the rest of the process's life. The kernel drops the lock when the last descriptor closes,
  so a job that crashes or is killed with SIGKILL frees its slot without any clean-up; lock
  files are never deleted (deleting one while another process waits on it would let two
  processes hold "the same" slot);
* ``CUDA_VISIBLE_DEVICES`` is then narrowed to the leased device, so the job computes on
  ``cuda:0`` and cannot touch the other GPUs.

The candidate devices are ``$CUDA_VISIBLE_DEVICES`` when it is set (SLURM, or a user, already
chose the set) and otherwise all GPUs of the machine, counted without initialising CUDA in this
process (``nvidia-smi -L``, ``/proc/driver/nvidia/gpus``, or, last, ``torch.cuda.device_count()``
in a child process): once CUDA has initialised, changing ``CUDA_VISIBLE_DEVICES`` has no effect.

When every slot is taken the lease waits (polling) up to ``timeout_s`` and then fails with
``GpuLeaseTimeout`` naming the holders; that happens only when more GPU jobs run than there are
GPUs, e.g. ``--resources gpu=N`` larger than the number of GPUs, or two workflows on one machine.

Caveats: locks coordinate processes that use the same lock folder (by default: the same user on
the same machine); children forked without ``exec`` (e.g. DataLoader workers) share the
descriptor and keep the lease until they exit too.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

LOCK_DIR_ENV = "ROBUSTCERT_GPU_LOCK_DIR"
TIMEOUT_ENV = "ROBUSTCERT_GPU_LEASE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_POLL_S = 0.5

# Values that mean "no device" to CUDA (SLURM has used NoDevFiles); CUDA also ignores every
# entry after the first invalid one, so parsing stops there.
_NO_DEVICE = {"", "-1", "nodevfiles", "none", "void"}

_registry_lock = threading.Lock()
_held: list["GpuLease"] = []  # keeps every live lease (and so its descriptor) referenced


class GpuLeaseError(RuntimeError):
    """No GPU lease could be taken (bad lock folder, nothing to lease, ...)."""


class GpuLeaseTimeout(GpuLeaseError):
    """Every GPU slot stayed taken for the whole timeout."""


@dataclass(eq=False)
class GpuLease:
    """A held lease on one GPU. ``device_id`` is the CUDA_VISIBLE_DEVICES entry leased."""

    device_id: str
    slot: int
    candidates: tuple[str, ...]
    lock_path: Path
    _fd: int | None = field(default=None, repr=False)
    _previous_env: str | None = field(default=None, repr=False)
    _env_set: bool = field(default=False, repr=False)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        if self._fd is None:
            raise GpuLeaseError(f"the lease on GPU {self.device_id} was released")
        return self._fd

    def release(self) -> None:
        """Give the slot back (idempotent); restores CUDA_VISIBLE_DEVICES if this lease set it."""
        with _registry_lock:
            fd, self._fd = self._fd, None
            if self in _held:
                _held.remove(self)
        if fd is None:
            return
        try:
            os.close(fd)  # closing the only descriptor drops the flock
        finally:
            if self._env_set and os.environ.get("CUDA_VISIBLE_DEVICES") == self.device_id:
                if self._previous_env is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = self._previous_env
            self._env_set = False

    def __enter__(self) -> "GpuLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- devices


def parse_visible_devices(value: str) -> list[str]:
    """The device ids in a CUDA_VISIBLE_DEVICES value, in order, as CUDA reads them."""
    ids: list[str] = []
    for token in value.split(","):
        token = token.strip()
        if token.lower() in _NO_DEVICE:
            break
        if token not in ids:
            ids.append(token)
    return ids


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries; never initialises CUDA.

    ``CUDA_VISIBLE_DEVICES`` when set (an empty value means none), else ``"0".."N-1"`` for the
    N GPUs of the machine.
    """
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return parse_visible_devices(env["CUDA_VISIBLE_DEVICES"])
    return [str(i) for i in range(count_machine_gpus())]


@functools.lru_cache(maxsize=1)
def count_machine_gpus() -> int:
    """How many NVIDIA GPUs the machine has, found without initialising CUDA in this process."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                # "GPU 0: NVIDIA H200 (UUID: GPU-...)"; MIG instances are indented lines below
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        try:
            return sum(1 for _ in proc.iterdir())
        except OSError:
            pass
    return _count_with_torch_in_child()


def _count_with_torch_in_child() -> int:
    """Last resort: torch.cuda.device_count(), in a child process so that CUDA stays untouched here."""
    try:
        import torch
    except ImportError:
        return 0
    if not torch.backends.cuda.is_built():  # a CPU-only build can use no GPU anyway
        return 0
    code = "import torch; print(torch.cuda.device_count())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


# ----------------------------------------------------------------------------- lock folder


def default_lock_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$ROBUSTCERT_GPU_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/robustcert-gpu-locks``, else
    ``/tmp/robustcert-gpu-locks-<user>``."""
    env = os.environ if environ is None else environ
    if env.get(LOCK_DIR_ENV):
        return Path(env[LOCK_DIR_ENV])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime) / "robustcert-gpu-locks"
    return Path("/tmp") / f"robustcert-gpu-locks-{_user_name(env)}"


def _user_name(env: Mapping[str, str]) -> str:
    name = env.get("USER") or env.get("LOGNAME")
    if not name:
        try:
            import pwd

            name = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            name = str(os.getuid())
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _prepare_lock_dir(lock_dir: Path) -> None:
    how_to_fix = f"set {LOCK_DIR_ENV} to a writable folder"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError):
        raise GpuLeaseError(
            f"GPU lock folder {lock_dir} cannot be used: it or one of its parents is not a folder; {how_to_fix}"
        ) from None
    except OSError as e:
        raise GpuLeaseError(
            f"GPU lock folder {lock_dir} cannot be created: {e.strerror or e}; {how_to_fix}"
        ) from None
    if not lock_dir.is_dir():
        raise GpuLeaseError(f"GPU lock folder {lock_dir} is not a folder; {how_to_fix}")
    if not os.access(lock_dir, os.W_OK | os.X_OK):
        raise GpuLeaseError(
            f"GPU lock folder {lock_dir} is not writable by this user (uid {os.getuid()}): "
            f"permission denied; {how_to_fix}"
        )


def _lock_path(lock_dir: Path, device_id: str) -> Path:
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', device_id)}.lock"


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o666)
    except PermissionError:
        if path.exists():  # another user's lock file in a shared folder: a read-only fd can still flock
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass
        raise GpuLeaseError(
            f"GPU lock folder {path.parent} is not writable: cannot create or open {path.name} "
            f"(permission denied); set {LOCK_DIR_ENV} to a writable folder"
        ) from None
    except OSError as e:
        cause = "read-only file system" if e.errno == errno.EROFS else (e.strerror or str(e))
        raise GpuLeaseError(
            f"GPU lock folder {path.parent} is not writable: cannot create {path.name} ({cause}); "
            f"set {LOCK_DIR_ENV} to a writable folder"
        ) from None


def _holder(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip() or "unknown holder"
    except OSError:
        return "unknown holder"


# ----------------------------------------------------------------------------- leasing


def acquire_gpu_lease(
    lock_dir: str | os.PathLike[str] | None = None,
    visible: Iterable[str] | None = None,
    *,
    timeout_s: float | None = None,
    poll_s: float = DEFAULT_POLL_S,
    set_env: bool = True,
) -> GpuLease:
    """Lease one free GPU out of ``visible`` (default: :func:`visible_gpus`).

    Tries the slots in order without blocking and, while all are taken, polls every ``poll_s``
    seconds for up to ``timeout_s`` (default ``$ROBUSTCERT_GPU_LEASE_TIMEOUT_S`` or 600;
    0 = try once). With ``set_env`` the process's ``CUDA_VISIBLE_DEVICES`` becomes the leased id.
    The lease lasts until :meth:`GpuLease.release` or the end of the process.

    :raises GpuLeaseError: nothing to lease, or the lock folder is unusable (named with the cause).
    :raises GpuLeaseTimeout: every slot stayed taken for ``timeout_s`` seconds.
    """
    candidates = tuple(dict.fromkeys(str(v).strip() for v in (visible_gpus() if visible is None else visible)))
    candidates = tuple(c for c in candidates if c)
    if not candidates:
        raise GpuLeaseError("no GPU is visible to this process, so there is no GPU to lease")
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    if timeout_s < 0 or poll_s <= 0:
        raise ValueError(f"timeout_s must be >= 0 and poll_s > 0, got {timeout_s} and {poll_s}")
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    _prepare_lock_dir(directory)

    paths = [_lock_path(directory, c) for c in candidates]
    fds = [_open_lock_file(p) for p in paths]
    deadline = time.monotonic() + timeout_s
    told_waiting = False
    try:
        while True:
            for slot, fd in enumerate(fds):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                except OSError as e:
                    raise GpuLeaseError(f"cannot lock {paths[slot]}: {e.strerror or e}") from None
                lease = _register(candidates, slot, paths[slot], fd, set_env)
                fds[slot] = -1  # the lease keeps this descriptor open
                return lease
            now = time.monotonic()
            if now >= deadline:
                holders = "; ".join(f"GPU {c}: {_holder(p)}" for c, p in zip(candidates, paths))
                raise GpuLeaseTimeout(
                    f"no free GPU after {timeout_s:g}s: all {len(candidates)} GPU slot(s) "
                    f"({', '.join(candidates)}) in {directory} are leased ({holders}). More GPU jobs "
                    f"run at once than there are GPUs: lower `--resources gpu=N` to at most "
                    f"{len(candidates)}, or raise {TIMEOUT_ENV}"
                )
            if not told_waiting:
                print(
                    f"robustcert.gpulease: all {len(candidates)} GPU slot(s) in {directory} are leased; "
                    f"waiting up to {timeout_s:g}s for one to become free",
                    file=sys.stderr,
                    flush=True,
                )
                told_waiting = True
            time.sleep(min(poll_s, max(deadline - now, 0.0)))
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def _register(candidates: tuple[str, ...], slot: int, path: Path, fd: int, set_env: bool) -> GpuLease:
    device_id = candidates[slot]
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    try:  # who holds it, for the messages of those who wait; best effort
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
    except OSError:
        pass
    lease = GpuLease(device_id, slot, candidates, path, fd)
    if set_env:
        lease._previous_env = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = device_id
        lease._env_set = True
    with _registry_lock:
        _held.append(lease)
    return lease


def held_leases() -> list[GpuLease]:
    """The leases this process holds now."""
    with _registry_lock:
        return list(_held)
