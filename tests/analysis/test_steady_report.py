"""The steady-state verdict in the HTML report: a run section's badge and its "steady state"
row, for a steady run and for one still warming up (a step load whose throughput rises), and a
sweep's ranking note for a trial that was not steady."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.loading import load
from analysis.report import render_report
from tests.analysis.results_fixture import write_run, write_step_run, write_sweep


def section(html: str, run_id: str) -> str:
    start = html.index(f"<h2>Run {run_id} ")
    end = html.find("<h2>", start + 1)
    return html[start:end if end > 0 else len(html)]


def test_the_report_shows_each_runs_verdict(tmp_path):
    flat = write_run(tmp_path, "flat", n=6000)
    rising = write_step_run(tmp_path, "rising")
    html = render_report([load(flat), load(rising)])
    steady, warming = section(html, "flat"), section(html, "rising")
    assert 'class="badge steady-steady"' in steady and ">steady</span>" in steady
    assert 'class="badge steady-warming-up"' in warming and ">warming up</span>" in warming
    assert "steady-warming-up" not in steady and "steady-steady" not in warming
    assert "steady state" in warming and "throughput +" in warming  # the summary's row


def test_the_reports_ranking_flags_a_trial_that_was_not_steady(tmp_path):
    sweep_dir = write_sweep(tmp_path)
    table = pq.read_table(sweep_dir / "trials.parquet")
    verdicts = ["warming up" if t == 1 else "steady" for t in table.column("trial").to_pylist()]
    pq.write_table(table.append_column("steady", pa.array(verdicts, pa.string())),
                   sweep_dir / "trials.parquet")
    html = render_report([load(sweep_dir)])
    assert html.count("not steady: warming up") >= 1
    assert "not steady: steady" not in html
