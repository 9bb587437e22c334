"""A GC-log sweep on the testbed, as the README shows one: `jvm.gc_log=on` with G1, Parallel
and Serial on a small heap, objective `gc_pause_p99_ms`. Each trial's nodes (the testbed's own
JDK 11 JVMs) write their GC log under that collector; eiperf parses it into gc.parquet; the
objective is the run's pause p99; `compare` shows the GC rows; a trial's report shows its GC
section in headless Chromium; the nodes' files come back."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from analysis.gc import load_gc
from analysis.report import build_report
from eicore.gclog import DEFAULT_GC_LOG
from eicore.results import read_run_record
from eicore.sweeps import TrialState, read_trials
from tests.analysis.chromium import render
from tests.analysis.conftest import eiperf_cli

COLLECTORS = ("G1", "Parallel", "Serial")
SPEC = f"""strategy = "grid"
[parameters]
"jvm.gc_log" = ["on"]
"jvm.gc" = [{", ".join(f'"{c}"' for c in COLLECTORS)}]
"jvm.xms" = ["32m"]
"jvm.xmx" = ["48m"]        # a small heap: every collector pauses within seconds
[load]
scenario = {{soap_http = 1}}
users = 8
message_size = "10KB"
duration = "2s"
warmup = "1s"
[objective]
metric = "gc_pause_p99_ms"
direction = "minimize"
"""


def digests(cluster) -> dict[str, str]:
    return {n.name: hashlib.sha256(Path(n.integrator_sh).read_bytes()).hexdigest()
            for n in cluster.nodes}


@pytest.fixture(scope="module")
def sweep(testbed, tmp_path_factory):
    """The sweep, run once; (trial rows by collector, results folder, stdout)."""
    before = digests(testbed)
    tmp = tmp_path_factory.mktemp("gcsweep")
    (tmp / "gc.toml").write_text(SPEC)
    results = tmp / "results"
    r = eiperf_cli("sweep", str(tmp / "gc.toml"), "--cluster", testbed.source,
                   "--out", str(results), timeout=400)
    assert r.returncode == 0, r.stdout[-2500:] + r.stderr[-2500:]
    assert digests(testbed) == before  # every trial's change restored byte for byte
    rows = read_trials(next(results.glob("sweeps/*/trials.parquet")))
    return {row.params["jvm.gc"]: row for row in rows}, results, r.stdout


@pytest.mark.parametrize("collector", COLLECTORS)
def test_each_trial_parses_its_nodes_gc_log(sweep, testbed, collector):
    rows, results, _ = sweep
    row = rows[collector]
    assert row.state is TrialState.COMPLETE, row.error
    run_dir = results / str(row.run_id)
    gc = load_gc(run_dir)
    assert gc is not None and not gc.warnings, gc and gc.warnings
    for node in testbed.nodes:
        facts = gc.nodes[node.name]
        assert facts["log"] == node.path(DEFAULT_GC_LOG)
        assert facts["format"] == "unified" and facts["collector"] == collector, facts
        assert facts["pauses"] >= 1 and 0 < facts["throughput_pct"] <= 100.0
        assert facts["allocation_rate_bytes_s"] > 0
    window = gc.window()
    assert set(window["node"]) == {n.name for n in testbed.nodes}
    assert (window["duration_ms"] > 0).all()
    collections = window[window["kind"].isin(["young", "mixed", "full"])]  # remarks have no cause
    assert len(collections) and collections["cause"].str.len().gt(0).all()
    summary = read_run_record(run_dir).summary
    # the trial's objective is the run's p99 GC pause, over all nodes' pauses in the window
    assert row.objective == pytest.approx(summary["gc_pause_p99_ms"])
    assert 0 < summary["gc_pause_p99_ms"] <= summary["gc_pause_max_ms"]
    assert summary["gc_pause_max_ms"] == pytest.approx(window["duration_ms"].max())
    assert 0 < summary["gc_throughput_pct"] <= 100.0


def test_the_ranking_and_compare_use_the_gc_figures(sweep, tmp_path):
    rows, results, stdout = sweep
    best = min(rows.values(), key=lambda r: r.objective if r.objective is not None else math.inf)
    assert "gc_pause_p99_ms" in stdout and f"jvm.gc={best.params['jvm.gc']}" in stdout
    r = eiperf_cli("compare", str(results / str(rows["G1"].run_id)),
                   str(results / str(rows["Serial"].run_id)), "--results", str(results))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for label in ("GC pause p99", "GC pause max", "GC throughput"):
        assert label in r.stdout, r.stdout


def test_a_trials_report_shows_its_gc_section_in_chromium(sweep, testbed, tmp_path):
    rows, results, _ = sweep
    run_id = str(rows["Parallel"].run_id)
    out = build_report([results / run_id], tmp_path / "report.html")
    rendering = render(out, tmp_path / "chromium", height=5000)
    assert rendering.console_messages() == []
    dom = rendering.dom
    section = dom[dom.index(f'id="run-{run_id}-gc"'):]
    section = section[:section.index("<h3", 10)]
    assert ">Parallel<" in section and "p99 (ms)" in section
    assert all(f">{n.name}<" in section for n in testbed.nodes)
    assert 'alt="GC pauses over time"' in section and "data:image/svg+xml;base64," in section
