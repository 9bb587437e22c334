"""Plots of runs and sweeps (matplotlib). Every function returns a ``Figure`` on the Agg
canvas (no pyplot, no global state, no ``show``): the report saves it, a notebook displays it.

Time series are binned with numpy, never per row in Python: requests sorted by time (as eiperf
writes them) by a binary search for where each bin starts and one selection per bin, others by
bincount and one grouped selection; a million requests bin in under 10 ms. Time axes are
seconds since the run started; the warm-up and anything after the measured window are shaded:
they are excluded from the summary figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.capacity import Knee, USLFit
from analysis.loading import Run, Sweep
from analysis.quantiles import grouped_nearest_rank, nearest_rank, sliced_nearest_rank
from analysis.summary import NON_NODE_SERIES, RequestSummary
from analysis.window import is_sorted, ok_latency_ms

#: Bin widths (s) a time axis may use: the smallest that keeps at most ``max_bins`` bins.
NICE_BINS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
PERCENTILE_COLORS = {50.0: "#1f77b4", 95.0: "#ff7f0e", 99.0: "#d62728", 99.9: "#7f3c8d"}
EXCLUDED_COLOR = "#b0b0b0"
WIDTH = 10.0
#: Titles at a fixed height: left to matplotlib, each draw measures every tick label of the axes
#: to place the title above them (a third of a report's drawing time).
TITLE_Y = 1.01
#: Highest/lowest bin ratio above which latency over time is drawn on a log axis.
LOG_SCALE_SPREAD = 30.0


#: The look of every axes, given as settings while the axes are made: calling ``ax.grid()``
#: afterwards restyles ticks already made, a tenth of a figure's cost. Ticks made later copy the
#: first one's style, so the settings need not hold while drawing.
_AXES_STYLE = {"axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
               "axes.spines.top": False, "axes.spines.right": False}


def _figure(height: float, rows: int = 1, cols: int = 1, *, left: float = 0.8, right: float = 0.3,
            top: float = 0.45, hspace: float = 0.35, wspace: float = 0.9,
            **kw) -> tuple[Figure, np.ndarray]:
    """A figure of fixed margins (inches): a fixed layout renders in half the time of
    matplotlib's constrained layout, which matters for reports of many plots."""
    fig = Figure(figsize=(WIDTH, height), dpi=100)
    FigureCanvasAgg(fig)
    panel_h = (height - top - 0.55) / rows
    fig.subplots_adjust(left=left / WIDTH, right=1 - right / WIDTH, bottom=0.55 / height,
                        top=1 - top / height, hspace=hspace / max(panel_h, 0.1),
                        wspace=wspace / ((WIDTH - left - right) / cols))
    with rc_context(_AXES_STYLE):
        axes = fig.subplots(rows, cols, squeeze=False, **kw)
    if kw.get("sharex") is True and rows > 1:
        # Panels stacked on one time axis: only the bottom one draws it. A hidden axis costs
        # nothing to draw (its tick labels were hidden by sharex anyway; each tick is ~1 ms).
        for ax in axes[:-1].flat:
            ax.xaxis.set_visible(False)
    return fig, axes


