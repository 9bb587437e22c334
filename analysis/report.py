"""The HTML report: one self-contained file (plots embedded as SVG data URIs, no external URL)
for one or more runs and sweeps.

Contents: warnings first (an interrupted run, a saturated generator, unstable tail percentiles,
configurations that differ in more than was swept); with two runs or more, the key figures of
each against the first with intervals and verdicts, and their configuration differences; for a
sweep, the best configuration as ``eiperf tune apply`` arguments, the ranking and the sweep
plots; for each run, its summary, per-node figures, GC pauses (when its nodes logged GC),
errors, load, cluster snapshot, plots, and for a step-load run the capacity plan. Rendered with
jinja2 (autoescape) from ``templates/report.html.j2`` and written atomically.
"""

from __future__ import annotations

import base64
import functools
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from matplotlib import rc_context
from matplotlib.figure import Figure

from analysis import plots
from analysis.compare import flatten
from analysis.gc import gc_notes, load_gc, node_table
from analysis.gc_plot import pause_timeline
from analysis.keyfigures import RunFigures, key_figure_table, key_figures, run_figures
from analysis.loading import Run, Sweep, load, load_run
from analysis.planning import format_plan, plan_capacity
from analysis.ranking import (
    best_trial,
    objective_noise,
    order_trend,
    ranking_table,
    snapshot_flags,
    trial_params,
)
from analysis.steady import format_steady
from analysis.summary import format_summary
from eicore import __version__
from eicore.fsutil import atomic_write_text
from eicore.results import RunRecord
from eicore.trials import tune_apply_args, tune_apply_command

TEMPLATES = Path(__file__).parent / "templates"
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "eiperf"}


def figure_data_uri(fig: Figure, fmt: str = "svg") -> str:
    """The figure as a data: URI (SVG with text as text, or PNG at 100 dpi)."""
    buf = io.BytesIO()
    with rc_context(_SVG_RC):
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _plot(title: str, fig: Figure, caption: str, fmt: str) -> dict[str, str]:
    return {"title": title, "uri": figure_data_uri(fig, fmt), "caption": caption}


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _fmt(value: Any, spec: str = ",.2f", unit: str = "") -> str:
    if value is None:
        return "n/a"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "n/a"
    return f"{number:{spec}}{unit}"


def _mib(value: float) -> str:
    return _fmt(value / 2**20 if value == value else value, ",.0f", " MiB")


