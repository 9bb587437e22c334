"""Capacity models: USL fit, nodes needed, step aggregates, knee, Little's law."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.capacity import (
    USLFit,
    find_knee,
    fit_usl,
    format_knee,
    format_usl,
    littles_law,
    max_sustainable_throughput,
    nodes_needed,
    step_aggregates,
    usl_throughput,
)

LAMBDA, SIGMA, KAPPA = 1000.0, 0.05, 0.001
LEVELS = np.array([1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128], dtype=float)


def usl_by_hand(n: float) -> float:
    return LAMBDA * n / (1 + SIGMA * (n - 1) + KAPPA * n * (n - 1))


def test_usl_fit_recovers_exact_parameters() -> None:
    fit = fit_usl(LEVELS, [usl_by_hand(n) for n in LEVELS])
    assert fit.lambda_ == pytest.approx(LAMBDA, rel=1e-4)
    assert fit.sigma == pytest.approx(SIGMA, rel=1e-3)
    assert fit.kappa == pytest.approx(KAPPA, rel=1e-3)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n_peak == pytest.approx(math.sqrt((1 - SIGMA) / KAPPA), rel=1e-3)
    assert fit.x_peak == pytest.approx(usl_by_hand(fit.n_peak), rel=1e-4)


def test_usl_fit_recovers_parameters_from_noisy_repetitions() -> None:
    rng = np.random.default_rng(42)
    n = np.repeat(LEVELS, 3)
    x = np.array([usl_by_hand(v) for v in n]) * rng.normal(1.0, 0.02, n.size)
    fit = fit_usl(n, x)
    assert fit.lambda_ == pytest.approx(LAMBDA, rel=0.05)
    assert fit.sigma == pytest.approx(SIGMA, abs=0.01)
    assert fit.kappa == pytest.approx(KAPPA, rel=0.2)
    assert fit.r2 > 0.95
    assert fit.points == n.size


def test_usl_fit_without_coherency_cost_has_no_peak() -> None:
    x = [1000 * n / (1 + 0.1 * (n - 1)) for n in LEVELS]
    fit = fit_usl(LEVELS, x)
    assert fit.kappa == pytest.approx(0.0, abs=1e-7)
    assert fit.sigma == pytest.approx(0.1, rel=1e-3)
    assert fit.x_peak == pytest.approx(10_000, rel=1e-3)  # λ/σ, at an extrapolated peak
    assert any("extrapolation" in line for line in format_usl(fit))


def test_usl_fit_on_three_points_is_exact_and_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_usl(LEVELS[[0, 4, 8]], [usl_by_hand(n) for n in LEVELS[[0, 4, 8]]])
    assert fit.sigma == pytest.approx(SIGMA, rel=1e-3)
    assert fit.kappa == pytest.approx(KAPPA, rel=1e-3)


@pytest.mark.parametrize(
    ("n", "x", "message"),
    [
        ([1, 2, 2], [1, 2, 2], "at least 3 distinct"),
        ([1, 2, 3], [1, np.nan, 3], "NaN"),
        ([0, 2, 3], [1, 2, 3], "positive"),
    ],
)
def test_usl_fit_refuses_unusable_points(n: list[float], x: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_usl(np.array(n, dtype=float), np.array(x, dtype=float))


@pytest.mark.parametrize("target", [500.0, 5_000.0, 9_000.0, 12_000.0])
def test_nodes_needed_is_the_smallest_sufficient_n(target: float) -> None:
    n_peak = math.sqrt((1 - SIGMA) / KAPPA)
    fit = USLFit(LAMBDA, SIGMA, KAPPA, 1.0, n_peak, usl_by_hand(n_peak), 12, 128.0)
    required = target * 1.2
    brute = next((n for n in range(1, 31) if usl_by_hand(n) >= required), None)
    assert nodes_needed(fit, target, headroom=0.2) == brute


def test_nodes_needed_beyond_the_peak_is_none() -> None:
    fit = fit_usl(LEVELS, [usl_by_hand(n) for n in LEVELS])
    assert nodes_needed(fit, fit.x_peak, headroom=0.2) is None
    assert nodes_needed(fit, fit.x_peak / 1.2 * 0.99, headroom=0.2) is not None
    linear = USLFit(100.0, 0.0, 0.0, 1.0, math.inf, math.inf, 3, 4.0)
    assert nodes_needed(linear, 1000.0, headroom=0.0) == 10
    assert nodes_needed(linear, 1000.0) == 12
    lines = format_usl(fit, unit="nodes")
    assert lines[0].startswith("USL fit over 12 points: λ = 1,000.00 req/s per node")


def synthetic_steps(slo_break_at: int | None = None) -> pd.DataFrame:
    """Users 10..100; throughput 50 req/s per user up to 50 users, then flat."""
    users = np.arange(10, 101, 10, dtype=float)
    throughput = np.where(users <= 50, 50 * users, 2500 + 0.5 * (users - 50))
    p95 = np.where(users <= 50, 20.0, 20.0 + (users - 50) * 4)
    if slo_break_at is not None:
        p95 = np.where(users >= slo_break_at, 500.0, 20.0)
    return pd.DataFrame({"users": users, "throughput": throughput, "p95_ms": p95})


def test_knee_where_throughput_stops_rising() -> None:
    knee = find_knee(synthetic_steps())
    assert knee.reached and knee.index == 4
    assert (knee.users, knee.throughput) == (50.0, 2500.0)
    assert knee.trigger_index == 5 and "stopped rising at 60 users" in knee.reason


def test_knee_where_the_slo_breaks_first() -> None:
    knee = find_knee(synthetic_steps(slo_break_at=40), slo_p95_ms=100.0)
    assert knee.index == 2 and knee.users == 30.0 and "SLO broken at 40 users" in knee.reason
    # the plateau (60 users) comes before a late SLO break (80 users)
    assert find_knee(synthetic_steps(slo_break_at=80), slo_p95_ms=100.0).users == 50.0


def test_knee_not_reached_and_not_met() -> None:
    rising = pd.DataFrame({"users": [10, 20, 30], "throughput": [100, 200, 300], "p95_ms": [5] * 3})
    knee = find_knee(rising)
    assert not knee.reached and knee.users == 30
    assert format_knee(knee)[-1].startswith("check: the knee was not reached")
    failing = find_knee(rising, slo_p95_ms=1.0)
    assert failing.index is None and "no step met the SLO" in failing.reason


def test_ramp_down_after_the_peak_is_ignored() -> None:
    steps = pd.concat([synthetic_steps(), synthetic_steps().iloc[::-1]], ignore_index=True)
    assert find_knee(steps).users == 50.0


def test_max_sustainable_throughput() -> None:
    steps = synthetic_steps()  # p95 = 20 + 4·(users − 50) beyond 50 users
    assert max_sustainable_throughput(steps, slo_p95_ms=100.0) == pytest.approx(2510.0)
    assert max_sustainable_throughput(steps, slo_p95_ms=10.0) is None
    steps["error_rate"] = np.where(steps["users"] >= 60, 0.05, 0.0)
    assert max_sustainable_throughput(steps, 100.0, max_error_rate=0.01) == 2500.0
    assert find_knee(steps, 1000.0, max_error_rate=0.01, gain_fraction=0.001).users == 50.0


def test_step_aggregates_from_requests(t0: float) -> None:
    """Three 10 s steps of 10/20/30 users; each user makes 10 req/s of known latency."""
    rows = []
    for step, users in enumerate((10, 20, 30)):
        for i in range(users * 100):
            ts = t0 + step * 10 + i / (users * 10)
            latency_us = 1000 * (step + 1) + (i % 100) * 10
            rows.append((ts, latency_us, i % 50 != 0))
    requests = pd.DataFrame(rows, columns=["ts", "latency_us", "ok"])
    timeline = pd.DataFrame(
        {"ts": t0 + np.array([0, 5, 10, 15, 20, 25.0]), "users": [10, 10, 20, 20, 30, 30]}
    )
    steps = step_aggregates(requests, timeline, end_ts=t0 + 30)
    assert steps["users"].tolist() == [10, 20, 30]
    assert steps["count"].tolist() == [1000, 2000, 3000]
    assert steps["ok_count"].tolist() == [980, 1960, 2940]
    assert steps["throughput"].tolist() == pytest.approx([98.0, 196.0, 294.0])
    assert steps["error_rate"].tolist() == pytest.approx([0.02] * 3)
    for step in range(3):
        ok_lat = sorted(
            r[1] for r in rows if r[2] and t0 + 10 * step <= r[0] < t0 + 10 * (step + 1)
        )
        p95 = ok_lat[-(-95 * len(ok_lat) // 100) - 1] / 1000
        assert steps.loc[step, "p95_ms"] == p95
    settled = step_aggregates(requests, timeline, end_ts=t0 + 30, settle_s=5.0)
    assert settled["count"].tolist() == [500, 1000, 1500]
    assert settled["attempted_throughput"].tolist() == pytest.approx([100.0, 200.0, 300.0])


def test_littles_law_flags() -> None:
    cluster = littles_law(throughput=100.0, mean_latency_s=0.1, users=10)
    assert cluster.implied_users == pytest.approx(10.0) and not cluster.flagged
    generator = littles_law(throughput=50.0, mean_latency_s=0.1, users=10)
    assert generator.generator_bound and "generator" in generator.note
    thinking = littles_law(throughput=10.0, mean_latency_s=0.1, users=10, think_time_s=0.9)
    assert thinking.think_time_bound and not thinking.generator_bound
    assert thinking.in_flight == pytest.approx(1.0)
    with pytest.raises(ValueError):
        littles_law(10.0, 0.1, users=0)


def test_usl_throughput_matches_formula() -> None:
    assert usl_throughput(np.array([1.0, 10.0]), LAMBDA, SIGMA, KAPPA).tolist() == pytest.approx(
        [usl_by_hand(1), usl_by_hand(10)]
    )


def test_knee_positions_refer_to_the_given_steps() -> None:
    idle = pd.DataFrame({"users": [0.0], "throughput": [0.0], "p95_ms": [np.nan]})
    knee = find_knee(pd.concat([idle, synthetic_steps()], ignore_index=True))
    assert (knee.index, knee.trigger_index, knee.users) == (5, 6, 50.0)


def test_step_boundaries_as_a_list(t0: float) -> None:
    requests = pd.DataFrame({"ts": t0 + np.arange(0, 20, 0.5), "latency_us": 1000, "ok": True})
    steps = step_aggregates(requests, [(t0, 1), (t0 + 10, 2)], end_ts=t0 + 20)
    assert steps["throughput"].tolist() == [2.0, 2.0]
    assert steps["concurrency"].tolist() == pytest.approx([0.002, 0.002])
