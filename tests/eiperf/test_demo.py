"""`eiperf demo` (what `make demo` runs) end to end on a testbed of its own."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import start_testbed


def test_demo_verifies_runs_and_reports(fresh_testbed_dir, tmp_path):
    start_testbed(fresh_testbed_dir)  # free ports; the demo reuses a running testbed
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "eiperf.cli", "demo", "--dir", str(fresh_testbed_dir),
         "-u", "4", "-t", "3s", "--out", str(out)],
        capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "6/6 checks passed" in r.stdout
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["load"]["warmup_auto"] is True and 0 < record["load"]["warmup"] <= 30.5
    assert "steady_state" in record["summary"]
    assert record["summary"]["error_rate"] == 0.0 and record["summary"]["count"] > 0
    assert set(record["summary"]["nodes"]) == {"node1", "node2"}
    report = run / "report.html"
    assert str(report) in r.stdout
    html = report.read_text()
    assert record["id"] in html and html.count("data:image/svg+xml;base64,") >= 2  # plots inline: timeline, nodes
