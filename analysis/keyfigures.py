"""Key figures of runs side by side: throughput, error %, p50/p95/p99, each run against the
first (the baseline) with the ratio, its bootstrap interval and a verdict.

The statistics are ``analysis.summary`` and ``analysis.compare``; this module assembles them
into rows and notes that the CLI, the HTML report and the notebooks all render (STYLE 9: format
returns rows and lines, printing happens at the edge).

- Values are the run summaries' (measured window; latency over successful requests).
- Ratios are B/A from ``compare_runs`` for median (p50), p95 and throughput (ok requests per
  whole second), with their bootstrap intervals and verdicts (faster / slower / within noise /
  unknown). Runs given together that repeat one configuration (same cluster snapshot and load)
  measure the run-to-run noise; a difference below it is "within noise". p99 has no interval in ``analysis.compare``: it shows the ratio of the two values
  and no verdict. The error rate shows the difference in percentage points.
- GC figures (pause p99 and max, GC throughput) come from the runs' summaries when their nodes
  logged GC (``analysis.gc``); like p99 they show the ratio only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.compare import (
    Comparison,
    Verdict,
    compare_runs,
    format_comparison,
    noise_estimate,
    snapshot_diff,
)
from analysis.loading import Run
from analysis.planning import run_littles_law
from analysis.summary import (
    MetricsSummary,
    RequestSummary,
    check_summary,
    summarize_metrics,
    summarize_requests,
)
from analysis.window import ok_latency_ms

NO_VERDICT = "—"
#: Runs of one configuration needed to measure run-to-run noise: with two, the noise would be
#: just the difference between the very runs being compared.
MIN_REPETITIONS = 3


@dataclass(frozen=True)
class RunFigures:
    """One run with its request and metrics summaries and its warnings."""

    run: Run
    requests: RequestSummary
    metrics: MetricsSummary
    warnings: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.run.id


def run_figures(run: Run) -> RunFigures:
    """Summaries over the measured window, and every warning about them (problems first; a
    steady run whose users Little's law does not account for: the generator set the pace)."""
    requests = summarize_requests(run.requests, run.window)
    metrics = summarize_metrics(run.metrics, run.window, processes=run.processes)
    warnings = [*run.problems, *check_summary(requests, metrics)]
    law = run_littles_law(run, requests)
    if law is not None and law.generator_bound:
        warnings.append(f"Little's law: {law.note}")
    return RunFigures(run, requests, metrics, tuple(warnings))


@dataclass(frozen=True)
class FigureRow:
    """One figure of one run: its value and, for all but the baseline, the comparison."""

    figure: str
    unit: str
    run_id: str
    value: float
    ratio: float | None
    low: float | None
    high: float | None
    verdict: str
    reason: str = ""


@dataclass(frozen=True)
class KeyFigures:
    """Rows (figure-major: every run's throughput, then every run's error %...) and notes."""

    runs: tuple[str, ...]
    rows: tuple[FigureRow, ...]
    comparisons: dict[str, Comparison]
    diffs: dict[str, list[str]]
    notes: tuple[str, ...]
    noise: Noise | None = None


FIGURES = (("throughput", "req/s"), ("error rate", "%"), ("p50", "ms"), ("p95", "ms"),
           ("p99", "ms"))
_ESTIMATE = {"throughput": "throughput", "p50": "median", "p95": "p95"}
#: figures from the runs' GC logs (run.json summary, `jvm.gc_log=on`): shown when a run has one
GC_FIGURES = (("GC pause p99", "ms", "gc_pause_p99_ms"), ("GC pause max", "ms", "gc_pause_max_ms"),
              ("GC throughput", "%", "gc_throughput_pct"))


def _value(figures: RunFigures, figure: str) -> float:
    s = figures.requests
    return {
        "throughput": s.ok_throughput_rps,
        "error rate": s.error_rate * 100.0 if s.count else math.nan,
        "p50": s.p50_ms,
        "p95": s.p95_ms,
        "p99": s.p99_ms,
    }[figure]


def configuration_key(run: Run) -> str:
    """What makes two runs repetitions of one configuration: the same cluster snapshot and the
    same load profile (labels aside), as canonical JSON."""
    load = run.record.load or {}
    # an automatic warm-up's length is what the run measured, not what it was asked for
    outcome = ("labels", "warmup", "warmup_stable") if load.get("warmup_auto") else ("labels",)
    load = {k: v for k, v in load.items() if k not in outcome}
    return json.dumps({"cluster": run.record.cluster or {}, "load": load}, sort_keys=True,
                      default=str)


@dataclass(frozen=True)
class Noise:
    """Run-to-run noise (relative spread, ``analysis.compare.noise_estimate``) of the median,
    p95 and throughput, and the repetitions it was measured on (empty when given by hand)."""

    median: float | None
    p95: float | None
    throughput: float | None
    runs: tuple[str, ...] = ()


def repetition_noise(runs: Sequence[RunFigures]) -> Noise | None:
    """Noise measured on the runs given that repeat one configuration (``configuration_key``):
    for each group of ``MIN_REPETITIONS`` runs or more the spread of their median, p95 and throughput; the
    largest over the groups. None when no configuration was repeated."""
    groups: dict[str, list[RunFigures]] = {}
    for figures in runs:
        groups.setdefault(configuration_key(figures.run), []).append(figures)
    repeated = [g for g in groups.values() if len(g) >= MIN_REPETITIONS]
    if not repeated:
        return None
    medians, p95s, throughputs, ids = [], [], [], []
    for group in repeated:
        samples = [ok_latency_ms(f.run.requests, f.run.window) for f in group]
        medians.append(noise_estimate(samples, "median"))
        p95s.append(noise_estimate(samples, "p95"))
        throughputs.append(noise_estimate([[f.requests.ok_throughput_rps] for f in group],
                                          "mean"))
        ids += [f.id for f in group]

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    return Noise(worst(medians), worst(p95s), worst(throughputs), tuple(ids))


def key_figures(runs: Sequence[RunFigures], *, noise: float | None = None,
                throughput_noise: float | None = None, n_boot: int = 2000,
                seed: int = 0) -> KeyFigures:
    """Compare every run with the first.

    ``noise`` is the run-to-run spread of the latency figures, ``throughput_noise`` that of
    throughput (``analysis.compare.noise_estimate``). When ``noise`` is not given and some of the
    runs repeat one configuration, the noise is measured on those repetitions
    (``repetition_noise``) and said in the notes; a difference below it is "within noise"."""
    if not runs:
        raise ValueError("key_figures needs at least one run")
    base = runs[0]
    measured = repetition_noise(runs) if noise is None else None
    if noise is not None:
        used = Noise(noise, noise, throughput_noise)
    elif measured is not None:
        used = Noise(measured.median, measured.p95,
                     throughput_noise if throughput_noise is not None else measured.throughput,
                     measured.runs)
    else:
        used = Noise(None, None, throughput_noise)
    comparisons: dict[str, Comparison] = {}
    diffs: dict[str, list[str]] = {}
    notes: list[str] = []
    for other in runs[1:]:
        comparisons[other.id] = compare_runs(
            base.run.requests, other.run.requests, base.run.window, other.run.window,
            noise=used.median, p95_noise=used.p95, throughput_noise=used.throughput,
            n_boot=n_boot, seed=seed)
        diffs[other.id] = snapshot_diff(base.run.record.cluster, other.run.record.cluster, ())
    rows = []
    for figure, unit in FIGURES:
        a = _value(base, figure)
        rows.append(FigureRow(figure, unit, base.id, a, None, None, None, "baseline"))
        for other in runs[1:]:
            b = _value(other, figure)
            plain_ratio = b / a if a > 0 and math.isfinite(b) else None
            estimate = comparisons[other.id].estimate(_ESTIMATE.get(figure, ""))
            if estimate is not None:
                ratio = estimate.ratio if math.isfinite(estimate.ratio) else plain_ratio
                rows.append(FigureRow(figure, unit, other.id, b, ratio, estimate.low,
                                      estimate.high, estimate.verdict.value, estimate.reason))
            elif figure == "error rate":
                rows.append(FigureRow(figure, unit, other.id, b, None, None, None, NO_VERDICT,
                                      f"{b - a:+.2f} percentage points"))
            else:
                rows.append(FigureRow(figure, unit, other.id, b, plain_ratio, None, None,
                                      NO_VERDICT, "ratio only: no interval is computed for p99"))
    rows += _gc_rows(runs)
    unknown_reasons = dict.fromkeys(
        f"{e.statistic} {Verdict.UNKNOWN.value} for {other_id}: {e.reason}"
        for other_id, c in comparisons.items() for e in c.estimates
        if e.verdict is Verdict.UNKNOWN)
    notes.extend(unknown_reasons)
    for other in runs[1:]:
        comparison = comparisons[other.id]
        if comparison.test_n is not None:
            notes.append(f"{other.id}: {format_comparison(comparison, base.id, other.id)[-1]}")
        if diffs[other.id]:
            shown = ", ".join(diffs[other.id][:6]) + (" ..." if len(diffs[other.id]) > 6 else "")
            notes.append(f"configuration of {other.id} differs from {base.id} in "
                         f"{len(diffs[other.id])} setting(s): {shown}")
    decided = any(c.verdict in (Verdict.FASTER, Verdict.SLOWER) for c in comparisons.values())
    if used.runs:
        notes.append(
            f"run-to-run noise measured on {len(used.runs)} runs repeating one configuration "
            f"({', '.join(used.runs)}): median {_share(used.median)}, p95 {_share(used.p95)}, "
            f"throughput {_share(used.throughput)}; smaller differences are within noise")
    elif noise is not None:
        notes.append(f"run-to-run noise taken as {noise:.1%} of the latency figures"
                     + (f", {throughput_noise:.1%} of throughput" if throughput_noise else ""))
    elif decided:
        notes.append(
            "no run-to-run noise estimate: requests within one run are not independent, so a "
            "'faster'/'slower' may be run-to-run variation; repeat a configuration (3 runs or "
            "more, given together here) or pass the noise (--noise) to tell a real difference "
            "from it")
    if comparisons:
        any_c = next(iter(comparisons.values()))
        notes.append(f"intervals: {any_c.estimates[0].confidence:.0%} bootstrap, "
                     f"{any_c.n_boot:,} resamples (seed {any_c.seed}); ratios are run / {base.id}")
    for figures in runs:
        notes.extend(f"{figures.id}: {w}" for w in figures.warnings)
    return KeyFigures(tuple(r.id for r in runs), tuple(rows), comparisons, diffs, tuple(notes),
                      used)


def _gc_rows(runs: Sequence[RunFigures]) -> list[FigureRow]:
    """The GC figures of runs whose summaries have them (ratio to the first, no interval)."""
    rows = []
    for figure, unit, key in GC_FIGURES:
        values = [(f.run.record.summary or {}).get(key) for f in runs]
        values = [math.nan if v is None else float(v) for v in values]
        if all(math.isnan(v) for v in values):
            continue
        a = values[0]
        rows.append(FigureRow(figure, unit, runs[0].id, a, None, None, None, "baseline"))
        for other, b in zip(runs[1:], values[1:], strict=True):
            ratio = b / a if a > 0 and math.isfinite(b) else None
            rows.append(FigureRow(figure, unit, other.id, b, ratio, None, None, NO_VERDICT,
                                  "ratio only: from the GC logs, no interval"))
    return rows


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1%}"


