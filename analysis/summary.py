"""Summaries of one run: request figures (throughput, errors, exact latency percentiles, per-node
share and latency) and resource figures (per-node CPU, memory, heap, GC; generator CPU).

All functions are pure: DataFrames in, frozen records out; ``format_summary`` and
``check_summary`` return lines and never print.

Statistics
----------
- Percentiles are nearest-rank over the per-request record (see ``analysis.quantiles``): each is
  an observed latency, exact to the microsecond resolution of ``latency_us``.
- By default latency figures cover **successful requests only** (``ok`` true): a failed request's
  latency is that of the failure (a 1 ms 502 or a 5 min timeout), not of the service, and mixing
  both would move the percentiles with the error rate. Pass ``include_errors=True`` to cover all.
  The error rate is reported next to them either way.
- Throughput is requests started inside the window divided by the window length (all requests,
  and ok requests only as ``ok_throughput_rps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.quantiles import (
    REPORTED_PERCENTILES,
    group_sizes,
    grouped_nearest_rank,
    nearest_rank,
)
from analysis.steady import SteadyState, check_steady, format_steady, steady_state
from analysis.window import (
    Rows,
    Window,
    check_window,
    row_positions,
    window_duration,
    window_mask,
    window_rows,
)
from eicore.results import GENERATOR_NODE, WORKER_CPU_METRIC

#: Label of requests that carry no serving node (e.g. the load balancer answered itself).
UNATTRIBUTED = "(none)"
#: Series in the metrics frame that are not cluster nodes.
NON_NODE_SERIES = frozenset({"host", "generator", "lb", "collector"})
#: Fewer observations than this at or above a percentile make it unstable.
MIN_TAIL_OBSERVATIONS = 10

_NODE_PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True)
class NodeLatency:
    """One node's part of a run: its share of all requests and its latency percentiles (ms)."""

    node: str
    count: int
    share: float
    latency_count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class RequestSummary:
    """Request figures of one run over its measured window."""

    window: Window | None
    duration_s: float
    count: int
    ok_count: int
    error_rate: float
    throughput_rps: float
    ok_throughput_rps: float
    include_errors: bool
    latency_count: int
    percentiles_ms: dict[float, float]
    mean_ms: float
    max_ms: float
    nodes: dict[str, NodeLatency]
    scenarios: dict[str, int]
    errors: dict[str, int]
    #: whether throughput and latency held still over the window (analysis.steady)
    steady: SteadyState | None = None

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms[50.0]

    @property
    def p95_ms(self) -> float:
        return self.percentiles_ms[95.0]

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms[99.0]


@dataclass(frozen=True)
class NodeMetrics:
    """Resource figures of one node over the window (NaN where the series was not recorded).

    ``cpu_percent_*`` is psutil's process CPU (100 = one core busy); ``jvm_cpu_load_mean`` is
    JMX ``ProcessCpuLoad``, a share (0..1) of the whole machine. ``gc_time_share`` is the fraction
    of wall time the JVM reported as spent in collections, ``gc_per_s`` collections per second.
    """

    node: str
    cpu_percent_mean: float
    cpu_percent_max: float
    jvm_cpu_load_mean: float
    rss_bytes_mean: float
    rss_bytes_max: float
    threads_max: float
    heap_used_bytes_mean: float
    heap_used_bytes_max: float
    heap_max_bytes: float
    gc_time_share: float
    gc_per_s: float


@dataclass(frozen=True)
class MetricsSummary:
    """Resource figures of one run: per node, the host, and the load generator."""

    window: Window | None
    nodes: dict[str, NodeMetrics]
    host_cpu_percent_mean: float
    generator_cpu_percent_mean: float
    generator_cpu_percent_max: float
    generator_processes: int
    #: True/False, or None when the generator's CPU was not recorded (unknown, not "fine").
    generator_saturated: bool | None
    #: Each Locust worker's own mean CPU (100 = one core), when the run recorded it (schema 2).
    worker_cpu_percent_mean: dict[str, float] = field(default_factory=dict)
    #: The workers whose mean CPU reached the saturation threshold.
    saturated_workers: tuple[str, ...] = ()


