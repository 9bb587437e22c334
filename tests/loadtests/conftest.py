"""Helpers for load-test tests: run eiperf / Locust as a user would, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def eiperf(*args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eiperf.cli", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "results"
