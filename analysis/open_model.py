"""What an open-model run adds to its summary: the rate it meant, the rate it got, the arrivals
it dropped at its concurrency cap, its service time beside its latency, and whether the
generator kept its schedule.

In an open run (`--shape open`, results schema 3) `latency_us` counts from each request's
intended start, so the run's percentiles include the queue a stall builds; `service_us`
(from the send) is the figure a closed run would have shown. A send lag (send minus intended
start) that grows means the generator, not the cluster, fell behind: the latencies then
include the generator's own delay, and the summary says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.quantiles import nearest_rank
from analysis.window import Window, window_mask

#: A send lag p99 above this (ms) means the generator could not keep the arrival schedule.
LAG_WARN_MS = 10.0


@dataclass(frozen=True)
class OpenSummary:
    """The open model's figures of one run (NaN where not computable)."""

    intended_rps: float
    achieved_rps: float
    planned: int
    sent: int
    dropped: int
    cap: int
    peak_in_flight: int
    service_p50_ms: float
    service_p99_ms: float
    send_lag_p99_ms: float

    @property
    def dropped_share(self) -> float:
        return self.dropped / self.planned if self.planned else math.nan


def summarize_open(requests: pd.DataFrame, window: Window | None, generator: dict[str, Any],
                   achieved_rps: float) -> OpenSummary | None:
    """The open-model figures of a run, or None for a closed run (no intended starts).

    `generator` is run.json's ``generator`` (its ``arrivals`` counts cover the whole run,
    warm-up included; ``intended_rps`` the measured window); `achieved_rps` the summary's
    throughput over the window."""
    arrivals = generator.get("arrivals")
    if not arrivals or "intended_ts" not in requests.columns:
        return None
    ts = requests["ts"].to_numpy(dtype=np.float64)
    intended = requests["intended_ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    mask = window_mask(ts, window)
    chosen = ~np.isnan(intended) if mask is None else mask & ~np.isnan(intended)
    service = requests["service_us"].to_numpy(dtype=np.float64, na_value=np.nan)[chosen]
    lag_ms = (ts[chosen] - intended[chosen]) * 1000.0
    service_p = nearest_rank(service[~np.isnan(service)], (50.0, 99.0)) / 1000.0
    lag_p = nearest_rank(np.maximum(lag_ms, 0.0), (99.0,))
    return OpenSummary(
        intended_rps=float(arrivals.get("intended_rps") or math.nan),
        achieved_rps=achieved_rps,
        planned=int(arrivals.get("planned") or 0), sent=int(arrivals.get("sent") or 0),
        dropped=int(arrivals.get("dropped") or 0), cap=int(arrivals.get("cap") or 0),
        peak_in_flight=int(arrivals.get("peak_in_flight") or 0),
        service_p50_ms=float(service_p[0]), service_p99_ms=float(service_p[1]),
        send_lag_p99_ms=float(lag_p[0]),
    )


def open_record(s: OpenSummary) -> dict[str, Any]:
    """The figures as run.json ``summary.open_model`` stores them (NaN as None)."""
    def clean(v: float) -> float | None:
        return None if isinstance(v, float) and math.isnan(v) else v

    return {"intended_rps": clean(s.intended_rps), "achieved_rps": clean(s.achieved_rps),
            "planned": s.planned, "sent": s.sent, "dropped": s.dropped,
            "dropped_share": clean(s.dropped_share), "cap": s.cap,
            "peak_in_flight": s.peak_in_flight, "service_p50_ms": clean(s.service_p50_ms),
            "service_p99_ms": clean(s.service_p99_ms), "send_lag_p99_ms": clean(s.send_lag_p99_ms)}


def format_open(s: OpenSummary) -> list[str]:
    """Lines for the printed summary: the open model beside the rate achieved."""
    lines = [
        f"open model: intended {s.intended_rps:,.1f} req/s, achieved {s.achieved_rps:,.1f} "
        f"req/s; latency counts from each request's intended start",
        f"  arrivals (whole run): {s.planned:,} planned, {s.sent:,} sent, {s.dropped:,} "
        f"dropped at the cap of {s.cap:,} in flight "
        f"({0.0 if math.isnan(s.dropped_share) else s.dropped_share * 100:.2f} %), "
        f"peak {s.peak_in_flight:,} in flight in one process",
        f"  service time from the send: p50 {s.service_p50_ms:,.2f} ms  p99 "
        f"{s.service_p99_ms:,.2f} ms; send lag p99 {s.send_lag_p99_ms:,.2f} ms",
    ]
    return lines


def check_open(s: OpenSummary) -> list[str]:
    """Warnings: arrivals dropped, or a generator that fell behind its schedule."""
    out = []
    if s.dropped:
        out.append(f"check: {s.dropped:,} arrivals were dropped at the concurrency cap: the "
                   "cluster fell behind the intended rate; raise --max-concurrency to see "
                   "the whole queue in the latencies, or lower the rate")
    if s.send_lag_p99_ms > LAG_WARN_MS:
        out.append(f"check: the generator sent p99 {s.send_lag_p99_ms:,.1f} ms after the "
                   "intended starts: it could not keep the schedule, so the latencies include "
                   "its own delay; add workers (--workers) or lower the rate")
    return out
