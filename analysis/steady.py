"""Steady state of a run: did throughput or latency still move inside the measured window?

A run that was still warming up (fresh JVMs serve at about half speed) or that degraded (a
leak, a backlog) gives figures that describe neither state. This module says which it was.

Method
------
1. The window is cut into ``n`` equal bins: 1 s each, or ``window / 20`` for a window shorter
   than 20 s (so a few-second run still gets 20 points), widened until a bin expects at least
   ``MIN_BIN_REQUESTS`` requests, and to at most ``MAX_BINS`` bins. Fewer than ``MIN_BINS``
   bins: the verdict is "unknown" (never "steady": a test that cannot be computed says so).
2. Two series over the bins: throughput (requests started in the bin / bin width, all
   requests, as the summary's throughput) and mean latency (over the bin's successful
   requests, the summary's latency basis; bins without one are left out). The mean, not the
   p50: it is one weighted count over the rows, where a p50 per bin is a selection per bin
   (~75 ms per million rows here, a large part of a report's per-row budget); the tests below
   are rank- and median-based, so one bin with an outlier does not decide.
3. Each series gets a **Mann-Kendall** trend test (S over all pairs, its variance with the tie
   correction, z with the continuity correction, two-sided normal p) and **Sen's slope** (the
   median of the pairwise slopes, per second) for the size of the trend.
4. A series *moved* when p < ``ALPHA`` (0.05) **and** Sen's slope × window exceeds
   ``RELEVANT_CHANGE`` (10 %) of the series' median. Both are needed: a 30-minute run makes a
   1 % drift significant; a short noisy one makes a large-looking slope insignificant.
5. Verdict: throughput rose or latency fell → "warming up"; throughput fell or latency rose →
   "degrading"; neither → "steady". When the two disagree (both rise: the users changed, as
   in a step shape), throughput decides.

Caveat: Mann-Kendall assumes independent points; per-second samples of a load test are
autocorrelated (GC cycles, connection churn), so p is optimistic over long windows. The
relevant-amount rule in step 4 is what keeps that from flagging a steady run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.window import Window, check_window
from eicore.results import SteadyStateRecord, SteadyVerdict

#: Significance level of the two-sided Mann-Kendall test.
ALPHA = 0.05
#: Smallest change over the window, as a share of the series' median, that counts as a trend.
RELEVANT_CHANGE = 0.10
#: Fewer bins than this: the trend cannot be judged ("unknown").
MIN_BINS = 10
#: Bins of a window shorter than ``TARGET_BINS`` seconds are window / TARGET_BINS wide.
TARGET_BINS = 20
#: At most this many bins (longer runs get wider bins; Mann-Kendall compares all pairs).
MAX_BINS = 300
#: A bin is widened until it expects at least this many requests.
MIN_BIN_REQUESTS = 10


@dataclass(frozen=True)
class MannKendall:
    """The Mann-Kendall trend test of one series: S, its variance, z and the two-sided p."""

    n: int
    s: int
    var_s: float
    z: float
    p: float


@dataclass(frozen=True)
class Trend:
    """One series' trend over the window: the test, Sen's slope (units per second), the median,
    and the change over the window as a share of the median (``slope × window / median``)."""

    test: MannKendall
    slope: float
    median: float
    change: float

    @property
    def moved(self) -> bool:
        """Significant and relevant: p < ALPHA, |change| > RELEVANT_CHANGE, same direction."""
        return bool(self.test.p < ALPHA and abs(self.change) > RELEVANT_CHANGE
                    and np.sign(self.test.s) == np.sign(self.change))


@dataclass(frozen=True)
class SteadyState:
    """The verdict on one run's window, with the figures it rests on (None: not computed)."""

    verdict: SteadyVerdict
    bins: int
    bin_s: float
    throughput: Trend | None
    latency: Trend | None
    reason: str = ""

    @property
    def steady(self) -> bool:
        return self.verdict is SteadyVerdict.STEADY

    @property
    def method(self) -> str:
        """The method as applied to this run, in one sentence."""
        if not self.bins:
            return (f"Mann-Kendall + Sen's slope over bins of the window: not applied "
                    f"({self.reason})")
        return (f"Mann-Kendall (two-sided, alpha {ALPHA:g}) and Sen's slope over {self.bins} "
                f"bins of {self.bin_s:.3g} s of throughput and mean latency; a trend counts "
                f"when p < {ALPHA:g} and its change over the window exceeds "
                f"{RELEVANT_CHANGE:.0%} of the median")

    def record(self) -> SteadyStateRecord:
        """As run.json ``summary.steady_state`` stores it (percent changes over the window)."""
        def pct(t: Trend | None) -> float | None:
            return None if t is None or not math.isfinite(t.change) else round(t.change * 100, 3)

        def p(t: Trend | None) -> float | None:
            return None if t is None or not math.isfinite(t.test.p) else float(t.test.p)

        return {"verdict": self.verdict.value, "method": self.method,
                "throughput_slope_pct": pct(self.throughput),
                "latency_slope_pct": pct(self.latency),
                "p_throughput": p(self.throughput), "p_latency": p(self.latency)}


