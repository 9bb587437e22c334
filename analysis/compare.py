"""Comparison of two runs: ratios with bootstrap intervals, a Mann-Whitney test, and a verdict.

Conventions
-----------
- A is the baseline, B the candidate; every ratio is **B / A**. For latency a ratio above 1 means
  B is slower; for throughput a ratio above 1 means B is faster.
- Latency statistics are nearest-rank quantiles (``analysis.quantiles``): median = p50.

Statistics
----------
- **Bootstrap interval of a quantile ratio** (percentile bootstrap, A and B resampled
  independently, ``n_boot`` replicates, seeded ``numpy.random.Generator``). A bootstrap resample
  of size n draws indices ceil(n·U) for uniform U; the map is monotone, so the k-th order
  statistic of the resample is x(ceil(n·U(k))), and U(k) ~ Beta(k, n−k+1). Drawing that one Beta
  variate per replicate gives the *exact* bootstrap distribution of the nearest-rank quantile from
  one sort of the full sample: no subsampling is needed even for millions of rows.
- **Bootstrap interval of the throughput ratio**: ratio of the mean per-second request counts,
  resampling the seconds (plain bootstrap; needs at least ``MIN_SECONDS`` seconds per run).
- **Mann-Whitney U** (two-sided, normal approximation with tie correction) on the latency
  samples: does one tend to be larger than the other? Above ``max_test_n`` values per sample it
  runs on a deterministic (seeded) random subsample, and the output says so.
- Both treat requests as independent draws. Requests of one run are not (GC pauses, warm caches
  and neighbours make latencies come in bursts), so with large samples the interval is too narrow
  and the p-value too small: almost any two runs differ "significantly". That is why repetitions
  matter: ``noise_estimate`` over repeated runs of one configuration measures the run-to-run
  variation, and a difference smaller than it is reported as within noise.

Verdict rules (``Verdict``): UNKNOWN when a sample has fewer than ``MIN_SAMPLE`` values, contains
NaN/inf, or a statistic cannot be computed (never "significant" by default); WITHIN_NOISE when
the interval of the ratio contains 1, when p >= alpha, or when |ratio − 1| is below the given
noise; otherwise SLOWER or FASTER by the direction of the ratio.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.quantiles import nearest_rank, nearest_rank_index
from analysis.window import Window, check_window, window_mask

#: Fewer values than this in either latency sample make a comparison unknown.
MIN_SAMPLE = 20
#: Fewer whole seconds than this in either run make a throughput comparison unknown.
MIN_SECONDS = 10


class Verdict(enum.Enum):
    """Outcome of comparing B against A for one statistic."""

    FASTER = "faster"
    SLOWER = "slower"
    WITHIN_NOISE = "within noise"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RatioEstimate:
    """One statistic of A and B, the ratio B/A with its bootstrap interval, and the verdict."""

    statistic: str
    a: float
    b: float
    ratio: float
    low: float
    high: float
    confidence: float
    higher_is_better: bool
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class Comparison:
    """The comparison of run B against baseline A. ``verdict`` is the median latency's."""

    n_a: int
    n_b: int
    estimates: tuple[RatioEstimate, ...]
    p_value: float
    alpha: float
    noise: float | None
    n_boot: int
    seed: int
    test_n: int | None
    verdict: Verdict
    reason: str

    def estimate(self, statistic: str) -> RatioEstimate | None:
        """The estimate for ``statistic`` ("median", "p95", "throughput"), if computed."""
        return next((e for e in self.estimates if e.statistic == statistic), None)


def _unusable(sample: np.ndarray, name: str, minimum: int, what: str) -> str | None:
    """Why ``sample`` cannot be compared, or None when it can."""
    if sample.size < minimum:
        return f"{name} has {sample.size} {what} (fewer than {minimum}): run longer"
    if not np.isfinite(sample).all():
        return f"{name} contains NaN or infinite values"
    return None


