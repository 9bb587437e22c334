"""Capacity planning from step-load runs: per-step figures, the knee, the maximum sustainable
throughput, a USL fit over users (and over node counts when runs of several sizes are given),
the nodes needed for a target load, and Little's-law checks of each step.

The models are ``analysis.capacity``; this module only assembles them for one run and formats
the result as lines (no printing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.capacity import (
    Knee,
    LittlesLaw,
    USLFit,
    find_knee,
    fit_usl,
    format_knee,
    format_usl,
    littles_law,
    max_sustainable_throughput,
    nodes_needed,
    step_aggregates,
)
from analysis.loading import Run, users_timeline
from analysis.summary import NON_NODE_SERIES, UNATTRIBUTED, RequestSummary

_SLO_P95 = re.compile(r"^\s*p95\s*(?:<=?|≤)\s*([0-9.]+)\s*(ms|s)?\s*$", re.IGNORECASE)


def slo_p95_ms(slo: Sequence[str]) -> float | None:
    """The p95 bound (ms) of a run's SLO list ("p95 < 200 ms", "p95<=0.2s"), or None."""
    for item in slo or ():
        match = _SLO_P95.match(str(item))
        if match:
            value = float(match.group(1))
            return value * 1000.0 if (match.group(2) or "ms").lower() == "s" else value
    return None


def node_count(run: Run) -> int:
    """Nodes of the run's cluster: from the snapshot, else those that served requests."""
    nodes = (run.record.cluster or {}).get("nodes")
    if nodes:
        return len(nodes)
    served = {str(n) for n in run.requests["node"].dropna().unique()} - {UNATTRIBUTED}
    return max(1, len(served - NON_NODE_SERIES))


def think_time_s(run: Run) -> float:
    """Think time per user from run.json load (``think_time_s`` or ``wait_time_s``), else 0."""
    load = run.record.load or {}
    for key in ("think_time_s", "wait_time_s"):
        try:
            return float(load[key])
        except (KeyError, TypeError, ValueError):
            continue
    return 0.0


#: Shapes whose users all run for the whole measured window (Little's law applies as a whole).
STEADY_SHAPES = ("constant", "soak")


def run_littles_law(run: Run, summary: RequestSummary) -> LittlesLaw | None:
    """Little's-law check of a run whose users are steady over its measured window (constant or
    soak shape, users recorded): X·(R + Z) against N with the ok throughput and mean latency.
    None for other shapes or when a figure is missing."""
    load = run.record.load or {}
    if str(load.get("shape", "")).lower() not in STEADY_SHAPES:
        return None
    try:
        users = float(load["users"])
    except (KeyError, TypeError, ValueError):
        return None
    x, r = summary.ok_throughput_rps, summary.mean_ms / 1000.0
    if not (users > 0 and math.isfinite(x) and math.isfinite(r)):
        return None
    return littles_law(x, r, users, think_time_s(run))


@dataclass(frozen=True)
class CapacityPlan:
    """What one step-load run says about capacity (see the module docstring)."""

    run_id: str
    nodes: int
    steps: pd.DataFrame
    knee: Knee
    slo_p95_ms: float | None
    max_throughput: float | None
    fit: USLFit | None
    fit_problem: str | None
    littles: tuple[LittlesLaw, ...]
    target_rps: float | None
    headroom: float
    nodes_needed: int | None
    nodes_basis: str


def plan_capacity(run: Run, *, slo_p95: float | None = None, target_rps: float | None = None,
                  headroom: float = 0.2, settle_s: float | None = None,
                  node_runs: Sequence[Run] = ()) -> CapacityPlan | None:
    """The capacity plan of a step-load run; None for another shape or a run that records no
    users timeline.

    Requests of the warm-up are left out. ``slo_p95`` defaults to the run's SLO; ``settle_s`` (left out at the start of each step)
    to a tenth of the median step length. With ``node_runs`` (step runs of other cluster sizes,
    3 sizes or more together with this one) the nodes needed come from a USL fit over node
    counts; otherwise from this cluster's capacity per node, assuming linear scaling.
    """
    shape = str((run.record.load or {}).get("shape", "step")).lower()
    if shape != "step":  # a ramp-up of a constant run is not a capacity search
        return None
    timeline = users_timeline(run)
    if timeline is None or timeline["users"].nunique() < 2:
        return None
    slo = slo_p95 if slo_p95 is not None else slo_p95_ms(run.record.slo)
    end_ts = run.record.measure_end or run.record.ended_at
    timeline = _after_warmup(timeline, run.record.measure_start)
    if timeline["users"].nunique() < 2:
        return None
    if settle_s is None:
        change = timeline["users"].to_numpy()
        starts = timeline["ts"].to_numpy()[np.concatenate(([True], change[1:] != change[:-1]))]
        settle_s = float(np.median(np.diff(starts))) * 0.1 if starts.size > 1 else 0.0
    steps = step_aggregates(run.requests, timeline, end_ts=end_ts, settle_s=settle_s)
    steps = steps[(steps["users"] > 0) & (steps["count"] > 0)].reset_index(drop=True)
    knee = find_knee(steps, slo)
    max_tp = max_sustainable_throughput(steps, slo) if slo is not None else None
    fit, problem = None, None
    try:
        fit = fit_usl(steps["users"].to_numpy(), steps["throughput"].to_numpy())
    except ValueError as e:
        problem = str(e)
    think = think_time_s(run)
    littles = tuple(
        littles_law(float(r.attempted_throughput), float(r.mean_ms) / 1000.0, float(r.users),
                    think)
        for r in steps.itertuples(index=False)
        if r.users > 0 and math.isfinite(r.mean_ms)
    )
    nodes = node_count(run)
    needed, basis = None, "no target throughput given"
    if target_rps:
        needed, basis = _nodes_needed(run, nodes, knee, max_tp, target_rps, headroom, node_runs)
    return CapacityPlan(run.id, nodes, steps, knee, slo, max_tp, fit, problem, littles,
                        target_rps, headroom, needed, basis)