def mann_kendall(values: np.ndarray) -> MannKendall:
    """Mann-Kendall test of ``values`` in their order (NaN left out).

    S = Σ_{i<j} sign(x_j − x_i); Var(S) = [n(n−1)(2n+5) − Σ_t t(t−1)(2t+5)] / 18 over the
    groups of t tied values; z = (S − sign S) / √Var(S); p = 2·(1 − Φ(|z|)). Fewer than 3
    values, or all equal: z = 0, p = 1 (no evidence of a trend).
    """
    y = np.asarray(values, dtype=np.float64)
    y = y[~np.isnan(y)]
    n = int(y.size)
    if n < 3:
        return MannKendall(n, 0, 0.0, 0.0, 1.0)
    s = int(sum(np.sign(y[k:] - y[:-k]).sum() for k in range(1, n)))
    _, ties = np.unique(y, return_counts=True)
    var_s = float(n * (n - 1) * (2 * n + 5) - (ties * (ties - 1) * (2 * ties + 5)).sum()) / 18
    if var_s <= 0:
        return MannKendall(n, s, var_s, 0.0, 1.0)
    z = (s - np.sign(s)) / math.sqrt(var_s)
    return MannKendall(n, s, var_s, float(z), math.erfc(abs(z) / math.sqrt(2)))


def sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Sen's slope: the median of (y_j − y_i) / (x_j − x_i) over all pairs i < j with
    x_i ≠ x_j (NaN y left out). NaN with fewer than two points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return math.nan
    i, j = np.triu_indices(x.size, 1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else math.nan


def trend(x: np.ndarray, y: np.ndarray, window_s: float) -> Trend:
    """Mann-Kendall and Sen's slope of ``y`` at times ``x`` (s) over a window of ``window_s``."""
    y = np.asarray(y, dtype=np.float64)
    slope = sen_slope(x, y)
    median = float(np.nanmedian(y)) if np.isfinite(y).any() else math.nan
    change = slope * window_s / median if median and math.isfinite(median) else math.nan
    return Trend(mann_kendall(y), slope, median, change)


def bin_width(duration_s: float, count: int) -> tuple[int, float]:
    """(bins, width in s) for a window of ``duration_s`` holding ``count`` requests (see the
    module's Method, step 1); (0, 0.0) for an empty or zero-length window."""
    if not duration_s > 0 or count <= 0:
        return 0, 0.0
    width = 1.0 if duration_s >= TARGET_BINS else duration_s / TARGET_BINS
    width = max(width, MIN_BIN_REQUESTS * duration_s / count, duration_s / MAX_BINS)
    n = int(math.floor(duration_s / width + 1e-9))
    return (n, duration_s / n) if n else (0, 0.0)


def steady_state(ts: np.ndarray, latency_us: np.ndarray, ok: np.ndarray,
                 window: Window | None = None, *, include_errors: bool = False) -> SteadyState:
    """The steady-state verdict of requests started at ``ts`` (epoch s) over ``window`` (the
    span of ``ts`` when None); latency over successful requests unless ``include_errors``."""
    window = check_window(window)
    ts = np.asarray(ts, dtype=np.float64)
    if window is None:
        if ts.size < 2:
            return _unknown(0, "fewer than two requests")
        start, end = float(ts.min()), float(np.nextafter(ts.max(), np.inf))
    else:
        start, end = window
    inside = (ts >= start) & (ts < end)
    count = int(inside.sum())
    duration = end - start
    n, width = bin_width(duration, count)
    if n < MIN_BINS:
        return _unknown(n, f"{n} bin(s) of at least {MIN_BIN_REQUESTS} expected requests in "
                           f"{duration:.3g} s ({count:,} requests); {MIN_BINS} are needed")
    rel = ts[inside] - start
    rel /= width
    codes = rel.astype(np.int32)  # floor: rel >= 0
    np.minimum(codes, n - 1, out=codes)
    centers = (np.arange(n) + 0.5) * width  # s since the window's start
    counts = np.bincount(codes, minlength=n)
    throughput = counts / width
    latency = np.asarray(latency_us)[inside]
    sums = np.bincount(codes, weights=latency, minlength=n)
    if not include_errors:  # take the (few) failed requests out, rather than copy the rest
        failed = ~np.asarray(ok, dtype=bool)[inside]
        counts = counts - np.bincount(codes[failed], minlength=n)
        sums -= np.bincount(codes[failed], weights=latency[failed], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ms = np.where(counts > 0, sums / counts / 1000.0, np.nan)
    tp = trend(centers, throughput, duration)
    lat = trend(centers, mean_ms, duration) if np.isfinite(mean_ms).sum() >= MIN_BINS else None
    return SteadyState(_verdict(tp, lat), n, width, tp, lat)


def _verdict(throughput: Trend, latency: Trend | None) -> SteadyVerdict:
    if throughput.moved:
        return SteadyVerdict.WARMING_UP if throughput.change > 0 else SteadyVerdict.DEGRADING
    if latency is not None and latency.moved:
        return SteadyVerdict.WARMING_UP if latency.change < 0 else SteadyVerdict.DEGRADING
    return SteadyVerdict.STEADY


def _unknown(bins: int, reason: str) -> SteadyState:
    return SteadyState(SteadyVerdict.UNKNOWN, bins, 0.0, None, None, reason)


def _pct(trend: Trend | None, what: str) -> str:
    if trend is None or not math.isfinite(trend.change):
        return f"{what} n/a"
    return f"{what} {trend.change * 100:+.1f} % (p = {trend.test.p:.2g})"


def format_steady(state: SteadyState) -> str:
    """One line: the verdict and the figures it rests on."""
    if state.verdict is SteadyVerdict.UNKNOWN:
        return f"steady state: unknown ({state.reason})"
    return (f"steady state: {state.verdict.value}: change over the window (of the median) "
            f"{_pct(state.throughput, 'throughput')}, {_pct(state.latency, 'mean latency')} "
            f"(Mann-Kendall and Sen's slope over {state.bins} bins of {state.bin_s:.3g} s)")


def check_steady(state: SteadyState) -> str | None:
    """A warning when the window was not steady, saying what would fix it; None when steady."""
    if state.verdict is SteadyVerdict.STEADY:
        return None
    if state.verdict is SteadyVerdict.UNKNOWN:
        return f"steady state cannot be judged ({state.reason}): run longer"
    moved = [f"{what} {'rose' if t.change > 0 else 'fell'} by {abs(t.change):.0%} of its median"
             for what, t in (("throughput", state.throughput), ("mean latency", state.latency))
             if t is not None and t.moved]
    why = " and ".join(moved) + f" over the measured window (Mann-Kendall p < {ALPHA:g})"
    if state.verdict is SteadyVerdict.WARMING_UP:
        return (f"not steady, still warming up: {why}; these figures mix warm-up and steady "
                "load: use a longer --warmup, or --warmup auto")
    return (f"not steady, degrading: {why}; the cluster did not hold this load: look at the "
            "timeline (heap, GC, errors) and run longer to see where it settles")
