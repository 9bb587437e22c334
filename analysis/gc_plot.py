"""The GC pause timeline of a run's report (the figures themselves: ``analysis.gc``)."""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.gc import GcPauses
from analysis.plots import EXCLUDED_COLOR, TITLE_Y, WIDTH
from eicore.gclog import PauseKind

KIND_COLORS = {PauseKind.YOUNG: "#1f77b4", PauseKind.MIXED: "#2ca02c", PauseKind.FULL: "#d62728",
               PauseKind.INITIAL_MARK: "#9467bd", PauseKind.REMARK: "#ff7f0e",
               PauseKind.CLEANUP: "#8c564b", PauseKind.OTHER: "#7f7f7f"}


def pause_timeline(gc: GcPauses, start_ts: float, window: tuple[float, float] | None = None,
                   end_ts: float | None = None) -> Figure:
    """One panel per node: each pause as a stem at the time it started (seconds since
    `start_ts`), its height the pause (ms, log axis when they spread widely), coloured by kind;
    the time outside the measured window shaded."""
    names = sorted(gc.nodes) or ["(none)"]
    height = 0.9 + 1.7 * len(names)
    fig = Figure(figsize=(WIDTH, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.8 / WIDTH, right=1 - 0.3 / WIDTH, bottom=0.55 / height,
                        top=1 - 0.45 / height, hspace=0.45)
    with rc_context({"axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
                     "axes.spines.top": False, "axes.spines.right": False}):
        axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    pauses = gc.pauses[gc.pauses["ts"].notna()]
    elapsed = pauses["ts"].to_numpy(dtype=np.float64) - start_ts
    span = max([1.0, *(elapsed.tolist() or [0.0]),
                (end_ts - start_ts) if end_ts else 0.0])
    durations = pauses["duration_ms"].to_numpy(dtype=np.float64)
    positive = durations[durations > 0]
    log_axis = positive.size > 0 and positive.max() / positive.min() > 30
    for ax, name in zip(axes, names, strict=True):
        mine = (pauses["node"] == name).to_numpy()
        used = []
        for kind in PauseKind:
            sel = mine & (pauses["kind"] == kind.value).to_numpy()
            if not sel.any():
                continue
            x, y = elapsed[sel], durations[sel]
            ax.vlines(x, y.min() * 0.5 if log_axis else 0, y, color=KIND_COLORS[kind], lw=0.8,
                      alpha=0.6)
            ax.plot(x, y, "o", ms=3, color=KIND_COLORS[kind], label=kind.value)
            used.append(kind)
        if window is not None:
            a, b = window[0] - start_ts, window[1] - start_ts
            if a > 0:
                ax.axvspan(0, a, color=EXCLUDED_COLOR, alpha=0.25, lw=0)
            if b < span:
                ax.axvspan(b, span, color=EXCLUDED_COLOR, alpha=0.25, lw=0)
        if log_axis:
            ax.set_yscale("log")
        ax.set_xlim(0, span)
        ax.set_ylabel("pause (ms)")
        facts = gc.nodes.get(name, {})
        ax.set_title(f"{name} ({facts.get('collector') or 'no log read'})", loc="left",
                     fontsize=10, y=TITLE_Y)
        if used:
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.1,
                      fontsize=8, ncols=len(used), frameon=False)  # above: never on a pause
        elif facts.get("warning"):
            ax.text(0.5, 0.5, "GC log not read", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
    axes[-1].set_xlabel("seconds since the run started (grey: outside the measured window)")
    return fig
