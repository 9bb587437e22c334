"""Test hook: a journal's writer pauses after its first file write, so a test can SIGKILL it there.

When the environment variable `EIPERF_TEST_PAUSE_AFTER_WRITE` holds a number of seconds (at most
60), the process sleeps that long after the first file write of a journal. It is meant for
eiperf's own tests only (tests/tuning/test_journal.py, tests/tuning/test_tune_cli.py).
"""

from __future__ import annotations

import os
import time

PAUSE_ENV = "EIPERF_TEST_PAUSE_AFTER_WRITE"
MAX_PAUSE_S = 60.0


class PauseAfterFirstWrite:
    """Called after each write of one journal; sleeps once, when `PAUSE_ENV` asks for it."""

    def __init__(self) -> None:
        self._done = False

    def __call__(self) -> None:
        raw = os.environ.get(PAUSE_ENV)
        if not raw or self._done:
            return
        self._done = True
        try:
            seconds = min(float(raw), MAX_PAUSE_S)
        except ValueError:
            return
        time.sleep(max(seconds, 0.0))
