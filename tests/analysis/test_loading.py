"""Loading runs and sweeps: schema checks, incomplete runs, the sweep contract, ids."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from analysis.keyfigures import run_figures
from analysis.loading import load, load_run, load_sweep, resolve, users_timeline
from analysis.ranking import (
    best_trial,
    format_ranking,
    order_trend,
    rank_trials,
    snapshot_flags,
    trial_table,
)
from analysis.report import render_report
from eicore.errors import EiperfError
from eicore.results import RunStatus, SchemaError
from tests.analysis.results_fixture import T0, write_run, write_step_run, write_sweep

GOLDEN_V1 = Path(__file__).parent / "golden" / "v1" / "20261130-104617-93ae"
GOLDEN_V2 = Path(__file__).parent / "golden" / "v2" / "20261130-123438-e5b3"


def test_run_loads_with_window_and_categoricals(tmp_path):
    run = load_run(write_run(tmp_path, "r1", n=2000, duration=30.0, warmup=5.0))
    assert run.id == "r1" and not run.incomplete and run.status is RunStatus.COMPLETE
    assert run.window == (T0 + 5.0, T0 + 30.0)
    assert len(run.requests) == 2000
    assert isinstance(run.requests["node"].dtype, pd.CategoricalDtype)
    assert set(run.metrics["node"].astype(str)) >= {"node1", "node2", "generator", "host"}


@pytest.mark.parametrize("version", [0, 4, 99, "1"])
def test_unknown_run_schema_is_refused_in_one_line(tmp_path, version):
    path = write_run(tmp_path, "old", n=100, schema_version=version)
    with pytest.raises(SchemaError) as e:
        load_run(path)
    message = str(e.value)
    assert "\n" not in message and f"{version!r}" in message and "upgrade eiperf" in message


def test_a_schema_1_run_still_loads_with_its_worker_column_missing():
    """A real run written by eiperf before schema 2 (checked in: tests/analysis/golden/v1/)."""
    run = load_run(GOLDEN_V1)
    assert run.record.schema_version == 1 and not run.incomplete
    assert len(run.requests) == run.record.generator["requests"] == 140
    assert "worker" in run.requests.columns and run.requests["worker"].isna().all()
    figures = run_figures(run)
    assert figures.requests.count > 0 and set(figures.requests.nodes) == {"node1", "node2"}
    assert figures.metrics.worker_cpu_percent_mean == {}
    assert figures.metrics.generator_saturated is False  # the schema 1 rule: summed CPU
    assert "<html" in render_report([run]).lower()


def test_a_schema_3_run_loads_its_workers(tmp_path):
    run = load_run(write_run(tmp_path, "r3", n=1000))
    assert run.record.schema_version == 3
    assert set(run.requests["worker"].astype(str)) == {"local-1", "local-2"}


def test_a_schema_2_run_still_loads_without_the_open_model_columns():
    """A real run written by eiperf before schema 3 (checked in: tests/analysis/golden/v2/):
    closed, so its latencies are from the send and it has no intended starts."""
    run = load_run(GOLDEN_V2)
    assert run.record.schema_version == 2 and not run.incomplete
    assert len(run.requests) == run.record.generator["requests"] == 370
    assert set(run.requests["worker"].astype(str)) == {"local-1"}
    assert "intended_ts" not in run.requests.columns or run.requests["intended_ts"].isna().all()
    figures = run_figures(run)
    assert figures.requests.count > 0 and set(figures.requests.nodes) == {"node1", "node2"}
    assert "<html" in render_report([run]).lower()


def test_unknown_sweep_schema_is_refused(tmp_path):
    with pytest.raises(SchemaError, match="sweep schema version 7 is unknown"):
        load_sweep(write_sweep(tmp_path, schema_version=7))


def test_incomplete_run_loads_but_is_flagged(tmp_path):
    path = write_run(tmp_path, "cut", n=1000, duration=20.0, status=RunStatus.INCOMPLETE)
    (path / "metrics.parquet").unlink()
    run = load_run(path)
    assert run.incomplete and len(run.requests) == 1000 and run.metrics.empty
    assert any("interrupted" in p for p in run.problems)
    assert any("metrics.parquet is missing" in p for p in run.problems)
    # no measure_end: the window ends just after the last request
    assert run.window[1] > run.requests["ts"].max()


def test_sweep_contract_ranking_and_best(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, repetitions=2))
    assert sweep.params == ("jvm.xmx", "nginx.proxy_read_timeout")
    assert (sweep.state, sweep.direction, sweep.objective) == ("complete", "maximize",
                                                                 "throughput_rps")
    assert len(sweep.trials) == 18 and len(trial_table(sweep)) == 9
    ranked = rank_trials(sweep)
    assert ranked["rank"].notna().sum() == 7  # running and failed trials are not ranked
    objectives = ranked.loc[ranked["rank"].notna() & ranked["slo_ok"], "objective"].tolist()
    assert objectives == sorted(objectives, reverse=True)
    best = best_trial(sweep)
    assert int(best["trial"]) == sweep.info["best"]["trial"] == 6
    assert best["objective"] == pytest.approx(1301.5)  # mean of its two repetitions
    lines = format_ranking(sweep)
    assert ("eiperf tune apply --set jvm.xmx=2g --set nginx.proxy_read_timeout=30s"
            in lines[1])
    assert any("Unrecognized VM option" in line for line in lines)


def test_a_running_sweep_no_process_holds_is_shown_as_interrupted(tmp_path):
    folder = write_sweep(tmp_path / "results", "killed", status="running")
    sweep = load_sweep(folder)
    assert (sweep.state, sweep.interrupted, sweep.incomplete) == ("incomplete", True, True)
    html = render_report([sweep])
    assert "the sweep was interrupted" in html and "eiperf sweep --resume killed" in html
    # While a process holds its lock (as `eiperf sweep` does), it is running.
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        sweep = load_sweep(folder)
        assert (sweep.state, sweep.interrupted) == ("running", False)
        assert "the sweep was interrupted" not in render_report([sweep])
    finally:
        os.close(fd)
    assert load_sweep(folder).state == "incomplete"  # lock released: the process is gone


def test_minimizing_sweep_ranks_the_other_way(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, direction="minimize"))
    # 512m/30s has the lowest objective but misses the SLO: 512m/5m is best
    assert int(best_trial(sweep)["trial"]) == sweep.info["best"]["trial"] == 2


def test_ids_resolve_under_the_results_folder(tmp_path, monkeypatch):
    write_run(tmp_path, "r1", n=100)
    write_sweep(tmp_path, "sw1")
    assert resolve("r1", tmp_path) == ("run", tmp_path / "r1")
    assert resolve("sw1", tmp_path) == ("sweep", tmp_path / "sweeps" / "sw1")
    monkeypatch.setenv("EIPERF_RESULTS", str(tmp_path))
    assert load("r1").id == "r1"
    with pytest.raises(EiperfError, match="no run or sweep with that id"):
        resolve("nope", tmp_path)
    (tmp_path / "plain").mkdir()
    with pytest.raises(EiperfError, match="not an eiperf run folder"):
        resolve(tmp_path / "plain")


def test_step_timeline_comes_from_the_shape_the_locustfile_recorded(tmp_path):
    path = write_run(tmp_path, "step", n=500, duration=12.0, warmup=0.0)
    (path / "metrics.parquet").unlink()
    start = T0 + 0.4
    (path / "timeline.json").write_text(json.dumps({
        "test_start": start, "test_stop": start + 12.0, "warmup": 0.0,
        "users": [[start + 0.5, 2], [start + 2.6, 4]],
        "shape": {"shape": "step", "duration": 12.0, "step_users": 2, "step_time": 4.0,
                  "max_users": 5, "spawn_rate": 50.0}}))
    timeline = users_timeline(load_run(path))
    assert timeline["ts"].tolist() == [start, start + 4.0, start + 8.0]
    assert timeline["users"].tolist() == [2.0, 4.0, 5.0]


def test_objective_following_the_run_order_is_flagged(tmp_path):
    in_grid_order = load_sweep(write_sweep(tmp_path, "ordered"))
    trend = order_trend(in_grid_order)
    assert trend is not None and "rose with the order the trials ran in" in trend
    assert f"check: {trend}" in format_ranking(in_grid_order)
    # the same results run in a shuffled order: no trend
    shuffled = load_sweep(write_sweep(tmp_path, "shuffled", run_order=[6, 2, 4, 0, 5, 3, 1, 7, 8]))
    assert order_trend(shuffled) is None


def test_runs_differing_beyond_the_swept_parameters_are_flagged(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, "flagged", with_runs=True))
    flags = snapshot_flags(sweep)
    # trial 3's run had node2's worker pool changed by hand; the heap and timeout differences
    # (and the JVM command line they change) are what was swept
    assert flags == {"flagged-t3r0": ["nodes.node2.passthru.worker_pool_size_core"]}


def test_little_s_law_flags_a_run_whose_generator_set_the_pace(tmp_path):
    # 20 users, ~330 req/s at ~2.3 ms: X·R accounts for under one user of the twenty
    figures = run_figures(load_run(write_run(tmp_path, "slow-generator", n=20_000)))
    note = next(w for w in figures.warnings if w.startswith("Little's law"))
    assert "of 20 users are accounted for" in note and "the generator" in note
    # a step run is judged per step by the capacity plan, not as a whole
    step = run_figures(load_run(write_step_run(tmp_path)))
    assert not any(w.startswith("Little's law") for w in step.warnings)
