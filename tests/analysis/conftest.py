"""Fixtures of the analysis tests: synthetic requests frames (the columns of requests.parquet)
and short real runs on the session testbed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

T0 = 1_700_000_000.0


@pytest.fixture
def t0() -> float:
    """Start of the synthetic runs (epoch seconds)."""
    return T0


@pytest.fixture
def make_requests() -> Callable[..., pd.DataFrame]:
    """Factory of a requests frame: n requests spread over ``duration`` seconds from ``t0``."""

    def make(
        n: int = 5000,
        *,
        seed: int = 0,
        t0: float = T0,
        duration: float = 100.0,
        scale: float = 1.0,
        error_share: float = 0.02,
        nodes: tuple[str | None, ...] = ("node1", "node2"),
    ) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        ok = rng.random(n) >= error_share
        return pd.DataFrame(
            {
                "ts": t0 + np.sort(rng.uniform(0.0, duration, n)),
                "scenario": rng.choice(["log_simple", "log_full"], n),
                "name": "/services/SampleProxy",
                "latency_us": (rng.lognormal(np.log(2000.0), 0.6, n) * scale).astype(np.int64),
                "bytes": rng.integers(100, 400, n).astype(np.int64),
                "status": np.where(ok, 200, 502),
                "ok": ok,
                "error": np.where(ok, None, "HTTPError 502"),
                "node": pd.Series(rng.choice(np.array(nodes, dtype=object), n), dtype=object),
            }
        )

    return make


# -- real runs on the session testbed --------------------------------------------------------



def eiperf_cli(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """Run the eiperf command line as a user would (this venv's python)."""
    return subprocess.run([sys.executable, "-m", "eiperf.cli", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


@dataclass(frozen=True)
class RealRuns:
    """Short real runs on the testbed: ``repeats`` (plain SOAP proxy, one configuration, to
    measure run-to-run noise), ``a``/``b`` (two more of the same configuration), ``delayed``
    (the proxy with a 200 ms backend delay, same users) and ``step`` (a step-load run)."""

    results: Path
    repeats: tuple[Path, Path, Path]
    a: Path
    b: Path
    delayed: Path
    step: Path


PLAIN = ("-u", "4", "-t", "4s", "--warmup", "1s")


@pytest.fixture(scope="session")
def real_runs(testbed, tmp_path_factory) -> RealRuns:
    results = tmp_path_factory.mktemp("real") / "results"
    base = ("run", "--cluster", str(testbed.source), "--out", str(results))

    def run(*args: str) -> Path:
        before = set(results.iterdir()) if results.exists() else set()
        r = eiperf_cli(*base, *args)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        (new,) = set(results.iterdir()) - before
        return new

    # fresh JVMs serve at about half speed: one throwaway run warms them up
    warm = eiperf_cli("run", "--cluster", str(testbed.source), "--out",
                      str(results.parent / "warm-up"), "-u", "4", "-t", "3s", "--warmup", "0",
                      "--no-collect")
    assert warm.returncode == 0, warm.stderr[-2000:]
    repeats = (run(*PLAIN), run(*PLAIN, "--no-collect"), run(*PLAIN, "--no-collect"))
    a, b = run(*PLAIN, "--no-collect"), run(*PLAIN, "--no-collect")
    delayed = run("--weights", "delayed=1", *PLAIN, "--no-collect")
    step = run("--shape", "step", "-u", "12", "--step-users", "2", "--step-time", "2s",
               "-t", "12s", "--warmup", "0")
    return RealRuns(results, repeats, a, b, delayed, step)
