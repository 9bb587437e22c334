"""Capacity models: the Universal Scalability Law, the knee of a step-load run, Little's law.

Universal Scalability Law (Gunther)
-----------------------------------
X(N) = λN / (1 + σ(N−1) + κN(N−1)), where N is the concurrency (virtual users, or the number of
nodes when runs with different node counts are fitted), λ the throughput of one unit without
contention, σ the contention (serialized share, 0 ≤ σ ≤ 1) and κ the coherency cost (crosstalk,
κ ≥ 0). With κ > 0 throughput peaks at N* = sqrt((1−σ)/κ) and falls beyond; with κ = 0 it
approaches λ/σ. The fit is least squares on throughput (absolute residuals), so it assumes
roughly equal noise at each N; points should be steady-state throughputs of the measured window.

Knee of a step-load run
-----------------------
The initial slope is the throughput per user of the first step (the line through the origin).
A step "stops rising" when its marginal gain (ΔX/ΔN against the previous step) falls below
``gain_fraction`` of that slope; it "breaks the SLO" when its p95 exceeds ``slo_p95_ms`` (or its
error rate exceeds ``max_error_rate``). The knee is the last step before the first such step:
the highest load that still scaled and met the SLO.

Little's law
------------
In a closed system of N users with mean response time R and think time Z, N = X·(R + Z). X·R is
the number of requests in flight at the cluster. When X·(R + Z) is well below N, the users spend
time neither waiting for the cluster nor thinking: the generator (CPU, connection set-up) set the
pace. When X·(R + Z) ≈ N but X·R ≪ N, think time set the pace and throughput says little about
the cluster.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.quantiles import grouped_nearest_rank


def usl_throughput(n: np.ndarray | float, lambda_: float, sigma: float, kappa: float) -> np.ndarray:
    """X(N) = λN / (1 + σ(N−1) + κN(N−1))."""
    n = np.asarray(n, dtype=np.float64)
    return lambda_ * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


@dataclass(frozen=True)
class USLFit:
    """Fitted USL parameters, goodness of fit (R²) and the throughput peak.

    ``points`` is the number of points fitted and ``n_max`` the largest concurrency among them:
    a peak (or a ``nodes_needed`` answer) beyond ``n_max`` is an extrapolation of the model.
    """

    lambda_: float
    sigma: float
    kappa: float
    r2: float
    n_peak: float
    x_peak: float
    points: int
    n_max: float

    def throughput(self, n: np.ndarray | float) -> np.ndarray:
        """Modelled throughput at concurrency ``n``."""
        return usl_throughput(n, self.lambda_, self.sigma, self.kappa)


def fit_usl(concurrency: np.ndarray, throughput: np.ndarray) -> USLFit:
    """Fit the USL to (concurrency, throughput) points with scipy's bounded least squares.

    Initial guess: λ from the smallest N (X/N there), then σ and κ from the linearized form
    N·λ/X − 1 = σ(N−1) + κN(N−1) by non-negative least squares. Bounds: λ > 0, 0 ≤ σ ≤ 1,
    κ ≥ 0. Needs at least three distinct concurrencies; raises ValueError otherwise.
    """
    n = np.asarray(concurrency, dtype=np.float64).ravel()
    x = np.asarray(throughput, dtype=np.float64).ravel()
    if n.shape != x.shape:
        raise ValueError("concurrency and throughput must have the same length")
    if not (np.isfinite(n).all() and np.isfinite(x).all()):
        raise ValueError("concurrency and throughput must not contain NaN or infinite values")
    if (n <= 0).any() or (x <= 0).any():
        raise ValueError("concurrency and throughput must be positive (drop idle steps)")
    if np.unique(n).size < 3:
        raise ValueError(
            f"a USL fit needs at least 3 distinct concurrencies, got {np.unique(n).size}: "
            "run more load steps"
        )
    from scipy import optimize  # here: importing scipy costs a report without a step run ~0.3 s

    n_min = n.min()
    lambda0 = float(x[n == n_min].mean() / n_min)
    design = np.column_stack((n - 1.0, n * (n - 1.0)))
    (sigma0, kappa0), _ = optimize.nnls(design, n * lambda0 / x - 1.0)
    p0 = [lambda0, min(float(sigma0), 0.99), float(kappa0)]
    try:
        with warnings.catch_warnings():  # the covariance is not used (and needs > 3 points)
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(
                usl_throughput,
                n,
                x,
                p0=p0,
                bounds=([1e-12, 0.0, 0.0], [np.inf, 1.0, np.inf]),
                x_scale="jac",
                maxfev=20_000,
            )
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"the USL fit did not converge: {exc}") from exc
    lambda_, sigma, kappa = (float(p) for p in params)
    residual = x - usl_throughput(n, lambda_, sigma, kappa)
    total = float(((x - x.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else math.nan
    if kappa > 0:
        n_peak = max(1.0, math.sqrt(max(0.0, 1.0 - sigma) / kappa))
        x_peak = float(usl_throughput(n_peak, lambda_, sigma, kappa))
    else:
        n_peak = math.inf
        x_peak = lambda_ / sigma if sigma > 0 else math.inf
    return USLFit(lambda_, sigma, kappa, r2, n_peak, x_peak, int(n.size), float(n.max()))


def nodes_needed(fit: USLFit, target_throughput: float, headroom: float = 0.2) -> int | None:
    """Smallest whole N with X(N) ≥ target·(1 + headroom), or None when the model never gets
    there (the required throughput is beyond the peak).

    N is in the unit the fit was made in: nodes for a fit over node counts, users otherwise.
    An answer beyond ``fit.n_max`` is an extrapolation of the model.
    """
    if target_throughput <= 0 or headroom < 0:
        raise ValueError("target_throughput must be positive and headroom not negative")
    required = target_throughput * (1.0 + headroom)
    if required > fit.x_peak:
        return None
    lam, sig, kap = fit.lambda_, fit.sigma, fit.kappa
    # X(N) >= R  <=>  R·κ·N² + (R(σ−κ) − λ)·N + R(1−σ) <= 0; the smaller root is the crossing.
    a, b, c = required * kap, required * (sig - kap) - lam, required * (1.0 - sig)
    if a == 0:
        root = -c / b if b < 0 else math.inf
    else:
        disc = b * b - 4 * a * c
        root = (-b - math.sqrt(disc)) / (2 * a) if disc >= 0 else math.inf
    if not math.isfinite(root):
        return None
    n = max(1, math.ceil(root - 1e-9))
    limit = n + 3
    while fit.throughput(n) < required:  # guard against rounding at the crossing
        n += 1
        if n > limit:
            return None
    while n > 1 and fit.throughput(n - 1) >= required:
        n -= 1
    return n


def step_aggregates(
    requests: pd.DataFrame,
    users_timeline: pd.DataFrame | Sequence[tuple[float, float]],
    end_ts: float | None = None,
    settle_s: float = 0.0,
) -> pd.DataFrame:
    """Per-step figures of a step-load run, one row per step of constant user count.

    ``users_timeline`` holds (ts, users) rows from the load shape, as a frame or as a list of
    step boundaries ``[(start_ts, users), ...]``: each step starts at the first row of a new user
    count and ends where the next starts (the last at ``end_ts``, default just
    after the last request). The first ``settle_s`` seconds of each step are left out (ramp
    transient). Requests count by their start time. Columns: step, start_ts, end_ts, users,
    duration_s, count, ok_count, error_rate, throughput (ok requests/s), attempted_throughput (all
    requests/s), p50_ms, p95_ms, p99_ms and mean_ms (ok requests, nearest rank), concurrency
    (Σ latency / duration: requests in flight by Little's law).
    """
    if not isinstance(users_timeline, pd.DataFrame):
        users_timeline = pd.DataFrame(list(users_timeline), columns=["ts", "users"])
    timeline = users_timeline.sort_values("ts", kind="stable")
    t = timeline["ts"].to_numpy(dtype=np.float64)
    u = timeline["users"].to_numpy(dtype=np.float64)
    if t.size == 0:
        raise ValueError("users_timeline is empty: pass the load shape's (ts, users) rows")
    change = np.concatenate(([True], u[1:] != u[:-1]))
    starts, users = t[change], u[change]
    ts = requests["ts"].to_numpy(dtype=np.float64)
    if end_ts is None:
        end_ts = float(np.nextafter(ts.max(), np.inf)) if ts.size else float(starts[-1])
    ends = np.append(starts[1:], end_ts)
    begin = starts + settle_s
    duration = np.clip(ends - begin, 0.0, None)

    step = np.searchsorted(starts, ts, side="right") - 1
    valid = step >= 0
    safe = np.where(valid, step, 0)
    valid &= (ts >= begin[safe]) & (ts < ends[safe])
    step = np.where(valid, step, -1)
    k = starts.size
    ok = requests["ok"].to_numpy(dtype=bool, na_value=False)
    latency_ms = requests["latency_us"].to_numpy(dtype=np.float64) / 1000.0
    good = valid & ok
    count = np.bincount(step[valid], minlength=k)
    ok_count = np.bincount(step[good], minlength=k)
    latency_sum_s = np.bincount(step[valid], weights=latency_ms[valid], minlength=k) / 1000.0
    ok_latency_sum = np.bincount(step[good], weights=latency_ms[good], minlength=k)
    pcts = grouped_nearest_rank(step[good], k, latency_ms[good], (50.0, 95.0, 99.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_s = np.where(duration > 0, 1.0 / duration, np.nan)
        return pd.DataFrame(
            {
                "step": np.arange(k),
                "start_ts": starts,
                "end_ts": ends,
                "users": users,
                "duration_s": duration,
                "count": count,
                "ok_count": ok_count,
                "error_rate": np.where(count > 0, (count - ok_count) / count, np.nan),
                "throughput": ok_count * per_s,
                "attempted_throughput": count * per_s,
                "p50_ms": pcts[:, 0],
                "p95_ms": pcts[:, 1],
                "p99_ms": pcts[:, 2],
                "mean_ms": np.where(ok_count > 0, ok_latency_sum / ok_count, np.nan),
                "concurrency": latency_sum_s * per_s,
            }
        )


@dataclass(frozen=True)
class Knee:
    """The knee of a step-load run (see the module docstring).

    ``index`` is the position of the knee step in ``steps`` (None when even the first step broke
    the SLO); ``trigger_index`` the step where throughput stopped rising or the SLO broke (None
    when neither happened: the knee was not reached and the last step is reported).
    """

    index: int | None
    users: float
    throughput: float
    p95_ms: float
    trigger_index: int | None
    reason: str

    @property
    def reached(self) -> bool:
        return self.trigger_index is not None


def _load_steps(steps: pd.DataFrame) -> list[tuple[int, Any]]:
    """(position, row) of the steps find_knee uses: from the first step with users > 0, the
    steps with strictly increasing users (a ramp-down at the end is ignored)."""
    used: list[tuple[int, Any]] = []
    for position, row in enumerate(steps.itertuples(index=False)):
        if not used:
            if row.users > 0:
                used.append((position, row))
        elif row.users > used[-1][1].users:
            used.append((position, row))
        else:
            break
    return used


def _breaks_slo(row: Any, slo_p95_ms: float | None, max_error_rate: float | None) -> bool:
    if slo_p95_ms is not None and not row.p95_ms <= slo_p95_ms:  # NaN p95 breaks it too
        return True
    if max_error_rate is not None:
        return bool(getattr(row, "error_rate", 0.0) > max_error_rate)
    return False


def find_knee(
    steps: pd.DataFrame,
    slo_p95_ms: float | None = None,
    *,
    gain_fraction: float = 0.2,
    max_error_rate: float | None = None,
) -> Knee:
    """The knee of a step-load run from per-step (users, throughput, p95_ms[, error_rate]) rows,
    in load order (``step_aggregates`` output): the last step before throughput stops rising or
    the SLO breaks, whichever comes first."""
    if not 0 < gain_fraction < 1:
        raise ValueError(f"gain_fraction must be within (0, 1), got {gain_fraction}")
    used = _load_steps(steps)
    if not used:
        raise ValueError("find_knee needs at least one step with users > 0")
    rows = [row for _, row in used]
    slope0 = rows[0].throughput / rows[0].users
    trigger, reason = None, "not reached: throughput still rising and SLO met at the last step"
    for i, row in enumerate(rows):
        if _breaks_slo(row, slo_p95_ms, max_error_rate):
            trigger = i
            reason = f"SLO broken at {row.users:g} users (p95 {row.p95_ms:.1f} ms)"
            break
        if i > 0:
            gain = (row.throughput - rows[i - 1].throughput) / (row.users - rows[i - 1].users)
            if not gain >= gain_fraction * slope0:
                trigger = i
                reason = (
                    f"throughput stopped rising at {row.users:g} users "
                    f"({gain:+.2f} req/s per user, initial slope {slope0:.2f})"
                )
                break
    knee_at = len(rows) - 1 if trigger is None else trigger - 1
    trigger_index = None if trigger is None else used[trigger][0]
    if knee_at < 0:
        reason += ": no step met the SLO"
        return Knee(None, math.nan, math.nan, math.nan, trigger_index, reason)
    position, knee = used[knee_at]
    return Knee(
        position,
        float(knee.users),
        float(knee.throughput),
        float(knee.p95_ms),
        trigger_index,
        reason,
    )


def max_sustainable_throughput(
    steps: pd.DataFrame, slo_p95_ms: float, max_error_rate: float | None = None
) -> float | None:
    """Highest step throughput reached before the first step that breaks the SLO (p95, and
    error rate when ``max_error_rate`` is given); None when the first step already breaks it.
    Uses the same steps as ``find_knee`` (increasing users, a ramp-down ignored)."""
    best = None
    for _, row in _load_steps(steps):
        if _breaks_slo(row, slo_p95_ms, max_error_rate):
            break
        best = float(row.throughput) if best is None else max(best, float(row.throughput))
    return best


@dataclass(frozen=True)
class LittlesLaw:
    """Little's-law check of one run or step (see the module docstring)."""

    users: float
    throughput: float
    mean_latency_s: float
    think_time_s: float
    in_flight: float
    implied_users: float
    utilization: float
    generator_bound: bool
    think_time_bound: bool
    note: str

    @property
    def flagged(self) -> bool:
        """True when the client side, not the cluster, set the pace."""
        return self.generator_bound or self.think_time_bound


def littles_law(
    throughput: float,
    mean_latency_s: float,
    users: float,
    think_time_s: float = 0.0,
    *,
    threshold: float = 0.8,
) -> LittlesLaw:
    """Check X·(R + Z) against the user count N.

    ``implied_users`` = X·(R + Z) are the users Little's law accounts for; ``utilization`` is
    their share of N. Below ``threshold`` the run is generator-bound. If the users are accounted
    for but the requests in flight X·R are below ``threshold``·N, it is think-time-bound.
    """
    if users <= 0:
        raise ValueError(f"users must be positive, got {users}")
    if throughput < 0 or mean_latency_s < 0 or think_time_s < 0:
        raise ValueError("throughput, mean latency and think time must not be negative")
    in_flight = throughput * mean_latency_s
    implied = throughput * (mean_latency_s + think_time_s)
    utilization = implied / users
    generator_bound = utilization < threshold
    think_bound = not generator_bound and in_flight < threshold * users
    if generator_bound:
        note = (
            f"only {implied:.1f} of {users:g} users are accounted for by X·(R+Z): the generator, "
            "not the cluster, set the pace (check generator CPU; add --processes)"
        )
    elif think_bound:
        note = (
            f"{in_flight:.1f} requests in flight for {users:g} users: think time set the pace, "
            "throughput barely depends on the cluster"
        )
    else:
        note = f"{in_flight:.1f} requests in flight for {users:g} users: the cluster set the pace"
    return LittlesLaw(
        users, throughput, mean_latency_s, think_time_s, in_flight, implied, utilization,
        generator_bound, think_bound, note,
    )  # fmt: skip


#: A USL peak beyond this multiple of the largest measured concurrency is reported as none.
FAR_PEAK = 100.0


def format_usl(fit: USLFit, unit: str = "users") -> list[str]:
    """The USL fit as text lines (no printing)."""
    if not math.isfinite(fit.n_peak):
        peak = f"no peak (κ = 0): throughput approaches {fit.x_peak:,.1f} req/s"
    elif fit.n_peak > FAR_PEAK * fit.n_max:
        peak = (f"no peak within reach (κ ≈ 0): throughput approaches {fit.x_peak:,.1f} req/s "
                f"at a peak beyond {FAR_PEAK:g}× the largest measured concurrency, an "
                "extrapolation of the model")
    else:
        peak = f"peak {fit.x_peak:,.1f} req/s at {fit.n_peak:,.1f} {unit}"
    lines = [
        f"USL fit over {fit.points} points: λ = {fit.lambda_:,.2f} req/s per {unit[:-1] or unit}, "
        f"σ = {fit.sigma:.4f}, κ = {fit.kappa:.6f}, R² = {fit.r2:.3f}",
        peak,
    ]
    if math.isfinite(fit.n_peak) and 2 * fit.n_max < fit.n_peak <= FAR_PEAK * fit.n_max:
        lines.append(
            f"check: the peak lies far beyond the largest measured concurrency ({fit.n_max:g}): "
            "it is an extrapolation; extend the load to see it"
        )
    if not fit.r2 >= 0.9:
        lines.append(
            "check: the USL explains the points poorly (R² < 0.9): use more steps or longer ones"
        )
    return lines


def format_knee(knee: Knee, max_throughput: float | None = None) -> list[str]:
    """The knee (and the maximum sustainable throughput, when given) as text lines."""
    if knee.index is None:
        lines = [f"knee: none ({knee.reason})"]
    else:
        lines = [
            f"knee: {knee.users:g} users, {knee.throughput:,.1f} req/s, p95 {knee.p95_ms:,.1f} ms "
            f"({knee.reason})"
        ]
    if max_throughput is not None:
        lines.append(f"max sustainable throughput under the SLO: {max_throughput:,.1f} req/s")
    if not knee.reached:
        lines.append("check: the knee was not reached: extend the step load to more users")
    return lines
