"""`eiperf run`: one headless load test, a summary table, and SLO verdicts for CI.

Composes loadtests (the run and its result folder) with analysis (summary, SLOs): the
summary and SLO results are written into run.json once, when the run is final.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from eiperf.errors import ConfigError
from eiperf.results import METRICS_FILE, REQUESTS_FILE, RunRecord, RunStatus

EXIT_SLO_BROKEN = 1
EXIT_INCOMPLETE = 3


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def summary_dict(summary, metrics) -> dict[str, Any]:
    """The key figures of a run for run.json (JSON-safe)."""
    out: dict[str, Any] = {
        "count": summary.count, "ok_count": summary.ok_count,
        "error_rate": _clean(summary.error_rate), "throughput_rps": _clean(summary.throughput_rps),
        "duration_s": _clean(summary.duration_s), "mean_ms": _clean(summary.mean_ms),
        "max_ms": _clean(summary.max_ms),
        "percentiles_ms": {f"p{p:g}": _clean(v) for p, v in summary.percentiles_ms.items()},
        "nodes": {n: {"count": v.count, "share": _clean(v.share), "p50_ms": _clean(v.p50_ms),
                      "p95_ms": _clean(v.p95_ms), "p99_ms": _clean(v.p99_ms)}
                  for n, v in summary.nodes.items()},
    }
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


def analyse(run_dir: Path, record: RunRecord, rules) -> tuple[RunRecord, list[str]]:
    """Summary, metrics summary and SLO verdicts of a finished run; the lines to print."""
    import pandas as pd

    from analysis.slo import evaluate, format_results
    from analysis.summary import (
        format_summary,
        summarize_metrics,
        summarize_requests,
    )

    requests = pd.read_parquet(run_dir / REQUESTS_FILE)
    window = None
    if record.measure_start is not None and record.measure_end is not None \
            and record.measure_end > record.measure_start:
        window = (record.measure_start, record.measure_end)
    summary = summarize_requests(requests, window)
    metrics = None
    if (run_dir / METRICS_FILE).exists():
        metrics = summarize_metrics(pd.read_parquet(run_dir / METRICS_FILE), window,
                                    processes=int(record.generator.get("processes", 1)))
    results = evaluate(rules, summary)
    lines = [*format_summary(summary, metrics),
             *format_results(rules, results)]
    record = replace(record, summary=summary_dict(summary, metrics),
                     slo_results=[{"rule": r.rule, "actual": r.actual, "ok": r.ok,
                                   "verdict": r.verdict} for r in results])
    return record, lines


def profile_from_args(args: argparse.Namespace):
    from loadtests.profile import LoadProfile, parse_duration

    return LoadProfile.from_text(
        weights=args.weights, users=args.users,
        spawn_rate=float(args.spawn_rate or args.users),
        duration=parse_duration(args.duration, "--duration"),
        warmup=parse_duration(args.warmup, "--warmup"), shape=args.shape,
        step_users=args.step_users,
        step_time=parse_duration(args.step_time, "--step-time") if args.step_time else None,
        spike_users=args.spike_users, arrival_rate=args.arrival_rate,
        message_size=args.message_size,
        processes=os.cpu_count() or 1 if args.processes == -1 else args.processes,
    )


def cmd_run(args: argparse.Namespace) -> int:
    return execute_run(args)[0]


def execute_run(args: argparse.Namespace) -> tuple[int, Path]:
    """Run, print the summary; (exit code, result folder). `eiperf demo` reuses it."""
    from analysis.slo import SloError, parse_rules
    from eiperf.context import resolve_cluster
    from loadtests.run import run_load_test

    profile = profile_from_args(args)  # bad input fails here, before anything starts
    if not args.no_collect and not (math.isfinite(args.interval) and args.interval > 0):
        raise ConfigError(f"--interval {args.interval:g}: the metric sampling interval is a "
                          "number of seconds above 0 (default 1)")
    try:
        rules = parse_rules(args.slo or [])
    except SloError as e:
        raise ConfigError(str(e)) from None
    cluster = resolve_cluster(args)
    printed: list[str] = []

    def finalize(run_dir: Path, record: RunRecord) -> RunRecord:
        if record.generator.get("requests", 0) == 0:
            return record
        record, lines = analyse(run_dir, record, rules)
        printed.extend(lines)
        return record

    outcome = run_load_test(cluster, profile, Path(args.out), slo=args.slo, finalize=finalize,
                            progress=lambda m: print(m, flush=True), collect=not args.no_collect,
                            interval=args.interval)
    rec = outcome.record
    print()
    for line in printed:
        print(line)
    print(f"\nresult: {outcome.run_dir}  ({rec.status.value})")
    if rec.status is RunStatus.FAILED:
        print(f"run failed: {rec.error}")
        return 2, outcome.run_dir
    if rec.status is RunStatus.INCOMPLETE:
        print(f"run incomplete: {rec.error}")
        return EXIT_INCOMPLETE, outcome.run_dir
    broken = [r for r in rec.slo_results if not r["ok"]]
    if broken:
        print("SLO broken: " + ", ".join(f"{r['rule']} ({r['verdict']})" for r in broken))
        return EXIT_SLO_BROKEN, outcome.run_dir
    return 0, outcome.run_dir
