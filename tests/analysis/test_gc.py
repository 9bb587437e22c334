"""analysis.gc on run folders with a gc.parquet: the run's GC figures (pooled nearest-rank
pause percentiles in the window, mean GC throughput), the per-node table, the summary run.json
records, `compare`'s GC rows, and the report's GC section as headless Chromium renders it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.gc import SUMMARY_KEYS, format_gc, gc_summary, load_gc, node_table
from analysis.gc_plot import pause_timeline
from analysis.keyfigures import format_key_figures, key_figure_table, key_figures, run_figures
from analysis.loading import load
from analysis.quantiles import nearest_rank
from analysis.record import record_figures
from analysis.report import write_report
from eicore.gclog import (
    GC_FILE,
    GcLog,
    LogFormat,
    NodeGc,
    Pause,
    PauseKind,
    node_rates,
    pause_rows,
    write_gc_file,
)
from eicore.results import RUN_JSON, read_run_record
from tests.analysis.chromium import render
from tests.analysis.results_fixture import T0, write_run

WARMUP, DURATION = 10.0, 60.0


def pauses(seed: int, n: int, full_ms: float) -> list[Pause]:
    """n young pauses spread over the run (some in the warm-up), and one full pause."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(T0, T0 + DURATION, n))
    out = [Pause(float(t), float(t - T0 + 30), i, PauseKind.YOUNG, "G1 Evacuation Pause",
                 float(rng.lognormal(1.5, 0.5)), 200 << 20, 40 << 20, 512 << 20, 1 << 20)
           for i, t in enumerate(ts)]
    out.append(Pause(T0 + 40.0, 70.0, n, PauseKind.FULL, "System.gc()", full_ms, 300 << 20,
                     90 << 20, 512 << 20))
    return sorted(out, key=lambda p: p.ts)  # type: ignore[arg-type, return-value]


def write_gc(run_dir, *, broken_node2: bool = False) -> dict[str, list[Pause]]:
    start, end = T0 + WARMUP, T0 + DURATION
    by_node = {"node1": pauses(1, 120, 250.0), "node2": pauses(2, 90, 40.0)}
    rows, facts = [], {}
    for name, ps in by_node.items():
        if name == "node2" and broken_node2:
            facts[name] = NodeGc(log="/ei/repository/logs/gc.log",
                                 warning="node2: GC log not read (connection refused)")
            continue
        log = GcLog(LogFormat.UNIFIED, "G1", tuple(ps))
        rows += pause_rows(name, log, ps, start, end)
        rates = node_rates(ps, start, end)
        facts[name] = NodeGc(log="/ei/repository/logs/gc.log", format="unified",
                             collector="G1", pauses=len(ps), **rates)
    write_gc_file(run_dir / GC_FILE, rows, facts)
    return by_node


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def in_window(ps: list[Pause]) -> np.ndarray:
    return np.array([p.duration_ms for p in ps if T0 + WARMUP <= p.ts < T0 + DURATION])  # type: ignore[operator]


def test_run_figures_pool_the_window_pauses(results):
    run_dir = write_run(results, "gc-run", n=2000)
    by_node = write_gc(run_dir)
    gc = load_gc(run_dir)
    assert gc is not None and not gc.warnings
    pooled = np.concatenate([in_window(ps) for ps in by_node.values()])
    figures = gc_summary(gc)
    assert figures["gc_pause_p99_ms"] == pytest.approx(nearest_rank(pooled, [99.0])[0])
    assert figures["gc_pause_max_ms"] == 250.0  # node1's full pause, inside the window
    rates = [node_rates(ps, T0 + WARMUP, T0 + DURATION)["throughput_pct"]
             for ps in by_node.values()]
    assert figures["gc_throughput_pct"] == pytest.approx(np.mean(rates))
    assert 95.0 < figures["gc_throughput_pct"] < 100.0
    header, rows = node_table(gc)
    assert [r[0] for r in rows] == ["node1", "node2"]
    assert rows[0][2] == f"{len(in_window(by_node['node1'])):,}"
    p99 = header.index("p99 (ms)")
    assert float(rows[1][p99]) == pytest.approx(nearest_rank(in_window(by_node["node2"]),
                                                             [99.0])[0], abs=0.005)
    assert "full 1" in rows[0][-1] and rows[0][1] == "G1"
    assert format_gc(gc)[0].startswith("GC pauses in the window: node1 (G1):")


