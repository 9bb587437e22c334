"""Run summaries, checked against figures recomputed independently in plain Python."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest

from analysis.quantiles import REPORTED_PERCENTILES, nearest_rank
from analysis.summary import (
    UNATTRIBUTED,
    check_summary,
    format_summary,
    summarize_metrics,
    summarize_requests,
)


def hand_percentile(values: list[int], percentile: float) -> int:
    """Nearest rank by hand: sorted list, rank ceil(p/100·n) in integer arithmetic."""
    ordered = sorted(values)
    tenths = round(percentile * 10)
    rank = max(1, -(-tenths * len(ordered) // 1000))
    return ordered[rank - 1]


def hand_percentile_ms(latencies_us: list[int], percentile: float) -> float:
    return hand_percentile(latencies_us, percentile) / 1000


@pytest.mark.parametrize("n", [1, 2, 7, 999, 1000, 1001, 2000, 12345])
def test_nearest_rank_matches_hand_computation(n: int) -> None:
    values = np.random.default_rng(n).integers(1, 10**6, n)
    got = nearest_rank(values, REPORTED_PERCENTILES)
    expected = [hand_percentile(values.tolist(), p) for p in REPORTED_PERCENTILES]
    assert got.tolist() == expected


def test_nearest_rank_of_empty_sample_is_nan() -> None:
    assert np.isnan(nearest_rank(np.array([]), [50.0, 99.0])).all()


def test_summary_matches_independent_recomputation(make_requests, t0: float) -> None:
    frame = make_requests(20_000, seed=3, duration=100.0)
    window = (t0 + 10.0, t0 + 90.0)
    summary = summarize_requests(frame, window)

    rows = [r for r in frame.itertuples(index=False) if window[0] <= r.ts < window[1]]
    ok_latencies = [int(r.latency_us) for r in rows if r.ok]
    assert summary.count == len(rows)
    assert summary.ok_count == len(ok_latencies)
    assert summary.error_rate == pytest.approx((len(rows) - len(ok_latencies)) / len(rows))
    assert summary.duration_s == pytest.approx(80.0)
    assert summary.throughput_rps == pytest.approx(len(rows) / 80.0)
    assert summary.ok_throughput_rps == pytest.approx(len(ok_latencies) / 80.0)
    for p in REPORTED_PERCENTILES:
        assert summary.percentiles_ms[p] == hand_percentile_ms(ok_latencies, p), p
    assert summary.mean_ms == pytest.approx(sum(ok_latencies) / len(ok_latencies) / 1000)
    assert summary.max_ms == max(ok_latencies) / 1000

    per_node: dict[str, list[int]] = defaultdict(list)
    node_counts = Counter(r.node for r in rows)
    for r in rows:
        if r.ok:
            per_node[r.node].append(int(r.latency_us))
    assert set(summary.nodes) == set(node_counts)
    for name, node in summary.nodes.items():
        assert node.count == node_counts[name]
        assert node.share == pytest.approx(node_counts[name] / len(rows))
        assert node.p50_ms == hand_percentile_ms(per_node[name], 50)
        assert node.p95_ms == hand_percentile_ms(per_node[name], 95)
        assert node.p99_ms == hand_percentile_ms(per_node[name], 99)
    assert summary.scenarios == dict(Counter(r.scenario for r in rows))
    assert summary.errors == {"HTTPError 502": len(rows) - len(ok_latencies)}


def test_include_errors_covers_all_requests(make_requests) -> None:
    frame = make_requests(3000, seed=4, error_share=0.3)
    summary = summarize_requests(frame, include_errors=True)
    assert summary.latency_count == len(frame)
    assert summary.p95_ms == hand_percentile_ms(frame["latency_us"].tolist(), 95)


def test_requests_without_node_are_unattributed(make_requests) -> None:
    frame = make_requests(2000, seed=5, nodes=("node1", None))
    summary = summarize_requests(frame)
    assert set(summary.nodes) == {"node1", UNATTRIBUTED}
    assert summary.nodes[UNATTRIBUTED].count == int(frame["node"].isna().sum())
    assert any("no serving node" in line for line in check_summary(summary))


def test_categorical_columns_give_the_same_summary(make_requests) -> None:
    frame = make_requests(3000, seed=6)
    categorical = frame.assign(
        node=frame["node"].astype("category"), scenario=frame["scenario"].astype("category")
    )
    assert summarize_requests(categorical) == summarize_requests(frame)


def test_node_outside_window_is_not_listed(make_requests, t0: float) -> None:
    frame = make_requests(1000, seed=7)
    frame.loc[frame["ts"] < t0 + 10, "node"] = "warmup-only"
    summary = summarize_requests(frame, (t0 + 20, t0 + 100))
    assert "warmup-only" not in summary.nodes


def test_empty_window_gives_nan_and_a_check(make_requests, t0: float) -> None:
    frame = make_requests(100, seed=8)
    summary = summarize_requests(frame, (t0 + 1000, t0 + 1100))
    assert summary.count == 0 and summary.throughput_rps == 0.0
    assert math.isnan(summary.p50_ms) and math.isnan(summary.error_rate)
    assert summary.nodes == {}
    assert check_summary(summary) == [
        "no requests in the measured window: check the window and the run's status"
    ]
    assert all(isinstance(line, str) for line in format_summary(summary))


def test_bad_window_is_refused(make_requests, t0: float) -> None:
    with pytest.raises(ValueError, match="end must be after its start"):
        summarize_requests(make_requests(10), (t0 + 5, t0 + 5))


def test_short_run_warns_about_tail_percentiles(make_requests) -> None:
    lines = format_summary(summarize_requests(make_requests(500, seed=9)))
    assert any(line.startswith("check: p99.9 rests on 1 request") for line in lines)
    assert any("latency ms (ok requests" in line and "p99.9" in line for line in lines)


T0 = 1_700_000_000.0  # start of the synthetic metrics


def make_metrics(generator_cpu: float | None, gc_reset: bool = False) -> pd.DataFrame:
    """Two nodes sampled once a second for 100 s; GC 20 ms and 0.5 collections per second."""
    rows = []
    for i in range(101):
        ts = T0 + i
        for node, cpu in (("node1", 40.0 + i % 3), ("node2", 60.0)):
            gc_i = i - 50 if gc_reset and i >= 50 else i  # node restarts at i = 50
            rows += [
                (ts, node, "psutil", "cpu_percent", cpu),
                (ts, node, "psutil", "rss_bytes", 5e8 + i * 1e6),
                (ts, node, "psutil", "threads", 100.0 + i % 5),
                (ts, node, "jmx", "heap_used_bytes", 1e8 + (i % 10) * 1e7),
                (ts, node, "jmx", "heap_max_bytes", 1024 * 2**20),
                (ts, node, "jmx", "gc_time_ms.G1 Young Generation", gc_i * 15.0),
                (ts, node, "jmx", "gc_time_ms.G1 Old Generation", gc_i * 5.0),
                (ts, node, "jmx", "gc_count.G1 Young Generation", gc_i * 0.5),
                (ts, node, "jmx", "process_cpu_load", 0.25),
            ]
        rows.append((ts, "host", "psutil", "cpu_percent", 70.0))
        if generator_cpu is not None:
            rows.append((ts, "generator", "psutil", "cpu_percent", generator_cpu))
    return pd.DataFrame(rows, columns=["ts", "node", "source", "metric", "value"])


def test_metrics_summary_per_node() -> None:
    window = (T0 + 10, T0 + 90)
    summary = summarize_metrics(make_metrics(50.0), window)
    assert set(summary.nodes) == {"node1", "node2"}
    node1 = summary.nodes["node1"]
    inside = range(10, 90)
    assert node1.cpu_percent_mean == pytest.approx(np.mean([40.0 + i % 3 for i in inside]))
    assert node1.cpu_percent_max == 42.0
    assert node1.rss_bytes_max == pytest.approx(5e8 + 89e6)
    assert node1.threads_max == 104.0
    assert node1.heap_used_bytes_mean == pytest.approx(
        np.mean([1e8 + (i % 10) * 1e7 for i in inside])
    )
    assert node1.heap_used_bytes_max == pytest.approx(1e8 + 9e7)
    assert node1.heap_max_bytes == 1024 * 2**20
    assert node1.gc_time_share == pytest.approx(0.020)  # (15 + 5) ms per 1000 ms
    assert node1.gc_per_s == pytest.approx(0.5)
    assert node1.jvm_cpu_load_mean == pytest.approx(0.25)
    assert summary.host_cpu_percent_mean == 70.0
    assert summary.generator_saturated is False


def test_gc_counter_reset_is_a_restart_not_a_negative_rate() -> None:
    summary = summarize_metrics(make_metrics(50.0, gc_reset=True))
    # 99 of 100 one-second intervals add 20 ms; the restart interval adds the new value (0).
    assert summary.nodes["node1"].gc_time_share == pytest.approx(99 * 20 / 100_000)


@pytest.mark.parametrize(
    ("cpu", "processes", "saturated"),
    [(95.0, 1, True), (89.0, 1, False), (95.0, 2, False), (185.0, 2, True), (None, 1, None)],
)
def test_generator_saturation(cpu: float | None, processes: int, saturated: bool | None) -> None:
    summary = summarize_metrics(make_metrics(cpu), processes=processes)
    assert summary.generator_saturated is saturated


def test_saturated_generator_is_said(make_requests) -> None:
    metrics = summarize_metrics(make_metrics(99.0))
    lines = format_summary(summarize_requests(make_requests(50_000)), metrics)
    assert any("generator: CPU mean 99 %" in line and "SATURATED" in line for line in lines)
    assert any(line.startswith("check: the load generator was saturated") for line in lines)


def test_categorical_metrics_frame_gives_the_same_summary() -> None:
    frame = make_metrics(50.0)
    categorical = frame.assign(
        node=frame["node"].astype("category"), metric=frame["metric"].astype("category")
    )
    assert summarize_metrics(categorical) == summarize_metrics(frame)


def with_workers(frame: pd.DataFrame, workers: dict[str, float]) -> pd.DataFrame:
    """`frame` plus each Locust worker's own CPU, sampled every 3 s as the master records it."""
    rows = [(T0 + i, "generator", "locust", f"worker_cpu_percent.{name}", cpu)
            for name, cpu in workers.items() for i in range(0, 101, 3)]
    return pd.concat([frame, pd.DataFrame(rows, columns=frame.columns)], ignore_index=True)