def _empty(fig: Figure, ax, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _steps(ax, edges: np.ndarray, values: np.ndarray, *, fill: bool = False, **kw) -> None:
    """One value per bin as a step line (or filled to zero). Not ``Axes.stairs``: its StepPatch
    walks every segment as a Bézier curve to find the data limits, ~10 ms per 300 bins."""
    y = np.append(values, values[-1:])
    if fill:
        ax.fill_between(edges, np.nan_to_num(y), step="post", lw=0, **kw)
    else:
        ax.plot(edges, y, drawstyle="steps-post", **kw)


def bin_width(duration_s: float, max_bins: int = 300) -> float:
    """The smallest of ``NICE_BINS`` that splits ``duration_s`` into at most ``max_bins`` bins."""
    for width in NICE_BINS:
        if duration_s / width <= max_bins:
            return float(width)
    return float(math.ceil(duration_s / max_bins))


def _time_bins(run: Run, bin_s: float | None) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(origin of the time axis, bin width, bin edges, bin lengths) of a run's requests."""
    ts = run.requests["ts"].to_numpy(dtype=np.float64)
    origin = run.start_ts
    span = float(ts.max()) - origin if ts.size else 0.0
    end = run.record.ended_at - origin if run.record.ended_at else span
    span = max(span, end, 1e-9)
    width = bin_s or bin_width(span)
    n = max(1, math.ceil(span / width))
    edges = np.arange(n + 1) * width
    lengths = np.minimum(edges[1:], span) - edges[:-1]
    return origin, width, edges, lengths


def _bin_codes(ts: np.ndarray, origin: float, width: float, n_bins: int) -> np.ndarray:
    """The time bin of each request: int((ts - origin) / width), the last bin taking the rest."""
    codes = np.divide(ts - origin, width).astype(np.int64)
    return np.minimum(codes, n_bins - 1, out=codes)


def _bin_starts(ts: np.ndarray, origin: float, width: float, n_bins: int) -> np.ndarray | None:
    """Where each time bin starts in time-sorted ``ts``: n_bins + 1 row positions, the first
    row whose ``_bin_codes`` reaches each bin, then len(ts). Found by binary search for the
    exact first timestamp of each bin (a few ulps from origin + k·width), instead of a code
    computed for every row. None when ``ts`` is not sorted."""
    if not is_sorted(ts):
        return None
    k = np.arange(1, n_bins)

    def reached(t: np.ndarray) -> np.ndarray:
        return np.divide(t - origin, width).astype(np.int64) >= k

    first = origin + k * width
    for _ in range(64):
        below = np.nextafter(first, -np.inf)
        down, up = reached(below), ~reached(first)
        if not (down.any() or up.any()):
            inner = np.searchsorted(ts, first, side="left")
            return np.concatenate(([0], inner, [ts.size]))
        first = np.where(down, below, np.where(up, np.nextafter(first, np.inf), first))
    return None


def _shade_excluded(ax, run: Run, span: float, label: bool = True) -> None:
    """Grey bands over the warm-up and the time after the measured window (in the legend when
    ``label``; a figure of many panels says it once in its title instead)."""
    window = run.window
    if window is None:
        return
    start, end = window[0] - run.start_ts, window[1] - run.start_ts
    if start > 0:
        ax.axvspan(0, start, color=EXCLUDED_COLOR, alpha=0.25, lw=0,
                   label="warm-up (excluded)" if label else None)
    if end < span:
        ax.axvspan(end, span, color=EXCLUDED_COLOR, alpha=0.25, lw=0,
                   label=None if start > 0 or not label else "outside the window (excluded)")


@dataclass(frozen=True)
class LatencyBins:
    """Nearest-rank percentiles (ms) of successful requests per time bin: ``values`` has one
    row per bin (NaN for a bin without one), one column per percentile."""

    edges: np.ndarray
    width: float
    percentiles: tuple[float, ...]
    values: np.ndarray


def latency_bins(run: Run, percentiles: Sequence[float] = (50.0, 95.0, 99.0),
                 bin_s: float | None = None) -> LatencyBins | None:
    """The numbers behind ``latency_over_time`` (a notebook can tabulate them); None without a
    successful request."""
    return traffic_bins(run, bin_s, percentiles).latency


@dataclass(frozen=True)
class TrafficBins:
    """Everything the traffic panels draw, per time bin: a few hundred numbers computed from
    every request in one pass (throughput, errors and latency share the bin of each request)."""

    edges: np.ndarray
    width: float
    rate_ok: np.ndarray
    rate_all: np.ndarray
    error_pct: np.ndarray
    #: None without a successful request.
    latency: LatencyBins | None


def traffic_bins(run: Run, bin_s: float | None = None,
                 percentiles: Sequence[float] = (50.0, 95.0, 99.0)) -> TrafficBins:
    """Requests per second (ok, all), error % and latency percentiles of each time bin."""
    ts = run.requests["ts"].to_numpy(dtype=np.float64)
    origin, width, edges, lengths = _time_bins(run, bin_s)
    n_bins = edges.size - 1
    ok = run.requests["ok"].to_numpy(dtype=bool, na_value=False)
    # Latency is selected in its recorded unit (integer µs), converted to ms once chosen.
    latency_us = run.requests["latency_us"].to_numpy()
    starts = _bin_starts(ts, origin, width, n_bins)
    if starts is not None:  # sorted by time, as eiperf writes requests: a bin is a run of rows
        failed_before = np.searchsorted(np.flatnonzero(~ok), starts)
        total, failed = np.diff(starts), np.diff(failed_before)
        values = sliced_nearest_rank(latency_us[ok], starts - failed_before, percentiles,
                                     in_place=True)
    else:
        codes = _bin_codes(ts, origin, width, n_bins)
        total = np.bincount(codes, minlength=n_bins)
        failed = np.bincount(codes[~ok], minlength=n_bins)
        values = grouped_nearest_rank(codes[ok], n_bins, latency_us[ok], percentiles)
    total, failed = total.astype(float), failed.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_ok = (total - failed) / lengths
        rate_all = total / lengths
        error_pct = np.where(total > 0, failed / total * 100.0, np.nan)
    latency = LatencyBins(edges, width, tuple(percentiles), values / 1000.0) if ok.any() else None
    return TrafficBins(edges, width, rate_ok, rate_all, error_pct, latency)


def _draw_latency(ax, run: Run, bins: LatencyBins, excluded_label: bool = True) -> None:
    """The latency panel: one step line per percentile, log scale when the bins spread widely."""
    edges, values = bins.edges, bins.values
    for i, p in enumerate(bins.percentiles):
        _steps(ax, edges, values[:, i], color=PERCENTILE_COLORS.get(p), lw=1.4, label=f"p{p:g}")
    _shade_excluded(ax, run, edges[-1], excluded_label)
    ax.set_xlim(0, edges[-1])
    top = float(np.nanmax(values, initial=0.0))
    low = float(np.nanmin(values[:, 0], initial=top)) if np.isfinite(values[:, 0]).any() else 0
    if low > 0 and top / low > LOG_SCALE_SPREAD:
        # A few slow bins (a GC pause, a restart) would flatten every other line to zero.
        ax.set_yscale("log")
        ax.set_ylim(low / 1.5, top * 3)  # room for the legend
        ax.set_ylabel("latency (ms, log scale)")
    else:
        ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)  # room for the legend
        ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper right", fontsize=8, ncols=5)


