"""Comparison statistics: verdicts, bootstrap intervals, noise, snapshot differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.compare import (
    Verdict,
    compare_runs,
    compare_samples,
    format_comparison,
    noise_estimate,
    per_second_counts,
    snapshot_diff,
)


def lognormal(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Latency-like sample in ms: median 2 ms, long right tail."""
    return np.random.default_rng(seed).lognormal(np.log(2.0), 0.5, n) * scale


def test_same_distribution_is_within_noise() -> None:
    result = compare_samples(lognormal(5000, 1), lognormal(5000, 2))
    assert result.verdict is Verdict.WITHIN_NOISE
    median = result.estimate("median")
    assert median is not None and median.low <= 1.0 <= median.high
    assert result.estimate("p95").verdict is Verdict.WITHIN_NOISE


def test_shift_of_thirty_percent_is_slower_and_back_is_faster() -> None:
    a, b = lognormal(5000, 1), lognormal(5000, 2, scale=1.3)
    slower = compare_samples(a, b)
    assert slower.verdict is Verdict.SLOWER
    assert slower.p_value < 0.001
    median = slower.estimate("median")
    assert median.low < 1.3 < median.high or abs(median.ratio - 1.3) < 0.05
    assert slower.estimate("p95").verdict is Verdict.SLOWER
    assert compare_samples(b, a).verdict is Verdict.FASTER


@pytest.mark.parametrize("n", [0, 1, 19])
def test_tiny_samples_are_unknown(n: int) -> None:
    result = compare_samples(lognormal(n, 1), lognormal(5000, 2, scale=3.0))
    assert result.verdict is Verdict.UNKNOWN
    assert math.isnan(result.p_value)
    assert all(e.verdict is Verdict.UNKNOWN for e in result.estimates)
    assert "fewer than 20" in result.reason


def test_nan_is_unknown_even_when_the_rest_differs_a_lot() -> None:
    b = lognormal(5000, 2, scale=10.0)
    b[7] = np.nan
    result = compare_samples(lognormal(5000, 1), b)
    assert result.verdict is Verdict.UNKNOWN
    assert "NaN" in result.reason
    assert any("-> unknown" in line for line in format_comparison(result))


def test_difference_below_run_to_run_noise_is_within_noise() -> None:
    a, b = lognormal(200_000, 1), lognormal(200_000, 2, scale=1.03)
    assert compare_samples(a, b).verdict is Verdict.SLOWER  # large samples: "significant"
    noisy = compare_samples(a, b, noise=0.05)
    assert noisy.verdict is Verdict.WITHIN_NOISE
    assert "below the run-to-run noise" in noisy.reason
    assert compare_samples(a, b, noise=0.01).verdict is Verdict.SLOWER


def test_same_seed_same_intervals_other_seed_close() -> None:
    a, b = lognormal(3000, 1), lognormal(3000, 2, scale=1.1)
    first, again = compare_samples(a, b, seed=7), compare_samples(a, b, seed=7)
    assert first == again
    other = compare_samples(a, b, seed=8).estimate("median")
    assert other.low == pytest.approx(first.estimate("median").low, rel=0.01)


def test_quantile_interval_matches_brute_force_bootstrap() -> None:
    """The order-statistic bootstrap agrees with resampling the values themselves."""
    a, b = lognormal(801, 3), lognormal(801, 4, scale=1.2)
    fast = compare_samples(a, b, n_boot=20_000, seed=1).estimate("median")

    rng = np.random.default_rng(99)
    k = math.ceil(0.5 * a.size)  # nearest-rank median, both samples have 801 values

    def medians(x: np.ndarray) -> np.ndarray:
        resamples = np.sort(x[rng.integers(0, x.size, size=(20_000, x.size))], axis=1)
        return resamples[:, k - 1]

    ratios = medians(b) / medians(a)
    low, high = np.quantile(ratios, [0.025, 0.975])
    assert fast.low == pytest.approx(low, rel=0.01)
    assert fast.high == pytest.approx(high, rel=0.01)