def _judge(
    ratio: float,
    low: float,
    high: float,
    confidence: float,
    noise: float | None,
    higher_is_better: bool,
    p_value: float | None = None,
    alpha: float = 0.05,
) -> tuple[Verdict, str]:
    """Apply the verdict rules (module docstring) to one ratio and its interval."""
    if not all(math.isfinite(v) for v in (ratio, low, high)):
        return Verdict.UNKNOWN, "the ratio could not be computed (a statistic of A is 0)"
    if p_value is not None and not math.isfinite(p_value):
        return Verdict.UNKNOWN, "the Mann-Whitney test could not be computed"
    if low <= 1.0 <= high:
        return Verdict.WITHIN_NOISE, f"the {confidence:.0%} interval of the ratio includes 1"
    if p_value is not None and p_value >= alpha:
        return Verdict.WITHIN_NOISE, f"Mann-Whitney p = {p_value:.3g} >= {alpha:g}"
    if noise is not None and abs(ratio - 1.0) < noise:
        return (
            Verdict.WITHIN_NOISE,
            f"the difference ({abs(ratio - 1):.1%}) is below the run-to-run noise ({noise:.1%})",
        )
    better = ratio > 1.0 if higher_is_better else ratio < 1.0
    verdict = Verdict.FASTER if better else Verdict.SLOWER
    return verdict, f"B/A = {ratio:.3f}, interval [{low:.3f}, {high:.3f}] excludes 1"