def latency_over_time(run: Run, percentiles: Sequence[float] = (50.0, 95.0, 99.0),
                      bin_s: float | None = None, *, bins: LatencyBins | None = None) -> Figure:
    """Nearest-rank latency percentiles of successful requests per time bin (``bins`` from
    ``latency_bins`` when already computed)."""
    fig, axes = _figure(3.6)
    ax = axes[0, 0]
    bins = bins if bins is not None else latency_bins(run, percentiles, bin_s)
    if bins is None:
        return _empty(fig, ax, "no successful requests")
    _draw_latency(ax, run, bins)
    ax.set_xlabel("time since start (s)")
    ax.set_title(f"Latency percentiles per {bins.width:g} s", y=TITLE_Y)
    return fig


def _draw_throughput(top, bottom, run: Run, bins: TrafficBins, excluded_label: bool = True
                     ) -> None:
    """Throughput (ok and failed, stacked) on ``top`` and the error rate on ``bottom``."""
    edges = bins.edges
    _steps(top, edges, bins.rate_all, fill=True, color="#d62728", alpha=0.8, label="failed")
    _steps(top, edges, bins.rate_ok, fill=True, color="#2ca02c", alpha=0.9, label="successful")
    _steps(bottom, edges, bins.error_pct, color="#d62728", lw=1.2)
    for ax in (top, bottom):
        _shade_excluded(ax, run, edges[-1], excluded_label)
        ax.set_xlim(0, edges[-1])
    top.set_ylabel("throughput (req/s)")
    top.legend(loc="upper right", fontsize=8, ncols=3)
    bottom.set_ylabel("errors (%)")
    bottom.set_ylim(0, max(1.0, float(np.nanmax(bins.error_pct, initial=0.0)) * 1.15))


