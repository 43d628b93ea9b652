"""The workflow's stage modules: one per ``rules/<stage>.smk``, named for the stage.

Each holds the stage's plan (which jobs, rows, plots and shards the config asks for, and exactly the
keys each step reads, as pure functions of the config and the wildcards) and the steps its scripts
call (files in, files out). Importing a stage module loads neither torch nor matplotlib: the steps
that need them import them, so that parsing the Snakefile and the light jobs stay fast.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger("robustcert")


def start_log(path: str | Path) -> None:
    """Send stderr and the package's log messages to a rule's log file, which says when the job started
    and, as the process exits, how long it ran (so that no job leaves an empty log)."""
    sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        force=True)
    start = time.perf_counter()
    log.info("job started (process %d)", os.getpid())
    atexit.register(lambda: log.info("process exiting after %.1f s", time.perf_counter() - start))


def compute_prologue(threads: int, device: str) -> torch.device:
    """The first line of every computing step: use ``threads`` CPU threads, and the device of the config."""
    import torch

    from robustcert.device import select_device

    torch.set_num_threads(threads)
    return select_device(device)