def summarize_requests(
    requests: pd.DataFrame, window: Window | None = None, *, include_errors: bool = False
) -> RequestSummary:
    """Summarize the requests frame over ``window`` (all rows when None).

    Computes counts, error rate, throughput, nearest-rank p50/p90/p95/p99/p99.9, mean and max
    latency (ms), each node's share of all requests with its p50/p95/p99, request counts per
    scenario, the most frequent error messages, and the steady-state verdict of the window
    (``analysis.steady``). Works on the numpy arrays with one
    factorization per key column, so a million rows take a fraction of a second.
    """
    window = check_window(window)
    ts = requests["ts"].to_numpy(dtype=np.float64)
    rows = window_rows(ts, window)  # a slice of a frame sorted by time: views, not copies
    # Latency stays in its recorded unit (integer microseconds) through the selections: the
    # percentiles are the same values, converted to ms once chosen.
    latency_us = requests["latency_us"].to_numpy()
    ok_all = requests["ok"].to_numpy(dtype=bool, na_value=False)
    ok = ok_all[rows] if rows is not None else ok_all
    count = int(ok.size)
    ok_count = int(np.count_nonzero(ok))
    duration = window_duration(ts, window)

    # basis: the requests the latency figures describe, within the window
    window_latency = latency_us[rows] if rows is not None else latency_us
    basis_latency = window_latency if include_errors else window_latency[ok]
    pcts = nearest_rank(basis_latency, REPORTED_PERCENTILES) / 1000.0

    node_codes, node_names, counts = _factorize(requests["node"], rows)
    basis_codes = node_codes if include_errors else node_codes[ok]
    basis_counts = group_sizes(basis_codes, len(node_names)) if count else counts
    node_pcts = grouped_nearest_rank(
        basis_codes, len(node_names), basis_latency, _NODE_PERCENTILES
    ) / 1000.0
    nodes = {
        name: NodeLatency(
            node=name,
            count=int(counts[i]),
            share=float(counts[i] / count),
            latency_count=int(basis_counts[i]),
            p50_ms=float(node_pcts[i, 0]),
            p95_ms=float(node_pcts[i, 1]),
            p99_ms=float(node_pcts[i, 2]),
        )
        for i, name in enumerate(node_names)
    }

    _, scenario_names, scenario_counts = _factorize(requests["scenario"], rows)
    scenarios = {name: int(scenario_counts[i]) for i, name in enumerate(scenario_names)}

    errors: dict[str, int] = {}
    if count > ok_count:
        failed = row_positions(rows, np.flatnonzero(~ok))
        _, error_names, error_counts = _factorize(requests["error"], failed,
                                                  missing="(no message)")
        top = pd.Series(error_counts, index=error_names).sort_values(ascending=False, kind="stable")
        errors = {str(k): int(v) for k, v in top.head(10).items() if v > 0}

    return RequestSummary(
        window=window,
        duration_s=duration,
        count=count,
        ok_count=ok_count,
        error_rate=(count - ok_count) / count if count else math.nan,
        throughput_rps=count / duration if duration > 0 else math.nan,
        ok_throughput_rps=ok_count / duration if duration > 0 else math.nan,
        include_errors=include_errors,
        latency_count=int(basis_latency.size),
        percentiles_ms=dict(zip(REPORTED_PERCENTILES, map(float, pcts), strict=True)),
        mean_ms=float(basis_latency.mean()) / 1000.0 if basis_latency.size else math.nan,
        max_ms=float(basis_latency.max()) / 1000.0 if basis_latency.size else math.nan,
        nodes=nodes,
        scenarios=scenarios,
        errors=errors,
        steady=steady_state(ts, latency_us, ok_all, window, include_errors=include_errors),
    )


