"""The figures a finished run records in run.json: its summary and SLO verdicts.

`record_figures` is what `eiperf run` and the sweep engine hand to `loadtests.run` as the
run's `finalize` step (injected, so loadtests never imports analysis); the shape it writes is
`eicore.results.RunSummary`, declared once in the foundation.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.gc import format_gc, gc_summary, load_gc
from analysis.open_model import check_open, format_open, open_record, summarize_open
from analysis.slo import SloRule, evaluate, format_results
from analysis.summary import (
    MetricsSummary,
    RequestSummary,
    format_summary,
    summarize_metrics,
    summarize_requests,
)
from eicore.results import METRICS_FILE, REQUESTS_FILE, RunRecord, RunSummary, SloVerdict


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def summary_record(summary: RequestSummary, metrics: MetricsSummary | None) -> RunSummary:
    """The key figures of a run as run.json stores them (JSON-safe: NaN becomes None)."""
    out: RunSummary = {
        "count": summary.count, "ok_count": summary.ok_count,
        "error_rate": _clean(summary.error_rate), "throughput_rps": _clean(summary.throughput_rps),
        "duration_s": _clean(summary.duration_s), "mean_ms": _clean(summary.mean_ms),
        "max_ms": _clean(summary.max_ms),
        "percentiles_ms": {f"p{p:g}": _clean(v) for p, v in summary.percentiles_ms.items()},
        "nodes": {n: {"count": v.count, "share": _clean(v.share), "p50_ms": _clean(v.p50_ms),
                      "p95_ms": _clean(v.p95_ms), "p99_ms": _clean(v.p99_ms)}
                  for n, v in summary.nodes.items()},
    }
    if summary.steady is not None:
        out["steady_state"] = summary.steady.record()
    if metrics is not None:
        out["generator_cpu_percent_mean"] = _clean(metrics.generator_cpu_percent_mean)
        out["generator_saturated"] = metrics.generator_saturated
        out["node_metrics"] = {
            n: {"cpu_percent_mean": _clean(m.cpu_percent_mean),
                "heap_used_bytes_max": _clean(m.heap_used_bytes_max),
                "heap_max_bytes": _clean(m.heap_max_bytes),
                "gc_time_share": _clean(m.gc_time_share)}
            for n, m in metrics.nodes.items()}
    return out


def record_figures(run_dir: Path, record: RunRecord,
                   rules: list[SloRule]) -> tuple[RunRecord, list[str]]:
    """The record with its summary and SLO verdicts filled in, and the lines to print."""
    requests = pd.read_parquet(Path(run_dir) / REQUESTS_FILE)
    window = None
    if record.measure_start is not None and record.measure_end is not None \
            and record.measure_end > record.measure_start:
        window = (record.measure_start, record.measure_end)
    summary = summarize_requests(requests, window)
    metrics = None
    if (Path(run_dir) / METRICS_FILE).exists():
        metrics = summarize_metrics(pd.read_parquet(Path(run_dir) / METRICS_FILE), window,
                                    processes=int(record.generator.get("processes", 1)))
    results = evaluate(rules, summary)
    lines = [*format_summary(summary, metrics), *format_results(rules, results)]
    opened = summarize_open(requests, window, record.generator, summary.throughput_rps)
    if opened is not None:
        lines[1:1] = [*format_open(opened), *check_open(opened)]
    verdicts: list[SloVerdict] = [{"rule": r.rule, "actual": r.actual, "ok": r.ok,
                                   "verdict": r.verdict} for r in results]
    figures = summary_record(summary, metrics)
    gc = load_gc(run_dir)  # gc.parquet: written by the run when a node logs GC to a file
    figures.update(gc_summary(gc))  # type: ignore[typeddict-item]
    lines += format_gc(gc) if gc is not None else []
    if opened is not None:
        figures["open_model"] = open_record(opened)  # type: ignore[typeddict-item]
    return replace(record, summary=figures, slo_results=verdicts), lines