def _after_warmup(timeline: pd.DataFrame, measure_start: float | None) -> pd.DataFrame:
    """The timeline from the end of the warm-up: steps that ended before it are dropped, the
    step running when it ended starts there (warm-up requests stay out of the capacity plan)."""
    if measure_start is None:
        return timeline
    timeline = timeline.sort_values("ts", kind="stable").reset_index(drop=True)
    before = timeline[timeline["ts"] <= measure_start]
    after = timeline[timeline["ts"] > measure_start]
    if before.empty:
        return timeline
    current = pd.DataFrame({"ts": [float(measure_start)],
                            "users": [before["users"].iloc[-1]]})
    return pd.concat([current, after], ignore_index=True)


def _capacity(knee: Knee, max_tp: float | None) -> float | None:
    """The throughput this cluster sustains: under the SLO when one is set, else at the knee."""
    if max_tp is not None:
        return max_tp
    return knee.throughput if knee.index is not None else None


def _nodes_needed(run: Run, nodes: int, knee: Knee, max_tp: float | None, target: float,
                  headroom: float, node_runs: Sequence[Run]) -> tuple[int | None, str]:
    sizes = {nodes: _capacity(knee, max_tp)}
    for other in node_runs:
        plan = plan_capacity(other)
        if plan is not None:
            sizes[plan.nodes] = _capacity(plan.knee, plan.max_throughput)
    points = {n: x for n, x in sizes.items() if x}
    if len(points) >= 3:
        fit = fit_usl(np.array(list(points), float), np.array(list(points.values())))
        return nodes_needed(fit, target, headroom), (
            f"USL fit over {len(points)} cluster sizes (σ={fit.sigma:.3f}, κ={fit.kappa:.5f})")
    capacity = points.get(nodes)
    if not capacity:
        return None, "no step met the SLO: this run gives no capacity to scale from"
    per_node = capacity / nodes
    linear = USLFit(per_node, 0.0, 0.0, math.nan, math.inf, math.inf, 1, float(nodes))
    return nodes_needed(linear, target, headroom), (
        f"{capacity:,.0f} req/s on {nodes} node(s) = {per_node:,.0f} req/s per node, assuming "
        "linear scaling (optimistic: step runs with 3 or more cluster sizes give a USL over "
        "nodes)")


def format_plan(plan: CapacityPlan) -> list[str]:
    """The plan as text lines: knee, max sustainable throughput, USL, nodes needed, checks."""
    slo = "not set" if plan.slo_p95_ms is None else f"≤ {plan.slo_p95_ms:g} ms"
    lines = [f"step-load run {plan.run_id}: {len(plan.steps)} steps on {plan.nodes} node(s), "
             f"SLO p95 {slo}"]
    lines += format_knee(plan.knee, plan.max_throughput)
    if plan.fit is not None:
        lines += format_usl(plan.fit, unit="users")
    else:
        lines.append(f"USL fit: not possible ({plan.fit_problem})")
    if plan.target_rps:
        target = f"{plan.target_rps:,.0f} req/s with {plan.headroom:.0%} headroom"
        if plan.nodes_needed is None:
            lines.append(f"nodes needed for {target}: beyond reach ({plan.nodes_basis})")
        else:
            lines.append(f"nodes needed for {target}: {plan.nodes_needed} ({plan.nodes_basis})")
    for law in plan.littles:
        if law.flagged:
            lines.append(f"check: at {law.users:g} users {law.note}")
    return lines
