"""`eiperf run` records the doctor's summary in run.json and the report shows its failed and
warned checks at the top of the run; `--no-doctor` skips it; older runs load and report as
before (no `doctor` in their run.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.loading import load_run
from analysis.report import render_report
from eiperf.cli import main

GOLDEN = Path(__file__).parents[1] / "analysis" / "golden"


def _run(testbed, out: Path, *extra: str) -> tuple[str, dict, Path]:
    r = subprocess.run(
        [sys.executable, "-m", "eiperf.cli", "run", "--cluster", testbed.source, "-u", "2",
         "-t", "2s", "--warmup", "0s", "--no-collect", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run_dir,) = out.iterdir()
    return r.stdout, json.loads((run_dir / "run.json").read_text()), run_dir


def test_run_records_the_doctors_counts_and_the_report_shows_them(testbed, tmp_path, capsys):
    out, record, run_dir = _run(testbed, tmp_path / "results")
    main(["doctor", "--cluster", testbed.source, "--json"])
    doc = json.loads(capsys.readouterr().out)
    doctor = record["doctor"]
    assert doctor["counts"] == doc["counts"] and doctor["ok"] is doc["ok"]
    bad = [r for r in doc["rows"] if r["verdict"] in ("fail", "warn")]
    keep = ("area", "host", "check", "current", "recommended", "verdict")
    assert doctor["findings"] == [{k: r[k] for k in keep} for r in bad]
    c = doc["counts"]
    assert f"configuration checks: {c['ok']} ok, {c['warn']} warn, {c['fail']} fail" in out
    run = load_run(run_dir)
    html = render_report([run])
    box = html.split(f'id="run-{run.id}-checks"', 1)[1].split("</div>", 1)[0]
    assert html.index(f'id="run-{run.id}-checks"') < html.index("<h3>Summary</h3>")
    assert f"{c['ok']} ok, {c['warn']} warn, {c['fail']} fail" in box
    for finding in doctor["findings"]:
        assert f"<td>{finding['check']}</td>" in box
    assert ("misconfigured" in box) is (c["fail"] > 0)


def test_no_doctor_skips_the_checks(testbed, tmp_path):
    out, record, run_dir = _run(testbed, tmp_path / "results", "--no-doctor")
    assert record["doctor"] == {} and "configuration checks" not in out
    run = load_run(run_dir)
    assert f'id="run-{run.id}-checks"' not in render_report([run])


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("v*/*")), ids=lambda p: p.parent.name)
def test_older_runs_load_and_report_without_checks(path):
    run = load_run(path)
    assert "doctor" not in json.loads((path / "run.json").read_text())
    assert run.record.doctor == {}
    html = render_report([run])
    assert "<html" in html.lower() and f'id="run-{run.id}-checks"' not in html