def _leaf(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _named(value: Any) -> Any:
    """Lists of dicts that carry a ``name`` become dicts by name (nodes of a cluster model), so
    they flatten into readable keys instead of one long repr."""
    if isinstance(value, dict):
        return {k: _named(v) for k, v in value.items()}
    if (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
            and all("name" in v for v in value)):
        return {str(v["name"]): _named({k: x for k, x in v.items() if k != "name"})
                for v in value}
    return value


def snapshot_tables(cluster: dict[str, Any]) -> dict[str, Any]:
    """The cluster snapshot as a nodes table (setting × node, differing rows marked) and one
    key/value table per other section."""
    cluster = _named(cluster)
    nodes = cluster.get("nodes") or {}
    if isinstance(nodes, list):
        nodes = {str(n.get("name", i)): n for i, n in enumerate(nodes) if isinstance(n, dict)}
    flat = {name: flatten(value) if isinstance(value, dict) else {"": value}
            for name, value in nodes.items()}
    keys = sorted({k for values in flat.values() for k in values})
    node_rows = []
    for key in keys:
        cells = [_leaf(flat[n].get(key)) for n in flat]
        node_rows.append({"key": key, "cells": cells, "differs": len(set(cells)) > 1})
    sections: dict[str, list[tuple[str, str]]] = {}
    for key, value in cluster.items():
        if key == "nodes":
            continue
        if isinstance(value, dict):
            sections[key] = [(k, _leaf(v)) for k, v in flatten(value).items()]
        else:
            sections.setdefault("cluster", []).append((key, _leaf(value)))
    return {"node_names": list(flat), "node_rows": node_rows, "sections": sections}


def _severity(warning: str) -> str:
    serious = ("generator was saturated", "interrupted", "run failed", "is missing",
               "no requests")
    return "danger" if any(word in warning for word in serious) else "warn"


def time_bin_width(run: Run) -> float:
    """The bin width of a run's plots over time."""
    last = float(run.requests["ts"].max()) if len(run.requests) else 0.0
    span = max(run.record.ended_at or 0.0, last) - run.start_ts
    return plots.bin_width(max(span, 1.0))


def timeline_plot(run: Run, fmt: str = "svg") -> dict[str, str] | None:
    """The run's plots over time in one figure on one time axis (None without any data)."""
    if not len(run.requests) and not len(run.metrics):
        return None
    width = time_bin_width(run)
    panels = []
    if len(run.requests):
        panels.append(f"p50, p95 and p99 latency of successful requests in each {width:g} s "
                      "bin; requests started per second (green ok, red failed) and the share "
                      "that failed")
    if len(run.metrics):
        panels.append("CPU per node (dotted: the load generator), heap used against the heap "
                      "maximum (dashed), and the share of wall time each JVM spent in GC")
    return _plot("Over time", plots.run_timeline(run, bin_s=width),
                 "; ".join(panels) + ". Grey bands are outside the measured window and not in "
                 "the figures above.", fmt)


def node_plot(figures: RunFigures, fmt: str = "svg") -> dict[str, str] | None:
    """How the run's requests were spread over the nodes (None without requests)."""
    if not len(figures.run.requests):
        return None
    return _plot(
        "Requests per node", plots.node_distribution(figures.requests),
        "Each node's latency percentiles, and under its name the share of the measured "
        "requests nginx sent it.", fmt)


def gc_section(run: Run, fmt: str = "svg") -> dict[str, Any] | None:
    """The run's GC pauses from its nodes' GC logs (None without gc.parquet): per node the
    pause percentiles in the window, notes, and the pauses over time."""
    gc = load_gc(run.path)
    if gc is None:
        return None
    header, rows = node_table(gc)
    return {"header": header, "rows": rows, "notes": gc_notes(gc), "plot": _plot(
        "GC pauses over time", pause_timeline(gc, run.start_ts, run.window, run.record.ended_at),
        "Each stop-the-world pause of each node's JVM, from its GC log, at the time it started; "
        "its height is the pause, its colour the kind. Grey: outside the measured window, not "
        "in the table.", fmt)}


def doctor_box(record: RunRecord) -> dict[str, Any] | None:
    """The run's configuration checks (run.json `doctor`, taken before the load): the counts
    and the failed and warned rows, failures first; None when none were recorded."""
    doctor = record.doctor or {}
    if not doctor.get("counts"):
        return None
    c = doctor["counts"]
    order = {"fail": 0, "warn": 1}
    found = sorted(doctor.get("findings", []), key=lambda f: order.get(f["verdict"], 2))
    return {"counts": ", ".join(f"{c.get(v, 0)} {v}" for v in ("ok", "warn", "fail", "n/a")),
            "failed": c.get("fail", 0) > 0,
            "rows": [[f["verdict"], f["area"], f["host"], f["check"], f["current"],
                      f["recommended"]] for f in found]}


def _open_model_rows(o: dict[str, Any] | None) -> list[tuple[str, str]]:
    """An open run's arrivals beside its rate (run.json ``summary.open_model``)."""
    if not o:
        return []
    share = o.get("dropped_share")
    return [
        ("open model", f"latency from each request's intended start; intended "
                       f"{_fmt(o.get('intended_rps'), ',.1f', ' req/s')}, achieved "
                       f"{_fmt(o.get('achieved_rps'), ',.1f', ' req/s')}"),
        ("arrivals (whole run)", f"{o.get('planned', 0):,} planned, {o.get('sent', 0):,} sent, "
                                 f"{o.get('dropped', 0):,} dropped at the cap of "
                                 f"{o.get('cap', 0):,} in flight "
                                 f"({_fmt(share * 100 if share is not None else None, '.2f', ' %')})"),
        ("service time (from the send)", f"p50 {_fmt(o.get('service_p50_ms'), ',.2f', ' ms')}, "
                                         f"p99 {_fmt(o.get('service_p99_ms'), ',.2f', ' ms')}; "
                                         f"send lag p99 "
                                         f"{_fmt(o.get('send_lag_p99_ms'), ',.2f', ' ms')}"),
    ]


def run_section(figures: RunFigures, fmt: str = "svg", *, capacity: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """Everything the template shows about one run."""
    run, s, m = figures.run, figures.requests, figures.metrics
    window = run.window
    summary_rows = [
        ("measured window", f"{_fmt(s.duration_s, ',.1f', ' s')}" + (
            f" ({_when(window[0])} → {_when(window[1])})" if window else " (whole run)")),
        ("requests", f"{s.count:,} (ok {s.ok_count:,})"),
        ("throughput", f"{_fmt(s.throughput_rps, ',.1f', ' req/s')} "
                       f"(ok {_fmt(s.ok_throughput_rps, ',.1f', ' req/s')})"),
        ("error rate", _fmt(s.error_rate * 100 if s.count else None, ".2f", " %")),
        *((f"p{p:g} latency", _fmt(v, ",.2f", " ms")) for p, v in s.percentiles_ms.items()),
        ("mean / max latency", f"{_fmt(s.mean_ms, ',.2f', ' ms')} / {_fmt(s.max_ms, ',.2f', ' ms')}"),
        ("latency basis", f"{'all' if s.include_errors else 'successful'} requests, "
                          f"n={s.latency_count:,}, nearest rank"),
        *((("steady state", format_steady(s.steady).removeprefix("steady state: ")),)
          if s.steady is not None else ()),
        *_open_model_rows(run.record.summary.get("open_model")),
        ("load generator", f"CPU mean {_fmt(m.generator_cpu_percent_mean, '.0f', ' %')}, max "
                           f"{_fmt(m.generator_cpu_percent_max, '.0f', ' %')} over "
                           f"{m.generator_processes} process(es): "
                           f"{ {True: 'SATURATED', False: 'not saturated', None: 'unknown'}[m.generator_saturated]}"),
    ]
    node_rows = []
    for name, n in sorted(s.nodes.items()):
        nm = m.nodes.get(name)
        node_rows.append([
            name, f"{n.share:.1%}", f"{n.count:,}", _fmt(n.p50_ms), _fmt(n.p95_ms), _fmt(n.p99_ms),
            _fmt(nm.cpu_percent_mean, ".0f", " %") if nm else "n/a",
            f"{_mib(nm.heap_used_bytes_max)} / {_mib(nm.heap_max_bytes)}" if nm else "n/a",
            _fmt(nm.gc_time_share * 100, ".2f", " %") if nm else "n/a",
            _fmt(nm.gc_per_s, ".2f") if nm else "n/a",
        ])
    section_plots = [p for p in (timeline_plot(run, fmt), node_plot(figures, fmt))
                     if p is not None]
    return {
        "id": run.id, "anchor": f"run-{run.id}", "path": str(run.path),
        "status": run.status.value, "incomplete": run.incomplete,
        "warnings": [(w, _severity(w)) for w in figures.warnings],
        "started": _when(run.record.started_at), "ended": _when(run.record.ended_at),
        "summary_rows": summary_rows, "node_rows": node_rows,
        "steady": None if s.steady is None else s.steady.verdict.value,
        "errors": [[k, f"{v:,}"] for k, v in s.errors.items()],
        "scenarios": [[k, f"{v:,}"] for k, v in s.scenarios.items()],
        "load": [(k, _leaf(v)) for k, v in flatten(run.record.load or {}).items()],
        "slo": list(run.record.slo), "slo_results": run.record.slo_results,
        "meta": [(f"{group}.{k}", _leaf(v)) for group in ("generator", "host", "versions")
                 for k, v in flatten(getattr(run.record, group) or {}).items()],
        "snapshot": snapshot_tables(run.record.cluster or {}),
        "text_summary": format_summary(s, m), "plots": section_plots, "capacity": capacity,
        "gc": gc_section(run, fmt), "doctor": doctor_box(run.record),
    }


def capacity_section(run: Run, fmt: str = "svg", **kwargs: Any) -> dict[str, Any] | None:
    """The capacity plan of a step-load run (None for other runs)."""
    plan = plan_capacity(run, **kwargs)
    if plan is None or len(plan.steps) < 2:
        return None
    steps = plan.steps
    rows = [[f"{r.users:g}", _fmt(r.throughput, ",.1f"), _fmt(r.error_rate * 100, ".2f"),
             _fmt(r.p50_ms), _fmt(r.p95_ms), _fmt(r.p99_ms), _fmt(r.concurrency, ",.1f")]
            for r in steps.itertuples(index=False)]
    return {
        "lines": format_plan(plan), "rows": rows,
        "plot": _plot("Throughput against users", plots.throughput_vs_users(steps, plan.fit,
                                                                            plan.knee),
                      "Measured ok throughput of each load step (dots), the Universal "
                      "Scalability Law fitted to them (line), the knee, and p95 per step "
                      "(squares, right axis).", fmt),
    }


def sweep_section(sweep: Sweep, fmt: str = "svg") -> dict[str, Any]:
    """Ranking, best configuration, consistency flags and plots of a sweep."""
    best = best_trial(sweep)
    best_params = trial_params(best, sweep.params) if best is not None else {}
    header, rows = ranking_table(sweep)
    flags = snapshot_flags(sweep)
    section_plots = []
    if (sweep.trials["state"] == "complete").any():
        section_plots.append(_plot(
            "Objective per parameter", plots.sweep_objective(sweep),
            f"{sweep.objective} of every complete trial against each swept parameter "
            f"(x: SLO missed); the sweep {sweep.direction}s it.", fmt))
        if len(sweep.params) >= 2:
            section_plots.append(_plot(
                "Heat map", plots.sweep_heatmap(sweep),
                f"Mean {sweep.objective} of complete trials for each pair of "
                f"{sweep.params[0]} and {sweep.params[1]}.", fmt))
    noise = objective_noise(sweep)
    return {
        "id": sweep.id, "anchor": f"sweep-{sweep.id}", "path": str(sweep.path),
        "strategy": sweep.strategy, "state": sweep.state, "interrupted": sweep.interrupted,
        "direction": sweep.direction,
        "objective": sweep.objective, "trials": len(sweep.trials),
        "counts": sweep.trials["state"].value_counts().to_dict(),
        "best": None if best is None else {
            "trial": int(best["trial"]), "objective": _fmt(best["objective"], ",.4g"),
            "run_id": best["run_id"], "command": tune_apply_command(best_params),
            "args": " ".join(tune_apply_args(best_params)),
            "params": list(best_params.items())},
        "noise": None if noise is None else f"{noise:.1%}",
        "header": header, "rows": rows,
        "flags": [(run_id, ", ".join(keys)) for run_id, keys in flags.items()],
        "trend": order_trend(sweep),
        "plots": section_plots,
    }


def comparison_section(runs: Sequence[RunFigures], fmt: str = "svg", **kwargs: Any
                       ) -> dict[str, Any]:
    """Key figures against the first run, configuration differences, side-by-side plots."""
    figures = key_figures(runs, **kwargs)
    header, rows = key_figure_table(figures)
    base = runs[0].run.record.cluster or {}
    flat_base = flatten(base)
    diffs = []
    for other in runs[1:]:
        flat_other = flatten(other.run.record.cluster or {})
        diffs.append({"id": other.id, "rows": [
            (k, _leaf(flat_base.get(k, "(absent)")), _leaf(flat_other.get(k, "(absent)")))
            for k in figures.diffs[other.id]]})
    labels = {f.id: f.requests for f in runs}
    own_warnings = {f"{f.id}: {w}" for f in runs for w in f.warnings}  # shown per run already
    return {
        "baseline": runs[0].id, "header": header, "rows": rows, "diffs": diffs,
        "notes": [n for n in figures.notes if n not in own_warnings],
        "plots": [
            _plot("Latency percentiles per run", plots.latency_by_run(labels),
                  "p50, p95 and p99 of each run's successful requests in its measured window.",
                  fmt),
            _plot("Latency by percentile", plots.latency_curve({f.id: f.run for f in runs}),
                  "Each run's latency at every percentile; the logit axis spreads out the tail.",
                  fmt),
        ],
    }


@functools.cache
def _template() -> Template:
    """The compiled report template (compiled once per process, like an import)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")


def render_report(targets: Sequence[Run | Sweep], *, title: str | None = None,
                  fmt: str = "svg", target_rps: float | None = None) -> str:
    """The report's HTML for loaded runs and sweeps (in the order given)."""
    run_list = [t for t in targets if isinstance(t, Run)]
    sweeps = [t for t in targets if isinstance(t, Sweep)]
    sweep_sections = [sweep_section(s, fmt) for s in sweeps]
    extra: list[Run] = []
    for sweep, section in zip(sweeps, sweep_sections, strict=True):
        best = section["best"]
        path = sweep.run_path(best["run_id"]) if best and best["run_id"] else None
        if path is not None and (path / "run.json").exists():
            best["anchor"] = f"run-{best['run_id']}"
            if all(r.id != best["run_id"] for r in run_list + extra):
                extra.append(load_run(path))
    all_runs = run_list + extra
    # One process: drawing in forked children was measured slower for big runs (each page
    # either side writes after the fork is copied; see bench/bench_report.py).
    all_figures = [run_figures(r) for r in all_runs]
    figures = all_figures[:len(run_list)]
    runs = [run_section(f, fmt, capacity=capacity_section(f.run, fmt, target_rps=target_rps))
            for f in all_figures]
    comparison = comparison_section(figures, fmt) if len(figures) >= 2 else None
    warnings = [(r["id"], w, sev) for r in runs for w, sev in r["warnings"]]
    if comparison:
        warnings += [("comparison", n, "warn") for n in comparison["notes"]
                     if n.startswith("configuration of")]
    for s in sweep_sections:
        if s["interrupted"]:
            warnings.append((s["id"], "the sweep was interrupted: sweep.json says running but no "
                             f"eiperf process runs it; 'eiperf sweep --resume {s['id']}' "
                             "continues it", "danger"))
        if s["trend"]:
            warnings.append((s["id"], s["trend"], "warn"))
        warnings += [(s["id"], f"run {rid} differs from the first trial's run beyond the swept "
                      f"parameters: {keys}", "warn") for rid, keys in s["flags"]]
    names = [t.id for t in targets]
    return _template().render(
        title=title or f"eiperf report: {', '.join(names)}", generated=_when(time.time()),
        version=__version__, runs=runs, sweeps=sweep_sections, comparison=comparison,
        warnings=warnings, sources=[(t.id, str(t.path)) for t in targets])


def write_report(targets: Sequence[Run | Sweep | str | Path], out_html: str | Path,
                 **kwargs: Any) -> Path:
    """Render runs/sweeps (loaded, or their folders) and write the report atomically; returns
    its path."""
    out = Path(out_html)
    loaded = [t if isinstance(t, Run | Sweep) else load(t) for t in targets]
    atomic_write_text(out, render_report(loaded, **kwargs))
    return out


def build_report(paths: Sequence[str | Path], out_html: str | Path, *,
                 results: str | Path | None = None, title: str | None = None,
                 fmt: str = "svg", target_rps: float | None = None) -> Path:
    """Load runs/sweeps (folders, or ids under the results folder), render the report and
    write it atomically to ``out_html``; returns its path."""
    if not paths:
        raise ValueError("build_report needs at least one run or sweep")
    targets = [load(p, results) for p in paths]
    return write_report(targets, out_html, title=title, fmt=fmt, target_rps=target_rps)


def default_report_name(targets: Sequence[Run | Sweep]) -> str:
    """report-<id>.html; report-<a>-vs-<b>.html for two; report-<a>-and-N-more.html beyond."""
    ids = [t.id for t in targets]
    if len(ids) == 1:
        stem = ids[0]
    elif len(ids) == 2:
        stem = f"{ids[0]}-vs-{ids[1]}"
    else:
        stem = f"{ids[0]}-and-{len(ids) - 1}-more"
    return f"report-{stem}.html"