def test_one_busy_worker_saturates_the_generator_though_the_sum_is_low(make_requests) -> None:
    # two workers on two hosts: gen2-1 pegs its core while gen1-1 idles; summed over the
    # processes that is under the threshold, per worker it is not
    metrics = summarize_metrics(with_workers(make_metrics(60.0), {"gen1-1": 20.0, "gen2-1": 96.0}),
                                processes=2)
    assert metrics.worker_cpu_percent_mean == {"gen1-1": 20.0, "gen2-1": 96.0}
    assert metrics.generator_saturated is True and metrics.saturated_workers == ("gen2-1",)
    lines = format_summary(summarize_requests(make_requests(50_000)), metrics)
    assert any("per worker gen1-1 20 %, gen2-1 96 %" in line for line in lines)
    assert any(line.startswith("check: the load generator was saturated (worker mean CPU "
                               "gen2-1 96 % of one core)") for line in lines)


def test_workers_below_the_threshold_are_not_saturated_even_without_psutil() -> None:
    metrics = summarize_metrics(with_workers(make_metrics(None), {"local-1": 50.0,
                                                                 "local-2": 70.0}), processes=2)
    assert metrics.generator_saturated is False and metrics.saturated_workers == ()


def test_time_sorted_fast_paths_match_the_unsorted_fallbacks(tmp_path) -> None:
    """eiperf writes requests sorted by time, and the summaries and time bins take that
    shortcut (the window as a slice, bins by binary search); a frame in any other order goes
    the general way. Both must give the same figures."""
    from dataclasses import replace as dc_replace

    from analysis.loading import load_run
    from analysis.plots import traffic_bins
    from tests.analysis.results_fixture import T0, write_run

    run = load_run(write_run(tmp_path, "sorted", n=20_000, duration=60.0, warmup=5.0))
    shuffled = run.requests.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = dc_replace(run, requests=shuffled)
    for window in (None, (T0 + 5.0, T0 + 60.0), (T0 + 12.5, T0 + 12.5001)):
        for errors in (False, True):
            a = summarize_requests(run.requests, window, include_errors=errors)
            b = summarize_requests(shuffled, window, include_errors=errors)
            assert (a.count, a.ok_count, a.scenarios, a.errors) == (
                b.count, b.ok_count, b.scenarios, b.errors)
            assert a.percentiles_ms == pytest.approx(b.percentiles_ms, nan_ok=True)
            assert {n: (v.count, v.p50_ms, v.p95_ms, v.p99_ms) for n, v in a.nodes.items()} == {
                n: (v.count, v.p50_ms, v.p95_ms, v.p99_ms) for n, v in b.nodes.items()}
    x, y = traffic_bins(run), traffic_bins(other)
    np.testing.assert_array_equal(x.rate_all, y.rate_all)
    np.testing.assert_array_equal(x.error_pct, y.error_pct)
    np.testing.assert_array_equal(x.latency.values, y.latency.values)
