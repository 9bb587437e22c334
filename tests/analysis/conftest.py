"""Synthetic results frames for the analysis tests (same columns as requests/metrics.parquet)."""

from __future__ import annotations

from collections.abc import Callable

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
