"""Progress lines in a job's log (robustcert.progress): at most every 30 s, with the share done and an
estimate of the time left, and a last line at the end."""

from __future__ import annotations

import logging

from robustcert.progress import Progress


def test_progress_logs_every_30_seconds_with_the_time_left(caplog):
    now = [0.0]
    progress = Progress("CERTIFY", 40, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="robustcert.progress"):
        for _ in range(10):  # 10 points in 20 s: no line yet
            now[0] += 2.0
            progress.advance()
        assert caplog.messages == []
        now[0] += 10.0  # 11 points after 30 s
        progress.advance()
        progress.advance(29)
        progress.finish()
    assert caplog.messages == ["CERTIFY: 11/40 points (28%) in 30 s, about 79 s left", "CERTIFY: 40/40 points (100%) in 30 s, done"]