def test_no_gc_log_no_figures(results):
    run_dir = write_run(results, "plain", n=2000)
    assert load_gc(run_dir) is None
    assert gc_summary(None) == dict.fromkeys(SUMMARY_KEYS)
    record, _ = record_figures(run_dir, read_run_record(run_dir), [])
    assert all(record.summary[k] is None for k in SUMMARY_KEYS)  # type: ignore[literal-required]


def test_record_figures_write_the_gc_summary(results):
    run_dir = write_run(results, "gc-run", n=2000)
    write_gc(run_dir)
    record, lines = record_figures(run_dir, read_run_record(run_dir), [])
    assert {k: record.summary[k] for k in SUMMARY_KEYS} == gc_summary(load_gc(run_dir))  # type: ignore[literal-required]
    assert any(line.startswith("GC pauses in the window: node2") for line in lines)


def test_an_unreadable_node_is_a_note_not_a_figure(results):
    run_dir = write_run(results, "half", n=2000)
    by_node = write_gc(run_dir, broken_node2=True)
    gc = load_gc(run_dir)
    assert gc is not None and gc.warnings == ["node2: GC log not read (connection refused)"]
    figures = gc_summary(gc)
    assert figures["gc_pause_p99_ms"] == pytest.approx(
        nearest_rank(in_window(by_node["node1"]), [99.0])[0])
    fig = pause_timeline(gc, T0, (T0 + WARMUP, T0 + DURATION), T0 + DURATION)
    assert len(fig.axes) == 2
    assert any(t.get_text() == "GC log not read" for t in fig.axes[1].texts)


def set_summary(run_dir, **values) -> None:
    data = json.loads((run_dir / RUN_JSON).read_text())
    data["summary"] = {**(data.get("summary") or {}), **values}
    (run_dir / RUN_JSON).write_text(json.dumps(data))


def test_compare_shows_gc_rows_only_when_present(results):
    a = write_run(results, "run-a", n=3000, seed=1)
    b = write_run(results, "run-b", n=3000, seed=2)
    plain = key_figures([run_figures(load(a)), run_figures(load(b))], n_boot=200)
    assert not any(r.figure.startswith("GC") for r in plain.rows)
    set_summary(a, gc_pause_p99_ms=10.0, gc_pause_max_ms=40.0, gc_throughput_pct=99.0)
    set_summary(b, gc_pause_p99_ms=5.0, gc_pause_max_ms=80.0, gc_throughput_pct=99.5)
    figures = key_figures([run_figures(load(a)), run_figures(load(b))], n_boot=200)
    header, rows = key_figure_table(figures)
    gc_rows = {(r[0], r[1]): r for r in rows if r[0].startswith("GC")}
    assert gc_rows[("GC pause p99", "run-b")][2:4] == ["5.00 ms", "×0.500"]
    assert gc_rows[("GC pause max", "run-b")][3] == "×2.000"
    assert gc_rows[("GC throughput", "run-a")][2] == "99.00 %"
    assert any(line.startswith("GC pause p99") for line in format_key_figures(figures))


def test_report_has_a_gc_section_in_chromium(results, tmp_path):
    run_dir = write_run(results, "gc-run", n=3000)
    write_gc(run_dir, broken_node2=True)
    plain = write_run(results, "plain", n=3000, seed=3)
    out = write_report([run_dir, plain], tmp_path / "report.html")
    html = out.read_text()
    assert html.count(">GC pauses</h3>") == 1  # the run without gc.parquet has none
    assert 'id="run-gc-run-gc"' in html and "node2: GC log not read" in html
    rendering = render(out, tmp_path / "chromium", height=2500)
    assert rendering.console_messages() == []
    section = rendering.dom[rendering.dom.index('id="run-gc-run-gc"'):]
    assert 'alt="GC pauses over time"' in section
