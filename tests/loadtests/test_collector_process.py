"""The collector process: a valid Parquet file on a drift-free schedule, clean stops, and no
process or spool left behind -- also after SIGKILL and after its parent died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from eicore.errors import ConfigError
from eicore.results import metrics_schema
from eicore.transport import local_pid_alive
from loadtests.collectors.process import CollectorProcess
from loadtests.collectors.sink import spool_path

INTERVAL = 0.25


def read_metrics(path: Path) -> pd.DataFrame:
    table = pq.read_table(path)
    assert table.schema.equals(metrics_schema()), table.schema
    return table.to_pandas()


def no_process_left(pid: int, out: Path) -> None:
    assert not local_pid_alive(pid)
    for p in psutil.process_iter(["cmdline"]):
        assert str(out) not in " ".join(p.info["cmdline"] or []), f"left behind: {p.pid}"


def round_ts(df: pd.DataFrame) -> list[float]:
    return sorted(df["ts"].unique())


def test_writes_valid_parquet_on_a_fixed_schedule_and_stops_on_sigterm(testbed, tmp_path):
    out = tmp_path / "metrics.parquet"
    pids_file = tmp_path / "generator.pids"
    cp = CollectorProcess(testbed.source, out, interval=INTERVAL, generator_pids_file=pids_file,
                          flush_s=1.0)
    cp.start()
    pid = cp.pid
    try:
        cp.set_generator_pids([os.getpid()])  # after start, as Locust workers appear
        time.sleep(3.0)
        assert spool_path(out).exists() and not out.exists()  # spooled while running
        os.kill(pid, signal.SIGTERM)
        assert cp._proc.wait(10) == 0
    finally:
        assert cp.stop() == 0
    no_process_left(pid, out)
    assert not spool_path(out).exists()
    df = read_metrics(out)
    assert df["ts"].is_monotonic_increasing
    ts = round_ts(df)
    assert len(ts) >= 8
    # Drift-free: every round lies on t0 + k * interval (give or take wake-up latency).
    steps = [(t - ts[0]) / INTERVAL for t in ts]
    assert all(abs(s - round(s)) < 0.4 for s in steps), steps
    assert len(set(map(round, steps))) == len(steps)
    series = set(zip(df["node"], df["source"], strict=True))
    for node in testbed.nodes:
        assert (node.name, "psutil") in series and (node.name, "jmx") in series
    assert {("host", "psutil"), ("generator", "psutil"), ("lb", "nginx"),
            ("collector", "collector")} <= series
    own = df[df["node"] == "collector"]
    cpu = own[own["metric"] == "cpu_seconds"]["value"]
    assert cpu.is_monotonic_increasing and cpu.iloc[-1] > 0
    assert {"round_ms.psutil", "round_ms.jmx", "round_ms.nginx", "gaps.jmx",
            "missed_ticks", "rss_bytes"} <= set(own["metric"])
    assert own[own["metric"] == "gaps.jmx"]["value"].max() == 0
    assert (out.parent / "metrics.parquet.log").exists()


def test_killed_collector_leaves_its_spooled_rows(testbed, tmp_path):
    out = tmp_path / "metrics.parquet"
    cp = CollectorProcess(testbed.source, out, interval=INTERVAL, flush_s=0.5)
    cp.start()
    pid = cp.pid
    time.sleep(1.5)
    os.kill(pid, signal.SIGKILL)  # no chance to write the Parquet footer
    cp._proc.wait(10)
    assert not out.exists() and spool_path(out).exists()
    assert cp.stop() == -signal.SIGKILL
    no_process_left(pid, out)
    df = read_metrics(out)
    assert len(round_ts(df)) >= 2  # everything up to the last flush
    assert not spool_path(out).exists()


def test_collector_stops_by_itself_when_its_parent_dies(testbed, tmp_path):
    out = tmp_path / "metrics.parquet"
    parent = (
        "import os, sys\n"
        "from loadtests.collectors.process import CollectorProcess\n"
        f"cp = CollectorProcess({testbed.source!r}, {str(out)!r}, interval={INTERVAL})\n"
        "cp.start()\n"
        "print(cp.pid, flush=True)\n"
        "os._exit(0)  # dies without stopping it\n"
    )
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while local_pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    no_process_left(pid, out)
    assert len(round_ts(read_metrics(out))) >= 1


def test_bad_cluster_file_is_refused_before_anything_starts(tmp_path):
    bad = tmp_path / "cluster.toml"
    bad.write_text("name = 'x'\n")
    cp = CollectorProcess(bad, tmp_path / "m.parquet")
    with pytest.raises(ConfigError, match="load_balancer"):
        cp.start()
    assert cp.pid is None and not (tmp_path / "m.parquet.spool").exists()
    with pytest.raises(ConfigError, match="interval"):
        CollectorProcess(bad, tmp_path / "m.parquet", interval=0)


def test_context_manager_stops_gracefully(testbed, tmp_path):
    out = tmp_path / "m.parquet"
    with CollectorProcess(testbed.source, out, interval=INTERVAL) as cp:
        pid = cp.pid
        time.sleep(0.6)
    assert cp.returncode == 0
    no_process_left(pid, out)
    assert len(read_metrics(out)) > 0