def _factorize(column: pd.Series, rows: Rows | None, *, missing: str = UNATTRIBUTED
               ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Codes (0..k-1), labels and counts of a key column in ``rows`` (a slice, a mask or
    positions; None: all), missing keys as ``missing``.

    A categorical column (how ``analysis.loading`` reads strings) already holds its codes."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if rows is not None:
        codes = codes[rows]
    names = [str(u) for u in uniques]
    if codes.size and codes.min() < 0:
        codes = np.where(codes < 0, len(names), codes)
        names.append(missing)
    counts = group_sizes(codes, len(names))
    # Drop labels that only occur outside the rows.
    present = counts > 0
    if not present.all():
        remap = np.cumsum(present) - 1
        codes, counts = remap[codes], counts[present]
        names = [n for n, p in zip(names, present, strict=True) if p]
    return codes, names, counts


def summarize_metrics(
    metrics: pd.DataFrame,
    window: Window | None = None,
    *,
    processes: int = 1,
    saturation_fraction: float = 0.9,
) -> MetricsSummary:
    """Summarize the long metrics frame over ``window`` per node, for the host and the generator.

    Gauges (cpu_percent, rss_bytes, threads, heap_used_bytes, heap_max_bytes, process_cpu_load)
    give mean and max over the samples in the window. Cumulative JMX counters
    (``gc_time_ms.<collector>``, ``gc_count.<collector>``) give Δcounter / Δwall over the span of
    their own samples, summed over collectors; a drop in a counter is taken as a JVM restart (the
    new value counts as the increment). For concurrent collectors (ZGC, Shenandoah "Cycles") the
    JVM's collection time includes concurrent work, so the GC time share overstates pauses.

    The generator is saturated when one Locust worker is: a Locust process runs on one core, so
    a worker whose own mean CPU (``worker_cpu_percent.<worker>`` series, schema 2, 100 = one
    core) reaches ``saturation_fraction`` of a core sets the pace even while the others idle.
    Runs without those series (schema 1) fall back to the sum: the mean ``cpu_percent`` of the
    "generator" series reaching ``saturation_fraction`` of one core per process (``processes``
    Locust processes). No generator CPU samples at all: saturated is None.
    """
    window = check_window(window)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    ts = metrics["ts"].to_numpy(dtype=np.float64)
    mask = window_mask(ts, window)
    m = metrics.loc[mask, ["ts", "node", "metric", "value"]] if mask is not None else metrics
    m = m[["ts", "node", "metric", "value"]].sort_values(["node", "metric", "ts"], kind="stable")
    values = m["value"].to_numpy(dtype=np.float64)
    node_arr = m["node"].to_numpy(dtype=object)
    metric_arr = m["metric"].to_numpy(dtype=object)
    inc = np.full(values.size, np.nan)
    if values.size > 1:
        same_series = (node_arr[1:] == node_arr[:-1]) & (metric_arr[1:] == metric_arr[:-1])
        step = np.diff(values)
        step = np.where(step < 0, values[1:], step)  # counter reset: JVM restarted
        inc[1:] = np.where(same_series, step, np.nan)
    agg = (
        m.assign(inc=inc)
        .groupby(["node", "metric"], sort=False)
        .agg(
            mean=("value", "mean"),
            max=("value", "max"),
            t0=("ts", "first"),
            t1=("ts", "last"),
            inc=("inc", "sum"),
        )
    )
    table = {key: row for key, row in zip(agg.index, agg.itertuples(index=False), strict=True)}
    metric_names: dict[str, list[str]] = {}
    for node, metric in agg.index:
        metric_names.setdefault(str(node), []).append(str(metric))

    def stat(node: str, metric: str, field: str) -> float:
        row = table.get((node, metric))
        return float(getattr(row, field)) if row is not None else math.nan

    def rate(node: str, prefix: str, scale: float) -> float:
        total, any_series = 0.0, False
        for metric in metric_names.get(node, []):
            if not metric.startswith(prefix):
                continue
            row = table[(node, metric)]
            span = float(row.t1 - row.t0)
            if span > 0:
                total += float(row.inc) / scale / span
                any_series = True
        return total if any_series else math.nan

    nodes = {
        node: NodeMetrics(
            node=node,
            cpu_percent_mean=stat(node, "cpu_percent", "mean"),
            cpu_percent_max=stat(node, "cpu_percent", "max"),
            jvm_cpu_load_mean=stat(node, "process_cpu_load", "mean"),
            rss_bytes_mean=stat(node, "rss_bytes", "mean"),
            rss_bytes_max=stat(node, "rss_bytes", "max"),
            threads_max=stat(node, "threads", "max"),
            heap_used_bytes_mean=stat(node, "heap_used_bytes", "mean"),
            heap_used_bytes_max=stat(node, "heap_used_bytes", "max"),
            heap_max_bytes=stat(node, "heap_max_bytes", "max"),
            gc_time_share=rate(node, "gc_time_ms.", 1000.0),
            gc_per_s=rate(node, "gc_count.", 1.0),
        )
        for node in sorted(metric_names)
        if node not in NON_NODE_SERIES
    }
    gen_mean = stat(GENERATOR_NODE, "cpu_percent", "mean")
    prefix = f"{WORKER_CPU_METRIC}."
    workers = {metric[len(prefix):]: stat(GENERATOR_NODE, metric, "mean")
               for metric in sorted(metric_names.get(GENERATOR_NODE, []))
               if metric.startswith(prefix)}
    busy = tuple(w for w, v in workers.items() if v >= saturation_fraction * 100)
    if workers:
        saturated: bool | None = bool(busy)
    else:
        saturated = None if math.isnan(gen_mean) else gen_mean >= saturation_fraction * 100 * processes
    return MetricsSummary(
        window=window,
        nodes=nodes,
        host_cpu_percent_mean=stat("host", "cpu_percent", "mean"),
        generator_cpu_percent_mean=gen_mean,
        generator_cpu_percent_max=stat("generator", "cpu_percent", "max"),
        generator_processes=processes,
        generator_saturated=saturated,
        worker_cpu_percent_mean=workers,
        saturated_workers=busy,
    )


def _tail_observations(n: int, percentile: float) -> int:
    """How many of n sorted observations lie at or above the nearest-rank percentile."""
    return n - math.ceil(percentile / 100.0 * n) + 1 if n else 0


def check_summary(summary: RequestSummary, metrics: MetricsSummary | None = None) -> list[str]:
    """Warnings about how far the figures can be trusted, each saying what would fix it."""
    checks: list[str] = []
    if summary.count == 0:
        return ["no requests in the measured window: check the window and the run's status"]
    n = summary.latency_count
    for p in (99.9, 99.0):
        tail = _tail_observations(n, p)
        if tail < MIN_TAIL_OBSERVATIONS:
            need = math.ceil(MIN_TAIL_OBSERVATIONS / (1 - p / 100.0))
            checks.append(
                f"p{p:g} rests on {tail} request(s) at or above it: run longer "
                f"(about {need:,} requests) for a stable p{p:g}"
            )
    if summary.error_rate > 0.01:
        basis = "all requests" if summary.include_errors else "successful requests only"
        checks.append(f"{summary.error_rate:.1%} of requests failed; latency figures cover {basis}")
    unattributed = summary.nodes.get(UNATTRIBUTED)
    if unattributed is not None:
        checks.append(f"{unattributed.share:.1%} of requests carry no serving node")
    shares = [v.share for k, v in summary.nodes.items() if k != UNATTRIBUTED]
    if len(shares) >= 2 and min(shares) > 0 and max(shares) / min(shares) > 1.5:
        checks.append(
            f"uneven load balance: node shares range {min(shares):.1%} to {max(shares):.1%} "
            "(ip_hash or sticky sessions send one client to one node)"
        )
    steady = check_steady(summary.steady) if summary.steady is not None else None
    if steady is not None:
        checks.append(steady)
    if metrics is not None:
        if metrics.generator_saturated and metrics.saturated_workers:
            each = ", ".join(f"{w} {metrics.worker_cpu_percent_mean[w]:.0f} %"
                             for w in metrics.saturated_workers)
            checks.append(
                f"the load generator was saturated (worker mean CPU {each} of one core): these "
                "figures measure the generator, not the cluster; run with more --workers, or "
                "on more cores or more [[generators]] hosts"
            )
        elif metrics.generator_saturated:
            checks.append(
                f"the load generator was saturated (mean CPU {metrics.generator_cpu_percent_mean:.0f} % "
                f"over {metrics.generator_processes} process(es)): these figures measure the "
                "generator, not the cluster; run with more --workers or on more cores"
            )
        elif metrics.generator_saturated is None:
            checks.append(
                "generator CPU was not recorded: cannot tell whether the generator set the pace"
            )
    return checks


def _mib(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value / 2**20:,.0f} MiB"


def _num(value: float, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:{fmt}}{unit}"


def format_summary(summary: RequestSummary, metrics: MetricsSummary | None = None) -> list[str]:
    """The run summary as text lines (no printing), followed by the checks."""
    lines = [
        f"measured window: {_num(summary.duration_s, ',.1f', ' s')}",
        f"requests: {summary.count:,} (ok {summary.ok_count:,}, errors "
        f"{_num(summary.error_rate * 100 if summary.count else math.nan, '.2f', ' %')}), "
        f"throughput {_num(summary.throughput_rps, ',.1f', ' req/s')} "
        f"(ok {_num(summary.ok_throughput_rps, ',.1f', ' req/s')})",
    ]
    basis = "all requests" if summary.include_errors else "ok requests"
    pcts = "  ".join(f"p{p:g} {_num(v, ',.2f')}" for p, v in summary.percentiles_ms.items())
    lines.append(
        f"latency ms ({basis}, n={summary.latency_count:,}, nearest rank): {pcts}  "
        f"mean {_num(summary.mean_ms, ',.2f')}  max {_num(summary.max_ms, ',.2f')}"
    )
    if summary.steady is not None:
        lines.append(format_steady(summary.steady))
    for node in summary.nodes.values():
        lines.append(
            f"node {node.node}: {node.share:.1%} of requests ({node.count:,}), latency ms "
            f"p50 {_num(node.p50_ms, ',.2f')}  p95 {_num(node.p95_ms, ',.2f')}  "
            f"p99 {_num(node.p99_ms, ',.2f')}"
        )
    if summary.scenarios:
        lines.append("scenarios: " + ", ".join(f"{k} {v:,}" for k, v in summary.scenarios.items()))
    for message, n in summary.errors.items():
        lines.append(f"error x{n:,}: {message}")
    if metrics is not None:
        for nm in metrics.nodes.values():
            lines.append(
                f"node {nm.node} resources: CPU mean {_num(nm.cpu_percent_mean, '.0f', ' %')} "
                f"max {_num(nm.cpu_percent_max, '.0f', ' %')}, RSS max {_mib(nm.rss_bytes_max)}, "
                f"heap used mean {_mib(nm.heap_used_bytes_mean)} max {_mib(nm.heap_used_bytes_max)} "
                f"of {_mib(nm.heap_max_bytes)}, GC {_num(nm.gc_time_share * 100, '.2f', ' %')} "
                f"of time, {_num(nm.gc_per_s, '.2f')} GC/s"
            )
        state = {True: "SATURATED", False: "not saturated", None: "unknown"}
        lines.append(
            f"generator: CPU mean {_num(metrics.generator_cpu_percent_mean, '.0f', ' %')} "
            f"max {_num(metrics.generator_cpu_percent_max, '.0f', ' %')} over "
            f"{metrics.generator_processes} process(es): {state[metrics.generator_saturated]}"
            + ("; per worker " + ", ".join(f"{w} {_num(v, '.0f', ' %')}" for w, v in
                                          metrics.worker_cpu_percent_mean.items())
               if metrics.worker_cpu_percent_mean else "")
        )
    lines.extend(f"check: {c}" for c in check_summary(summary, metrics))
    return lines
