"""GC pauses of a run: gc.parquet loaded, the run's GC figures and per-node tables (the pause
timeline is drawn by ``analysis.gc_plot``: `eiperf run` records the figures without matplotlib).

gc.parquet (``eicore.gclog``) holds every pause the nodes' GC logs recorded during the run, each
marked when it falls in the measured window, and per node the rates the collector worked out.
The run's figures are over the window: pause percentiles (nearest rank) of all nodes' pauses
pooled, and the GC throughput as the mean of the nodes' (the share of the window's wall time
not paused, each node counting once). A run without gc.parquet has no GC figures (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.quantiles import nearest_rank
from eicore.gclog import GC_FILE, read_gc_file
from eicore.results import SchemaError

#: the pause percentiles the report's table shows
PERCENTILES = (50.0, 90.0, 99.0)
#: the run summary's GC keys (eicore.results.RunSummary)
SUMMARY_KEYS = ("gc_pause_p99_ms", "gc_pause_max_ms", "gc_throughput_pct")


@dataclass(frozen=True)
class GcPauses:
    """A run's gc.parquet: one row per pause (``eicore.gclog.gc_schema``) and per node what the
    collector recorded (log, format, collector, rates, warning)."""

    pauses: pd.DataFrame
    nodes: dict[str, dict[str, Any]]

    def window(self) -> pd.DataFrame:
        """The pauses inside the measured window."""
        return self.pauses[self.pauses["in_window"].fillna(False).astype(bool)]

    @property
    def warnings(self) -> list[str]:
        return [str(f["warning"]) for f in self.nodes.values() if f.get("warning")]


def load_gc(run_dir: str | Path) -> GcPauses | None:
    """gc.parquet of a run folder; None when the run has none (no node logged GC to a file)."""
    path = Path(run_dir) / GC_FILE
    if not path.exists():
        return None
    try:
        table, nodes = read_gc_file(path)
    except (OSError, ValueError) as e:
        raise SchemaError(f"{path}: not a readable GC pause file ({e})") from None
    return GcPauses(table.to_pandas(), nodes)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def gc_summary(gc: GcPauses | None) -> dict[str, float | None]:
    """The run summary's GC figures (SUMMARY_KEYS): p99 and max pause (ms) of all nodes'
    pauses in the window (0 when the logs were read and had none), and the nodes' mean GC
    throughput (%); None without a GC log."""
    out: dict[str, float | None] = dict.fromkeys(SUMMARY_KEYS)
    if gc is None:
        return out
    durations = gc.window()["duration_ms"].to_numpy(dtype=np.float64)
    read = [f for f in gc.nodes.values() if f.get("log") and not f.get("warning")]
    if durations.size:
        out["gc_pause_p99_ms"] = _clean(float(nearest_rank(durations, [99.0])[0]))
        out["gc_pause_max_ms"] = _clean(float(durations.max()))
    elif read:
        out["gc_pause_p99_ms"] = out["gc_pause_max_ms"] = 0.0  # logs read, no pause in window
    throughputs = [f["throughput_pct"] for f in read if f.get("throughput_pct") is not None]
    if throughputs:
        out["gc_throughput_pct"] = _clean(float(np.mean(throughputs)))
    return out


def _fmt(value: Any, spec: str = ",.2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f}"


NODE_HEADER = ["node", "collector", "pauses", *(f"p{p:g} (ms)" for p in PERCENTILES),
               "max (ms)", "paused (ms)", "GC throughput", "allocation (MiB/s)",
               "promotion (MiB/s)", "by kind"]


def node_table(gc: GcPauses) -> tuple[list[str], list[list[str]]]:
    """Per node, over the measured window: its pauses, their percentiles, max and sum, its GC
    throughput, allocation and promotion rates, and its pauses by kind."""
    window = gc.window()
    rows = []
    for name in sorted(gc.nodes):
        facts = gc.nodes[name]
        mine = window[window["node"] == name]
        durations = mine["duration_ms"].to_numpy(dtype=np.float64)
        pct = nearest_rank(durations, PERCENTILES) if durations.size else [math.nan] * 3
        kinds = mine["kind"].value_counts()
        tp = facts.get("throughput_pct")
        rows.append([
            name, str(facts.get("collector") or "n/a"), f"{len(mine):,}",
            *(_fmt(float(v)) for v in pct),
            _fmt(float(durations.max()) if durations.size else None),
            _fmt(float(durations.sum())),
            "n/a" if tp is None else f"{tp:.2f} %",
            _rate(facts.get("allocation_rate_bytes_s")),
            _rate(facts.get("promotion_rate_bytes_s")),
            ", ".join(f"{k} {n}" for k, n in kinds.items()) or "none",
        ])
    return NODE_HEADER, rows


def format_gc(gc: GcPauses) -> list[str]:
    """The GC figures as text lines (per node; warnings last)."""
    header, rows = node_table(gc)
    lines = [f"GC pauses in the window: {r[0]} ({r[1]}): {r[2]} pauses, p99 {r[5]} ms, max "
             f"{r[6]} ms, throughput {r[8]}" for r in rows]
    return lines + [f"warning: {w}" for w in gc.warnings]


def gc_notes(gc: GcPauses) -> list[str]:
    """What a reader should know about the figures: warnings, cut-off entries."""
    notes = list(gc.warnings)
    for name, facts in sorted(gc.nodes.items()):
        if facts.get("skipped"):
            notes.append(f"{name}: {facts['skipped']} GC log entries could not be read "
                         "(cut off or interleaved) and are not counted")
    return notes