def test_throughput_ratio_and_too_short_runs() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.poisson(1000, 60), rng.poisson(1200, 60)
    result = compare_samples(lognormal(500, 1), lognormal(500, 2), throughput_a=a, throughput_b=b)
    throughput = result.estimate("throughput")
    assert throughput.verdict is Verdict.FASTER and throughput.ratio == pytest.approx(1.2, rel=0.01)
    assert result.verdict is Verdict.WITHIN_NOISE  # latency unchanged
    short = compare_samples(
        lognormal(500, 1), lognormal(500, 2), throughput_a=a[:5], throughput_b=b
    )
    assert short.estimate("throughput").verdict is Verdict.UNKNOWN


def test_large_samples_subsample_the_test_and_say_so() -> None:
    result = compare_samples(lognormal(50_000, 1), lognormal(50_000, 2), max_test_n=10_000)
    assert result.test_n == 10_000
    lines = format_comparison(result, "baseline", "candidate")
    assert any("subsample of 10,000" in line for line in lines)
    assert lines[0] == "samples: baseline 50,000, candidate 50,000"


def test_compare_runs_on_request_frames(make_requests, t0: float) -> None:
    window = (t0 + 10, t0 + 100)
    base = make_requests(20_000, seed=1)
    same = make_requests(20_000, seed=2)
    delayed = make_requests(20_000, seed=3)
    delayed["latency_us"] += 5_000  # a 5 ms backend delay
    assert compare_runs(base, same, window, window).verdict is Verdict.WITHIN_NOISE
    slower = compare_runs(base, delayed, window, window)
    assert slower.verdict is Verdict.SLOWER
    assert slower.n_a == int((base["ok"] & (base["ts"] >= t0 + 10)).sum())
    assert slower.estimate("throughput").verdict is Verdict.WITHIN_NOISE


def test_per_second_counts_drop_the_partial_second() -> None:
    ts = np.array([0.0, 0.5, 1.2, 2.9, 3.5, 9.0])
    assert per_second_counts(ts, (0.0, 3.7)).tolist() == [2, 1, 1]
    assert per_second_counts(ts).tolist() == [2, 1, 1, 1, 0, 0, 0, 0, 0]


def test_noise_estimate() -> None:
    runs = [np.full(100, 10.0), np.full(100, 11.0), np.full(100, 12.0)]
    assert noise_estimate(runs) == pytest.approx(2.0 / 11.0)
    assert noise_estimate([1000.0, 1100.0], statistic="mean") == pytest.approx(0.1 / 1.05)
    assert noise_estimate(runs[:1]) is None  # one run: unknown, not zero
    assert noise_estimate([runs[0], [np.nan]]) is None
    with pytest.raises(ValueError, match="statistic"):
        noise_estimate(runs, statistic="mode")


def test_snapshot_diff_flags_differences_beyond_the_swept_parameters() -> None:
    a = {
        "nodes": {
            "node1": {"jvm": {"xmx": "1g", "gc": "G1"}, "passthru": {"worker_pool_size_core": 400}},
            "node2": {"jvm": {"xmx": "1g", "gc": "G1"}, "passthru": {"worker_pool_size_core": 400}},
        },
        "nginx": {"proxy_read_timeout": "5m", "lb_method": "round_robin"},
    }
    b = {
        "nodes": {
            "node1": {"jvm": {"xmx": "2g", "gc": "G1"}, "passthru": {"worker_pool_size_core": 400}},
            "node2": {"jvm": {"xmx": "2g", "gc": "G1"}, "passthru": {"worker_pool_size_core": 200}},
        },
        "nginx": {"proxy_read_timeout": "5m", "lb_method": "round_robin", "keepalive": 32},
    }
    assert snapshot_diff(a, b, {"jvm.xmx"}) == [
        "nginx.keepalive",
        "nodes.node2.passthru.worker_pool_size_core",
    ]
    assert snapshot_diff(a, b, {"jvm.xmx", "passthru", "nginx.keepalive"}) == []
    assert snapshot_diff(a, a, set()) == []
    # a parameter matches whole dotted segments only
    assert "nodes.node1.jvm.xmx" in snapshot_diff(a, b, {"xm", "vm.xmx"})