def throughput_over_time(run: Run, bin_s: float | None = None) -> Figure:
    """Requests per second (successful and failed) and the error rate per time bin."""
    fig, axes = _figure(4.6, 2, 1, sharex=True, height_ratios=(2, 1), hspace=0.15)
    top, bottom = axes[0, 0], axes[1, 0]
    if not len(run.requests):
        return _empty(fig, top, "no requests")
    bins = traffic_bins(run, bin_s)
    _draw_throughput(top, bottom, run, bins)
    top.set_title(f"Throughput and errors per {bins.width:g} s", y=TITLE_Y)
    bottom.set_xlabel("time since start (s)")
    return fig


def _split_series(metrics: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """The long metrics frame as (ts, value) arrays per (node, metric), each sorted by time:
    one sort, instead of one boolean filter of the whole frame per line drawn."""
    if metrics.empty:
        return {}
    node_codes, nodes = pd.factorize(metrics["node"].astype(str))
    metric_codes, names = pd.factorize(metrics["metric"].astype(str))
    key = node_codes.astype(np.int64) * len(names) + metric_codes
    ts = metrics["ts"].to_numpy(dtype=np.float64)
    order = np.lexsort((ts, key))
    key, ts = key[order], ts[order]
    values = metrics["value"].to_numpy(dtype=np.float64)[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    starts, stops = np.concatenate(([0], cuts)), np.concatenate((cuts, [key.size]))
    return {(str(nodes[key[a] // len(names)]), str(names[key[a] % len(names)])): (ts[a:b], values[a:b])
            for a, b in zip(starts, stops, strict=True)}


_NO_SERIES = (np.zeros(0), np.zeros(0))


def _gc_share(series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], node: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """(ts, % of wall time in GC over the preceding interval), summed over collectors."""
    parts = []
    for (name, metric), (ts, values) in series.items():
        if name != node or not metric.startswith("gc_time_ms."):
            continue
        inc = np.diff(values, prepend=np.nan)
        parts.append((ts, np.where(inc < 0, values, inc)))  # counter reset: the JVM restarted
    if not parts:
        return _NO_SERIES
    per_ts = pd.Series(np.concatenate([inc for _, inc in parts]),
                       index=np.concatenate([ts for ts, _ in parts])).groupby(level=0).sum(min_count=1)
    ts, gc_ms = per_ts.index.to_numpy(dtype=np.float64), per_ts.to_numpy(dtype=np.float64)
    dt = np.diff(ts, prepend=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ts, np.where(dt > 0, gc_ms / (dt * 1000.0) * 100.0, np.nan)


def _node_names(run: Run) -> list[str]:
    return sorted({str(n) for n in run.metrics["node"].unique()} - NON_NODE_SERIES)


def _draw_resources(cpu, heap, gc, run: Run, excluded_label: bool = True
                    ) -> tuple[list, list[str]]:
    """CPU (with the generator's), heap used against heap max, and GC time share per node on
    three panels; returns the legend's handles and labels (one legend serves all three: a node
    has one colour in all of them)."""
    nodes = _node_names(run)
    origin = run.start_ts
    span = 0.0
    heap_max = False
    series = _split_series(run.metrics)
    for i, node in enumerate(nodes):
        color = f"C{i % 10}"
        ts, v = series.get((node, "cpu_percent"), _NO_SERIES)
        cpu.plot(ts - origin, v, color=color, lw=1.1, label=node)
        span = max(span, float((ts - origin).max(initial=0)))
        ts, v = series.get((node, "heap_used_bytes"), _NO_SERIES)
        heap.plot(ts - origin, v / 2**20, color=color, lw=1.1)
        ts, v = series.get((node, "heap_max_bytes"), _NO_SERIES)
        if v.size:
            heap.axhline(float(np.nanmax(v)) / 2**20, color=color, ls="--", lw=0.9)
            heap_max = True
        ts, v = _gc_share(series, node)
        gc.plot(ts - origin, v, color=color, lw=1.1)
    ts, v = series.get(("generator", "cpu_percent"), _NO_SERIES)
    if v.size:
        cpu.plot(ts - origin, v, color="0.35", ls=":", lw=1.3, label="load generator")
    for ax in (cpu, heap, gc):
        _shade_excluded(ax, run, span, excluded_label)
        ax.set_xlim(0, max(span, 1e-9))
        ax.set_ylim(bottom=0)
    handles, labels = cpu.get_legend_handles_labels()
    if heap_max:
        handles.insert(len(nodes), Line2D([], [], color="0.35", ls="--", lw=0.9))
        labels.insert(len(nodes), "heap max (dashed)")
    cpu.set_ylabel("CPU (%, 100 = 1 core)")
    heap.set_ylabel("heap (MiB)")
    gc.set_ylabel("GC time (% of wall)")
    return handles, labels


#: The run timeline's groups of panels and their heights (inches).
TIMELINE_PANELS = {"traffic": (2.2, 1.5, 0.8), "resources": (1.4, 1.2, 0.9)}


def run_timeline(run: Run, bin_s: float | None = None) -> Figure:
    """Everything over time on one time axis, so a latency spike lines up with the CPU, heap and
    GC of that moment: "traffic" (latency percentiles, throughput, error rate) and "resources"
    (per node CPU, heap and GC time share). A group without data (no requests, no node metrics)
    is left out.

    Stacked panels share one drawn time axis: the cheapest way to draw them."""
    show_traffic = len(run.requests) > 0
    resources = bool(len(run.metrics)) and bool(_node_names(run))
    heights = ((TIMELINE_PANELS["traffic"] if show_traffic else ())
               + (TIMELINE_PANELS["resources"] if resources else ()))
    if not heights:
        fig, axes = _figure(2.0)
        return _empty(fig, axes[0, 0], "no requests and no node metrics recorded")
    fig, axes = _figure(sum(heights) + 0.55 + 0.5 + 0.15 * (len(heights) - 1), len(heights), 1,
                        sharex=True, height_ratios=heights, hspace=0.15, top=0.5)
    rows = list(axes[:, 0])
    parts = []
    if show_traffic:
        latency, throughput, errors = rows[:3]
        rows = rows[3:]
        bins = traffic_bins(run, bin_s)
        if bins.latency is None:
            latency.text(0.5, 0.5, "no successful requests", ha="center", va="center",
                         transform=latency.transAxes, color="0.4")
        else:
            _draw_latency(latency, run, bins.latency, excluded_label=False)
        _draw_throughput(throughput, errors, run, bins, excluded_label=False)
        parts.append(f"traffic per {bins.width:g} s bin")
    if resources:
        cpu, heap, gc = rows
        handles, labels = _draw_resources(cpu, heap, gc, run, excluded_label=False)
        cpu.legend(handles, labels, loc="upper right", fontsize=8, ncols=len(labels))
        cpu.set_ylim(top=cpu.get_ylim()[1] * 1.3)  # room for the legend
        parts.append("node resources per sample")
    axes[-1, 0].set_xlabel("time since start (s)")
    fig.suptitle(f"Over time: {', '.join(parts)} (grey: outside the measured window)",
                 y=1 - 0.12 / fig.get_figheight())
    return fig


def node_distribution(summary: RequestSummary) -> Figure:
    """Each node's p50/p95/p99 latency, with its share and count of the requests under its name
    (one panel: a second one costs as much to draw as the whole plot and showed two numbers)."""
    fig, axes = _figure(3.4, left=0.8)
    ax = axes[0, 0]
    if not summary.nodes:
        return _empty(fig, ax, "no requests in the window")
    names = sorted(summary.nodes)
    nodes = [summary.nodes[n] for n in names]
    x = np.arange(len(names))
    for i, (p, attr) in enumerate(((50.0, "p50_ms"), (95.0, "p95_ms"), (99.0, "p99_ms"))):
        bars = ax.bar(x + (i - 1) * 0.27, [getattr(n, attr) for n in nodes], width=0.27,
                      color=PERCENTILE_COLORS[p], label=f"p{p:g}")
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    ax.set_xticks(x, [f"{name}\n{n.share:.1%} of requests ({n.count:,})"
                      for name, n in zip(names, nodes, strict=True)])
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency per node (successful requests) and each node's share of requests",
                 y=TITLE_Y)
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    return fig


def throughput_vs_users(steps: pd.DataFrame, fit: USLFit | None = None,
                        knee: Knee | None = None) -> Figure:
    """Measured step throughput against users, the USL curve, the knee, and p95 per step."""
    fig, axes = _figure(4.0, right=0.8)
    ax = axes[0, 0]
    used = steps[steps["users"] > 0]
    ax.plot(used["users"], used["throughput"], "o", color="C0", label="measured (ok req/s)")
    n_max = float(used["users"].max()) if len(used) else 1.0
    if fit is not None:
        n = np.linspace(1.0, n_max * 1.3, 200)
        ax.plot(n, fit.throughput(n), color="C0", alpha=0.6,
                label=f"USL fit (σ={fit.sigma:.3f}, κ={fit.kappa:.5f}, R²={fit.r2:.2f})")
        if math.isfinite(fit.n_peak) and fit.n_peak <= n_max * 1.3:
            ax.plot([fit.n_peak], [fit.x_peak], "^", color="C3", ms=9,
                    label=f"USL peak {fit.x_peak:,.0f} req/s at {fit.n_peak:.0f} users")
    if knee is not None and knee.index is not None:
        ax.axvline(knee.users, color="C2", ls="--", lw=1.2, label=f"knee: {knee.users:g} users")
    ax.set_xlabel("users (concurrency)")
    ax.set_ylabel("throughput (req/s)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title("Throughput against users", y=TITLE_Y)
    right = ax.twinx()
    right.plot(used["users"], used["p95_ms"], "s--", color="C1", ms=4, lw=1, label="p95 latency")
    right.set_ylabel("p95 latency (ms)", color="C1")
    right.set_ylim(bottom=0)
    right.spines["top"].set_visible(False)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    return fig


_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30,
               "gb": 2**30, "t": 2**40}
_TIME_UNITS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _quantity(value: object, units: dict[str, float]) -> float | None:
    """A number with an optional unit ("512m", "30s", "16") in base units; None otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _QUANTITY.match(str(value))
    if match is None or match.group(2).lower() not in units:
        return None
    return float(match.group(1)) * units[match.group(2).lower()]


def _ordered_values(column: pd.Series, param: str = "") -> list:
    """Distinct values of a swept parameter, in their natural order when every one is a
    quantity (numbers; sizes like 512m/2g for jvm.*; durations like 30s/5m for timeouts),
    else in order of first appearance."""
    values = list(dict.fromkeys(column.dropna().tolist()))
    units = _SIZE_UNITS if param.startswith("jvm.") else _TIME_UNITS
    keys = [_quantity(v, units) for v in values]
    if values and all(k is not None for k in keys):
        return [v for _, v in sorted(zip(keys, values, strict=True), key=lambda kv: kv[0])]
    return values


def objective_label(sweep: Sweep) -> str:
    """Axis label of a sweep's objective, with its unit when known."""
    name = sweep.objective
    spec = sweep.info.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    objective = spec.get("objective")
    unit = (objective.get("unit") if isinstance(objective, dict) else None) or spec.get("unit")
    lowered = name.lower()
    if not unit:
        unit = ("req/s" if "throughput" in lowered or "rps" in lowered
                else "ms" if any(k in lowered for k in ("latency", "p9", "p5", "_ms")) else "")
    return f"{name} ({unit})" if unit else name


def sweep_objective(sweep: Sweep, max_cols: int = 3) -> Figure:
    """The objective of each complete trial against each swept parameter (SLO misses marked)."""
    params = list(sweep.params) or ["trial"]
    cols = min(max_cols, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = _figure(3.0 * rows + 0.3, rows, cols, sharey=True, top=0.7, hspace=0.7,
                        wspace=0.4)
    done = sweep.trials[sweep.trials["state"] == "complete"]
    for ax, param in zip(axes.flat, params, strict=False):
        column = done[param] if param == "trial" else done[f"param.{param}"]
        order = _ordered_values(column, param)
        pos = {v: i for i, v in enumerate(order)}
        x = np.array([pos.get(v, np.nan) for v in column], dtype=float)
        jitter = (np.arange(x.size) % 5 - 2) * 0.04
        ok = done["slo_ok"].to_numpy(dtype=bool)
        y = done["objective"].to_numpy(dtype=float)
        ax.plot(x[ok] + jitter[ok], y[ok], "o", color="C0", label="SLO met")
        if (~ok).any():
            ax.plot(x[~ok] + jitter[~ok], y[~ok], "x", color="C3", ms=8, label="SLO missed")
        ax.set_xticks(range(len(order)), [str(v) for v in order])
        ax.set_xlabel(param)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel(objective_label(sweep))
    for row in axes[1:]:
        row[0].set_ylabel(objective_label(sweep))
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"Sweep {sweep.id}: objective per parameter ({sweep.direction})")
    return fig


def sweep_heatmap(sweep: Sweep, x: str | None = None, y: str | None = None) -> Figure:
    """Mean objective over complete trials for each (x, y) pair of two swept parameters."""
    if len(sweep.params) < 2 and (x is None or y is None):
        raise ValueError("a heat map needs two swept parameters")
    x, y = x or sweep.params[0], y or sweep.params[1]
    done = sweep.trials[sweep.trials["state"] == "complete"]
    xs = _ordered_values(sweep.trials[f"param.{x}"], x)
    ys = _ordered_values(sweep.trials[f"param.{y}"], y)
    grid = np.full((len(ys), len(xs)), np.nan)
    slo = np.ones_like(grid, dtype=bool)
    for (vx, vy), group in done.groupby([f"param.{x}", f"param.{y}"], sort=False):
        grid[ys.index(vy), xs.index(vx)] = group["objective"].mean()
        slo[ys.index(vy), xs.index(vx)] = bool(group["slo_ok"].all())
    fig, axes = _figure(0.6 * len(ys) + 2.4, left=1.1, right=0.2)
    ax = axes[0, 0]
    ax.grid(False)
    cmap = colormaps["viridis" if sweep.direction == "maximize" else "viridis_r"]
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap.with_extremes(bad="#e0e0e0"),
                      aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label=objective_label(sweep))
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), value in np.ndenumerate(grid):
        text = "—" if not np.isfinite(value) else f"{value:,.4g}" + ("" if slo[i, j] else "\nSLO missed")
        dark = np.isfinite(value) and ((value < mid) == (sweep.direction == "maximize"))
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w" if dark else "k")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"Sweep {sweep.id}: mean {objective_label(sweep)} (grey: no complete trial)", y=TITLE_Y)
    return fig


def latency_by_run(summaries: Mapping[str, RequestSummary]) -> Figure:
    """p50/p95/p99 of each run side by side (first run = baseline)."""
    fig, axes = _figure(3.4)
    ax = axes[0, 0]
    labels = list(summaries)
    x = np.arange(len(labels))
    for i, p in enumerate((50.0, 95.0, 99.0)):
        values = [summaries[k].percentiles_ms[p] for k in labels]
        bars = ax.bar(x + (i - 1) * 0.27, values, width=0.27, color=PERCENTILE_COLORS[p],
                      label=f"p{p:g}")
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("run")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency percentiles per run (successful requests, measured window)", y=TITLE_Y)
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    return fig


#: Percentiles of the percentile curve (more points toward the tail).
CURVE_PERCENTILES = tuple(np.round(100 - 100 * np.logspace(0, -3.3, 60), 4)[1:])


def latency_curve(runs: Mapping[str, Run]) -> Figure:
    """Latency against percentile (logit axis: the tail spread out) for each run."""
    fig, axes = _figure(3.8)
    ax = axes[0, 0]
    for label, run in runs.items():
        latency = ok_latency_ms(run.requests, run.window)
        if latency.size:  # one selection per percentile: sorting first took twice as long
            ps = np.array(CURVE_PERCENTILES)
            ax.plot(ps / 100.0, nearest_rank(latency, ps), lw=1.4, label=label)
    ax.set_xscale("logit")
    ticks = [0.5, 0.9, 0.99, 0.999]
    ax.set_xticks(ticks, [f"p{t * 100:g}" for t in ticks])
    ax.set_xlim(0.1, CURVE_PERCENTILES[-1] / 100)
    ax.set_xlabel("percentile (logit scale)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency by percentile per run (successful requests, measured window)", y=TITLE_Y)
    ax.legend(fontsize=8)
    return fig