def _num(value: float | None, fmt: str = ",.2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def key_figure_table(figures: KeyFigures) -> tuple[list[str], list[list[str]]]:
    """Header and string cells: figure, run, value, ratio to the baseline, interval, verdict."""
    header = ["figure", "run", "value", "vs first", "95 % interval", "verdict"]
    rows = []
    for row in figures.rows:
        value = f"{_num(row.value)} {row.unit}"
        if row.verdict == "baseline":
            ratio, interval = "", ""
        elif row.figure == "error rate":
            ratio, interval = f"{row.value - _baseline(figures, row.figure):+.2f} pt", ""
        else:
            ratio = f"×{_num(row.ratio, '.3f')}" if row.ratio is not None else "n/a"
            interval = (f"{_num(row.low, '.3f')}–{_num(row.high, '.3f')}"
                        if row.low is not None and math.isfinite(row.low) else "")
        rows.append([row.figure, row.run_id, value, ratio, interval, row.verdict])
    return header, rows


def _baseline(figures: KeyFigures, figure: str) -> float:
    return next(r.value for r in figures.rows if r.figure == figure and r.verdict == "baseline")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain fixed-width table as lines (numbers right-aligned)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            text = str(cell)
            numeric = text[:1].isdigit() or text[:1] in "×+-"
            out.append(text.rjust(width) if numeric else text.ljust(width))
        return "  ".join(out).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_key_figures(figures: KeyFigures) -> list[str]:
    """The key figures as a plain table followed by the notes."""
    header, rows = key_figure_table(figures)
    return [*format_table(header, rows), *(f"note: {n}" for n in figures.notes)]
