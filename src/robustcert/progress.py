"""Progress of a long loop in a job's log: how much is done and an estimate of the time left, at most
every :data:`EVERY` seconds (and once at the end), so that a log shows a running job is moving."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EVERY = 30.0  # seconds between two progress lines


class Progress:
    """Count ``total`` units of work (``unit``: "points", "samples") done by ``what``; :meth:`advance`
    logs ``done/total``, the seconds so far and the estimated seconds left when :data:`EVERY` seconds
    have passed since the last line; :meth:`finish` logs the last line."""

    def __init__(self, what: str, total: float, unit: str = "points", every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.every, self.clock = what, float(total), unit, every, clock
        self.done = 0.0
        self.start = self.last = clock()

    def advance(self, amount: float = 1.0) -> None:
        """Count ``amount`` more units done; log a line if the last one is :data:`EVERY` seconds old."""
        self.done += amount
        if self.clock() - self.last >= self.every:
            self.report()

    def finish(self) -> None:
        """Log the final line (all done, the total time)."""
        self.report()

    def report(self) -> None:
        """Log ``what: done/total unit, elapsed s, about N s left``."""
        now = self.clock()
        self.last = now
        log.info("%s: %s", self.what, self.line(now - self.start))

    def line(self, elapsed: float) -> str:
        """The progress line after ``elapsed`` seconds."""
        share = self.done / self.total if self.total else 1.0
        left = f"about {elapsed * (1 - share) / share:.0f} s left" if 0 < share < 1 else (
            "done" if share >= 1 else "time left unknown")
        return f"{int(self.done)}/{self.total:g} {self.unit} ({share:.0%}) in {elapsed:.0f} s, {left}"
