"""The open model under plain Locust's own `--processes` (Locust forks a master and its
workers; no eiperf run around it): with `--open-streams` the rate is split over the forked
processes, each stream sends its share on schedule, and the master adds the counts up.
(`eiperf run --processes N` is `--workers N`: tests/loadtests/test_open_model.py runs that.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from loadtests.arrivals import ArrivalCounts
from loadtests.recorder import merge_request_files
from loadtests.worker_reports import WORKERS_JSON
from tests.loadtests.conftest import ROOT

RATE, SECONDS, PROCESSES = 100.0, 3, 2


def test_plain_locust_processes_split_the_open_rate(testbed, tmp_path):
    parts = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
         "--headless", "--cluster", testbed.source, "--shape", "open",
         "--arrival-rate", f"{RATE:g}", "--open-streams", str(PROCESSES),
         "--processes", str(PROCESSES), "-u", "200", "-t", f"{SECONDS}s", "--loglevel", "WARNING",
         "--exit-code-on-error", "0", "--eiperf-out", str(parts)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]

    workers = json.loads((parts / WORKERS_JSON).read_text())
    reported = [w["arrivals"] for w in workers if w.get("arrivals")]
    assert len(reported) == PROCESSES, workers
    # each forked process ran one stream carrying half the rate, on a fixed schedule
    for own in reported:
        assert abs(own["planned"] - RATE * SECONDS / PROCESSES) <= 2, own
        assert own["dropped"] == 0 and own["sent"] == own["planned"], own
    total = ArrivalCounts.total(reported)
    assert abs(total["planned"] - RATE * SECONDS) <= 2 * PROCESSES, total

    merge_request_files(parts, tmp_path / "requests.parquet")
    rows = pd.read_parquet(tmp_path / "requests.parquet")
    assert len(rows) == total["sent"] - total["cut"], (len(rows), total)
    per_worker = rows.groupby("worker").size()
    assert len(per_worker) == PROCESSES and per_worker.min() >= RATE * SECONDS / PROCESSES - 3
    assert rows.intended_ts.notna().all() and (rows.latency_us >= rows.service_us).all()
    # the two streams interleave: together they hold the whole rate in every full second
    start = rows.intended_ts.min()
    per_second = ((rows.intended_ts - start) // 1).value_counts().sort_index()
    assert per_second.iloc[:SECONDS - 1].between(RATE - 3, RATE + 3).all(), per_second
