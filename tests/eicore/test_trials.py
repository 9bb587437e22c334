"""One sweep truth: the engine, `eiperf sweep`, `eiperf report` and the notebooks fold, rank and
name the best trial with `eicore.trials`; a trial with mixed repetitions is `partial`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analysis.loading import load_sweep
from analysis.ranking import best_trial, format_ranking, rank_trials
from eicore.sweeps import (
    SWEEP_JSON,
    SWEEP_SCHEMA_VERSION,
    TRIALS_FILE,
    TrialRow,
    TrialState,
    read_trials,
    write_trials,
)
from eicore.trials import aggregate, best_of, ranked, tune_apply_command

C, F, R = TrialState.COMPLETE, TrialState.FAILED, TrialState.RUNNING


def row(trial: int, rep: int, state: TrialState, objective: float | None = None,
        slo_ok: bool | None = True, xmx: str = "1g", error: str | None = None) -> TrialRow:
    return TrialRow(trial, rep, state, {"jvm.xmx": xmx}, run_id=f"run-{trial}-{rep}",
                    objective=objective if state is C else None,
                    slo_ok=slo_ok if state is C else None, error=error, started=100.0 + trial)


#: trial 0 is the fastest on its one good repetition but its second failed (partial);
#: trial 1 completed both (the best); trial 2 missed the SLO; trial 3 failed; trial 4 runs.
MIXED = [
    row(0, 0, C, 2000.0, xmx="2g"),
    row(0, 1, F, xmx="2g", error="Unrecognized VM option 'UseParNewGC'"),
    row(1, 0, C, 1500.0, xmx="1g"), row(1, 1, C, 1400.0, xmx="1g"),
    row(2, 0, C, 1900.0, slo_ok=False, xmx="512m"), row(2, 1, C, 1950.0, xmx="512m"),
    row(3, 0, F, xmx="4g", error="node did not start"),
    row(4, 0, R, xmx="3g"),
]


def test_aggregate_folds_repetitions_into_one_state():
    by_trial = {t.trial: t for t in aggregate(MIXED)}
    assert [by_trial[i].state for i in range(5)] == [TrialState.PARTIAL, C, C, F, R]
    assert by_trial[0].objective == 2000.0 and by_trial[0].slo_ok is True
    assert by_trial[0].error == "Unrecognized VM option 'UseParNewGC'"
    assert by_trial[0].run_id == "run-0-0" and by_trial[0].repetitions == 2
    assert by_trial[1].objective == pytest.approx(1450.0)
    assert by_trial[2].slo_ok is False  # one repetition missed the SLO: the trial missed it
    assert by_trial[3].objective is None and by_trial[4].objective is None


@pytest.mark.parametrize("direction, order", [
    ("maximize", [1, 2, 0, 3, 4]),   # met SLO, missed SLO, partial, then unranked
    ("minimize", [1, 2, 0, 3, 4]),
])
def test_ranking_puts_partial_after_complete_and_never_best(direction, order):
    results = aggregate(MIXED)
    assert [t.trial for t in ranked(results, direction)] == order
    assert best_of(results, direction).trial == 1


def test_no_best_when_no_complete_trial_met_the_slo():
    results = aggregate([row(0, 0, C, 10.0, slo_ok=False), row(1, 0, F), row(2, 0, C, 5.0),
                         row(2, 1, F)])
    assert best_of(results, "maximize") is None
    with pytest.raises(ValueError, match="neither maximize nor minimize"):
        ranked(results, "upward")


def write_sweep_folder(results, rows, direction="maximize"):
    folder = results / "sweeps" / "sweep-mixed"
    folder.mkdir(parents=True)
    write_trials(folder / TRIALS_FILE, rows, ["jvm.xmx"])
    best = best_of(aggregate(rows), direction)  # what the engine writes after every trial
    info = {"schema_version": SWEEP_SCHEMA_VERSION, "kind": "sweep", "id": folder.name,
            "status": "complete", "strategy": "grid", "parameters": ["jvm.xmx"],
            "objective": {"metric": "throughput_rps", "direction": direction},
            "slo": ["p95<200ms"], "cluster": "/nonexistent/cluster.toml",
            "best": {"trial": best.trial, "params": best.params, "objective": best.objective,
                     "run_ids": best.run_ids}}
    (folder / SWEEP_JSON).write_text(json.dumps(info))
    return folder


def test_sweep_and_report_name_the_same_best_on_mixed_repetitions(tmp_path):
    folder = write_sweep_folder(tmp_path, MIXED)
    engine_best = best_of(aggregate(read_trials(folder / TRIALS_FILE)), "maximize")
    sweep = load_sweep(folder)
    assert int(best_trial(sweep)["trial"]) == engine_best.trial == sweep.info["best"]["trial"] == 1
    table = rank_trials(sweep)
    partial = table[table["trial"] == 0].iloc[0]
    assert partial["state"] == "partial" and int(partial["rank"]) == 3
    assert table[table["trial"].isin([3, 4])]["rank"].isna().all()
    lines = format_ranking(sweep, top=None)
    assert tune_apply_command({"jvm.xmx": "1g"}) in lines[1]
    assert any("partial" in line and "UseParNewGC" in line for line in lines)
    # and the report, through the command line as a user runs it
    out = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "eiperf.cli", "report", str(folder), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "eiperf tune apply --set jvm.xmx=1g" in html
    assert "eiperf tune apply --set jvm.xmx=2g" not in html


def test_unknown_trial_state_is_refused_in_one_line(tmp_path):
    folder = write_sweep_folder(tmp_path, MIXED)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(folder / TRIALS_FILE)
    states = table.column("state").to_pylist()
    states[0] = "skipped"
    pq.write_table(table.set_column(table.schema.get_field_index("state"), "state",
                                    pa.array(states)), folder / TRIALS_FILE)
    from eicore.results import SchemaError

    with pytest.raises(SchemaError, match="state 'skipped'; known: complete, failed"):
        load_sweep(folder)