def _quantile_replicates(
    sorted_x: np.ndarray, percentile: float, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Exact bootstrap replicates of the nearest-rank quantile (order-statistic method)."""
    n = sorted_x.size
    k = nearest_rank_index(n, percentile)
    u = rng.beta(k, n - k + 1, size=n_boot)
    idx = np.clip(np.ceil(u * n).astype(np.int64) - 1, 0, n - 1)
    return sorted_x[idx]


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def _unknown(
    statistic: str, confidence: float, higher_is_better: bool, reason: str
) -> RatioEstimate:
    nan = math.nan
    return RatioEstimate(
        statistic, nan, nan, nan, nan, nan, confidence, higher_is_better, Verdict.UNKNOWN, reason
    )


def _ratio(b: float, a: float) -> float:
    return b / a if a > 0 else math.nan


def compare_samples(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    throughput_a: Sequence[float] | np.ndarray | None = None,
    throughput_b: Sequence[float] | np.ndarray | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    noise: float | None = None,
    p95_noise: float | None = None,
    throughput_noise: float | None = None,
    max_test_n: int = 200_000,
) -> Comparison:
    """Compare latency sample ``b`` against baseline ``a`` (any one unit, e.g. ms).

    Estimates the median and p95 ratios B/A with bootstrap intervals and runs Mann-Whitney U;
    with per-second request counts ``throughput_a``/``throughput_b`` also the throughput ratio.
    ``noise`` is the run-to-run relative spread of the median (``noise_estimate``);
    ``p95_noise`` defaults to it, ``throughput_noise`` applies to throughput. Deterministic for a
    given ``seed``.
    """
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise ValueError("alpha and confidence must be within (0, 1)")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    xa = np.asarray(a, dtype=np.float64).ravel()
    xb = np.asarray(b, dtype=np.float64).ravel()
    p95_noise = noise if p95_noise is None else p95_noise
    rng = np.random.default_rng([seed, 0])
    problem = _unusable(xa, "sample A", MIN_SAMPLE, "values") or _unusable(
        xb, "sample B", MIN_SAMPLE, "values"
    )
    estimates: list[RatioEstimate] = []
    p_value, test_n = math.nan, None
    if problem is None:
        sa, sb = np.sort(xa), np.sort(xb)
        if max(xa.size, xb.size) > max_test_n:
            sub = np.random.default_rng([seed, 1])
            test_n = max_test_n
            ta = xa if xa.size <= max_test_n else sub.choice(xa, max_test_n, replace=False)
            tb = xb if xb.size <= max_test_n else sub.choice(xb, max_test_n, replace=False)
        else:
            ta, tb = xa, xb
        from scipy import stats  # here: importing it costs a one-run report ~0.4 s

        p_value = float(
            stats.mannwhitneyu(ta, tb, alternative="two-sided", method="asymptotic").pvalue
        )
        for name, pct, stat_noise, p in (
            ("median", 50.0, noise, p_value),
            ("p95", 95.0, p95_noise, None),
        ):
            qa, qb = (float(v) for v in (nearest_rank(sa, [pct])[0], nearest_rank(sb, [pct])[0]))
            rep_a = _quantile_replicates(sa, pct, n_boot, rng)
            rep_b = _quantile_replicates(sb, pct, n_boot, rng)
            with np.errstate(divide="ignore", invalid="ignore"):
                low, high = _interval(rep_b / rep_a, confidence) if qa > 0 else (math.nan,) * 2
            ratio = _ratio(qb, qa)
            verdict, reason = _judge(ratio, low, high, confidence, stat_noise, False, p, alpha)
            estimates.append(
                RatioEstimate(name, qa, qb, ratio, low, high, confidence, False, verdict, reason)
            )
    else:
        estimates = [_unknown(name, confidence, False, problem) for name in ("median", "p95")]
    if throughput_a is not None and throughput_b is not None:
        estimates.append(
            _throughput_estimate(
                np.asarray(throughput_a, dtype=np.float64).ravel(),
                np.asarray(throughput_b, dtype=np.float64).ravel(),
                n_boot,
                confidence,
                throughput_noise,
                rng,
            )
        )
    median = estimates[0]
    return Comparison(
        n_a=int(xa.size),
        n_b=int(xb.size),
        estimates=tuple(estimates),
        p_value=p_value,
        alpha=alpha,
        noise=noise,
        n_boot=n_boot,
        seed=seed,
        test_n=test_n,
        verdict=median.verdict,
        reason=median.reason,
    )


def _throughput_estimate(
    ca: np.ndarray,
    cb: np.ndarray,
    n_boot: int,
    confidence: float,
    noise: float | None,
    rng: np.random.Generator,
) -> RatioEstimate:
    """Ratio of mean per-second counts B/A with a plain bootstrap over seconds."""
    problem = _unusable(ca, "throughput A", MIN_SECONDS, "seconds") or _unusable(
        cb, "throughput B", MIN_SECONDS, "seconds"
    )
    if problem is not None:
        return _unknown("throughput", confidence, True, problem)
    ma, mb = float(ca.mean()), float(cb.mean())
    rep_a, rep_b = _bootstrap_means(ca, n_boot, rng), _bootstrap_means(cb, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = _interval(rep_b / rep_a, confidence) if ma > 0 else (math.nan, math.nan)
    ratio = _ratio(mb, ma)
    verdict, reason = _judge(ratio, low, high, confidence, noise, True)
    return RatioEstimate("throughput", ma, mb, ratio, low, high, confidence, True, verdict, reason)


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``x``, drawn in chunks to bound memory."""
    chunk = max(1, 2_000_000 // x.size)
    parts = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        parts.append(x[rng.integers(0, x.size, size=(size, x.size))].mean(axis=1))
    return np.concatenate(parts)


def per_second_counts(ts: np.ndarray, window: Window | None = None) -> np.ndarray:
    """Requests started in each whole second of ``window`` (or of the span of ``ts``).

    A trailing partial second is dropped, so every bin covers the same length of time.
    """
    ts = np.asarray(ts, dtype=np.float64)
    window = check_window(window)
    if window is None:
        if ts.size == 0:
            return np.zeros(0, dtype=np.int64)
        window = (float(ts.min()), float(ts.max()))
    start, end = window
    seconds = int(math.floor(end - start))
    inside = ts[(ts >= start) & (ts < start + seconds)]
    return np.bincount((inside - start).astype(np.int64), minlength=seconds)[:seconds]


def compare_runs(
    requests_a: pd.DataFrame,
    requests_b: pd.DataFrame,
    window_a: Window | None = None,
    window_b: Window | None = None,
    **kwargs: Any,
) -> Comparison:
    """``compare_samples`` on two requests frames: latency (ms) and throughput of ok requests.

    Only successful requests count (a configuration that fails fast must not look faster), and
    rows outside each run's measured window are excluded; keyword arguments go to
    ``compare_samples``.
    """
    samples = []
    for frame, window in ((requests_a, window_a), (requests_b, window_b)):
        ts = frame["ts"].to_numpy(dtype=np.float64)
        mask = window_mask(ts, window)
        ok = frame["ok"].to_numpy(dtype=bool, na_value=False)
        keep = ok if mask is None else ok & mask
        latency_ms = frame["latency_us"].to_numpy(dtype=np.float64)[keep] / 1000.0
        samples.append((latency_ms, per_second_counts(ts[keep], window)))
    (lat_a, tp_a), (lat_b, tp_b) = samples
    return compare_samples(lat_a, lat_b, throughput_a=tp_a, throughput_b=tp_b, **kwargs)


_NOISE_STATISTICS = {"median": 50.0, "p95": 95.0, "p99": 99.0}


def noise_estimate(
    samples: Iterable[Sequence[float] | np.ndarray], statistic: str = "median"
) -> float | None:
    """Run-to-run noise: relative spread of one statistic over repeated runs of one config.

    ``samples`` holds one array per repetition (latencies, or per-second counts for
    ``statistic="mean"``; a scalar per run works too). The noise is (max − min) / median of the
    per-run statistics: the largest relative difference that repetition alone produced. It is
    None when fewer than two usable runs are given (unknown, not zero): at least three
    repetitions give a useful figure.
    """
    values = []
    for sample in samples:
        x = np.atleast_1d(np.asarray(sample, dtype=np.float64)).ravel()
        if x.size == 0 or not np.isfinite(x).all():
            continue
        if statistic == "mean":
            values.append(float(x.mean()))
        elif statistic in _NOISE_STATISTICS:
            values.append(float(nearest_rank(x, [_NOISE_STATISTICS[statistic]])[0]))
        else:
            raise ValueError(f"statistic must be mean, median, p95 or p99, got {statistic!r}")
    if len(values) < 2:
        return None
    centre = float(np.median(values))
    if centre <= 0:
        return None
    return (max(values) - min(values)) / centre


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys ({"jvm": {"xmx": 1}} → {"jvm.xmx": 1}).

    Lists and other values are leaves, compared whole.
    """
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _is_swept(key: str, swept: Iterable[str]) -> bool:
    """A key belongs to a swept parameter when the parameter's dotted segments appear in it,
    aligned on segment boundaries: "jvm.xmx" covers "jvm.xmx" and "nodes.node1.jvm.xmx"."""
    padded = f".{key}."
    return any(f".{param}." in padded for param in swept)


def snapshot_diff(
    snapshot_a: Mapping[str, Any], snapshot_b: Mapping[str, Any], swept: Iterable[str]
) -> list[str]:
    """Dotted keys whose values differ between two cluster snapshots, except swept parameters.

    A key present in only one snapshot differs. A non-empty result means the runs differ in more
    than what was swept, and a comparison of them does not isolate the swept parameters.
    """
    swept = list(swept)
    flat_a, flat_b = flatten(snapshot_a), flatten(snapshot_b)
    missing = object()
    return sorted(
        key
        for key in flat_a.keys() | flat_b.keys()
        if flat_a.get(key, missing) != flat_b.get(key, missing) and not _is_swept(key, swept)
    )


def _fmt(value: float, unit: str) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.3f}{unit}"


def format_comparison(
    comparison: Comparison, label_a: str = "A", label_b: str = "B", unit: str = " ms"
) -> list[str]:
    """The comparison as text lines (no printing): one line per statistic, then notes."""
    lines = [f"samples: {label_a} {comparison.n_a:,}, {label_b} {comparison.n_b:,}"]
    for e in comparison.estimates:
        u = " req/s" if e.statistic == "throughput" else unit
        interval = (
            f" [{e.low:.3f}, {e.high:.3f}] ({e.confidence:.0%} CI)" if math.isfinite(e.low) else ""
        )
        ratio = f"{e.ratio:.3f}" if math.isfinite(e.ratio) else "n/a"
        test = ""
        if e.statistic == "median" and math.isfinite(comparison.p_value):
            p = comparison.p_value
            test = f", Mann-Whitney p {'< 1e-16' if p < 1e-16 else f'= {p:.3g}'}"
        lines.append(
            f"{e.statistic}: {label_a} {_fmt(e.a, u)}, {label_b} {_fmt(e.b, u)}, "
            f"{label_b}/{label_a} {ratio}{interval}{test} -> {e.verdict.value} ({e.reason})"
        )
    lines.append(
        f"note: bootstrap with {comparison.n_boot:,} resamples (seed {comparison.seed}); quantile "
        "resamples drawn exactly from the full samples (order statistics), no subsampling"
    )
    if comparison.test_n is not None:
        lines.append(
            f"note: Mann-Whitney ran on a deterministic random subsample of {comparison.test_n:,} "
            f"values per sample (seed {comparison.seed}); the samples have "
            f"{comparison.n_a:,} and {comparison.n_b:,}"
        )
    if comparison.noise is None and comparison.verdict in (Verdict.FASTER, Verdict.SLOWER):
        lines.append(
            "note: no run-to-run noise estimate: requests within one run are not independent, "
            "so repeat each configuration (3 runs or more) and pass noise_estimate(...) to tell a "
            "real difference from run-to-run variation"
        )
    return lines
