"""`eiperf run` and the locustfile against the real testbed (runs of a few seconds)."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from eicore import node_control
from eicore.cluster import save_cluster
from eicore.results import RunStatus, read_run_record
from eicore.transport import LocalTransport
from loadtests import run as run_module
from tests.loadtests.conftest import ROOT, eiperf
from tests.sshd import free_port

LOCUSTFILE = str(ROOT / "loadtests" / "locustfile.py")


def only_run(results_dir: Path) -> Path:
    (run,) = [p for p in results_dir.iterdir() if p.is_dir()]
    return run


def locust_total(run_dir: Path) -> int:
    """The request count of Locust's own end-of-run summary."""
    log = (run_dir / "locust" / "locust.log").read_text()
    m = re.findall(r"^\s+Aggregated\s+(\d+)\s+\d+\(", log, re.M)
    assert m, log[-2000:]
    return int(m[-1])


def test_plain_locust_runs_every_scenario_through_its_vhost(testbed, tmp_path):
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "12", "-r", "12",
         "-t", "4s", "--cluster", testbed.source, "--eiperf-out", str(out),
         "--weights", "soap_http=1,soap_https=1,json=1,console=1,delayed=1,static=1",
         "--message-size", "10KB", "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pd.concat(pd.read_parquet(p) for p in out.glob("requests-*.parquet"))
    by = rows.groupby("scenario")
    assert set(by.groups) == {"soap_http", "soap_https", "json", "console", "delayed", "static"}
    assert by["ok"].all().all(), rows[~rows.ok].head()
    assert set(rows[rows.scenario == "console"].node) == {"node1"}
    assert set(rows[rows.scenario == "soap_http"].node) == {"node1", "node2"}
    assert rows[rows.scenario == "soap_http"].bytes.min() > 10_000  # 10 KB echoed
    assert rows[rows.scenario == "delayed"].latency_us.min() >= 200_000  # backend delay


def test_plain_locust_host_beside_cluster_keeps_each_vhost(testbed, tmp_path):
    # Locust hands --host to every user class; the console must still go to the ui vhost.
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "2", "-r", "2",
         "-t", "2s", "--host", testbed.load_balancer.http_url, "--cluster", testbed.source,
         "--eiperf-out", str(out), "--weights", "soap_http=1,console=1", "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pd.concat(pd.read_parquet(p) for p in out.glob("requests-*.parquet"))
    assert set(rows.scenario) == {"soap_http", "console"}
    assert rows.ok.all(), rows[~rows.ok].head()
    assert set(rows[rows.scenario == "console"].node) == {"node1"}


def test_plain_locust_with_only_host(testbed, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "2", "-t", "2s",
         "--host", testbed.load_balancer.http_url, "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"POST\s+soap_http\s+\d+\s+0\(0.00%\)", r.stdout + r.stderr)


def test_a_request_without_a_response_records_its_connection_error(tmp_path):
    """Nothing listens on the port: each failure says why (refused), not just "HTTP 0"."""
    port = free_port()
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "1", "-t", "2s",
         "--host", f"http://127.0.0.1:{port}", "--eiperf-out", str(out), "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    rows = pd.concat(pd.read_parquet(p) for p in out.glob("requests-*.parquet"))
    assert len(rows) > 0 and not rows.ok.any(), r.stderr[-2000:]
    assert (rows.status == 0).all()
    assert rows.error.astype(str).str.startswith("connection error: ").all()
    assert rows.error.astype(str).str.contains("Connection refused").all(), rows.error.unique()


@pytest.mark.parametrize("proc_children", [True, False], ids=["proc", "psutil"])
def test_the_generator_pids_are_the_whole_process_tree(monkeypatch, proc_children):
    """The run's PID scan (the kernel's children lists, or psutil where there are none) finds
    every descendant, grandchildren included, and nothing else."""
    if proc_children and not run_module._PROC_CHILDREN:
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children")
    monkeypatch.setattr(run_module, "_PROC_CHILDREN", proc_children)
    root = subprocess.Popen(["sh", "-c", "sleep 30 & (sleep 30 & wait) & wait"])
    tree = psutil.Process(root.pid)
    try:
        deadline = time.monotonic() + 10
        while len(tree.children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = sorted(p.pid for p in tree.children(recursive=True))
        assert len(expected) == 3
        assert sorted(run_module._children(root.pid)) == expected
        assert run_module._children(2**22 + 1) == []  # no such process
    finally:
        for p in [*tree.children(recursive=True), tree]:
            try:
                p.kill()  # by PID
            except psutil.NoSuchProcess:
                pass
        root.wait(10)


def test_run_writes_a_complete_result_that_matches_locust(testbed, results_dir):
    r = eiperf("run", "--cluster", testbed.source, "-u", "8", "-t", "4s", "--warmup", "0",
               "--out", str(results_dir), "--no-collect", "--slo", "p95<10s")
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE
    rows = pd.read_parquet(run / "requests.parquet")
    assert len(rows) == locust_total(run) == rec.generator["requests"]
    assert rows.ts.is_monotonic_increasing
    shares = rows.node.value_counts(normalize=True)
    assert set(shares.index) == {"node1", "node2"} and shares.sum() == pytest.approx(1.0)
    assert sum(n["share"] for n in rec.summary["nodes"].values()) == pytest.approx(1.0)
    assert rec.cluster["nodes"]["node1"]["jvm.xmx"] == "1024m"
    assert "-Xmx1024m" in rec.cluster["jvm_runtime"]["node1"]["input_arguments"]
    assert rec.slo_results[0]["ok"] is True
    assert (run / "locust" / "report.html").exists()
    assert "throughput" in r.stdout and "p99.9" in r.stdout


def nginx_request_times(testbed, start: float, end: float) -> np.ndarray:
    """nginx's own $request_time (ms) for SampleProxy requests that ended in [start, end]."""
    log = Path(testbed.load_balancer.prefix) / "logs" / "access.log"
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if "/services/SampleProxy" not in line or not parts:
            continue
        done = float(parts[0])
        if start <= done <= end:
            out.append(float(re.search(r"rt=([0-9.]+)", line)[1]) * 1000)
    return np.array(out)


def test_exact_percentiles_agree_with_nginx_request_time(testbed, results_dir):
    # One user back to back: no queueing inside Locust and no idle wake-ups, so what the client
    # measures is nginx's time plus the loopback hop and Python's parsing.
    r = eiperf("run", "--cluster", testbed.source, "-u", "1", "-t", "4s", "--warmup", "1s",
               "--out", str(results_dir), "--no-collect")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = pd.read_parquet(only_run(results_dir) / "requests.parquet")
    ours = rows.latency_us.to_numpy() / 1000.0
    ends = rows.ts + rows.latency_us / 1e6
    # nginx logs a request between the client's start and the client's end of it
    theirs = nginx_request_times(testbed, rows.ts.min() - 0.002, ends.max() + 0.002)
    assert len(theirs) == len(ours) > 200
    # nginx's $request_time is the difference of two millisecond-truncated clock readings, so
    # each logged value is off by up to 1 ms either way. The median must agree within 1 ms and
    # p90 within 1 ms beyond that quantum. In the tail the client never sees less than nginx,
    # but it may see more: on a busy 2-core machine the client process is sometimes scheduled
    # late (seen here: p99 +1 to +3 ms with other work running), which nginx cannot see.
    for p, slack in ((50, 1.0), (90, 2.0), (95, None), (99, None)):
        mine, nginx = np.percentile(ours, p), np.percentile(theirs, p)
        assert mine >= nginx - 1.0, (p, mine, nginx)
        if slack is not None:
            assert mine <= nginx + slack, (p, mine, nginx)
    # Request by request (one user: the log's order is the client's order), the typical
    # difference is the loopback hop and parsing, well under a millisecond.
    paired = ours[np.argsort(ends.to_numpy())] - theirs
    assert abs(np.median(paired)) <= 1.0, np.percentile(paired, [5, 50, 95])


def test_killed_node_mid_run_is_an_error_window_not_a_crash(testbed, results_dir):
    t = LocalTransport()
    node2 = testbed.nodes[1]
    killed_at = {}

    def kill_later():
        time.sleep(3)
        pid = node_control.read_pid(t, node2)
        killed_at["ts"] = time.time()
        t.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_later)
    killer.start()
    try:
        r = eiperf("run", "--cluster", testbed.source, "-u", "10", "-t", "7s", "--warmup", "0",
                   "--out", str(results_dir), "--no-collect")
    finally:
        killer.join()
        node_control.start_node(t, node2)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = read_run_record(only_run(results_dir))
    assert rec.status is RunStatus.COMPLETE
    rows = pd.read_parquet(only_run(results_dir) / "requests.parquet")
    kill = killed_at["ts"]
    after = rows[rows.ts > kill + 2]
    assert len(after) > 100 and after.ok.all() and set(after.node) == {"node1"}
    errors = rows[~rows.ok]
    assert ((errors.ts > kill - 1) & (errors.ts < kill + 2)).all()


def test_slo_exit_codes(testbed, results_dir):
    r = eiperf("run", "--cluster", testbed.source, "-u", "2", "-t", "2s", "--warmup", "0",
               "--out", str(results_dir), "--no-collect", "--slo", "p95<0.001ms",
               "--slo", "errors<5%")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "SLO broken: p95<0.001ms" in r.stdout and "errors<5%" not in r.stdout.split("SLO broken")[1]
    rec = read_run_record(only_run(results_dir))
    assert [s["ok"] for s in rec.slo_results] == [False, True]


def test_interrupted_run_is_kept_and_marked_incomplete(testbed, results_dir):
    p = subprocess.Popen([sys.executable, "-m", "eiperf.cli", "run", "--cluster", testbed.source,
                          "-u", "4", "-t", "60s", "--warmup", "0", "--out", str(results_dir),
                          "--no-collect"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    # interrupted once the load has run a while: once a progress line (every 5 s) counts over
    # 150 requests, not after a fixed sleep that a slow start-up can use up
    seen, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([p.stdout], [], [], 1.0)[0]:
            continue
        line = p.stdout.readline()
        seen.append(line)
        count = re.search(r"([\d,]+) requests, ", line)
        if not line or (count and int(count.group(1).replace(",", "")) > 150):
            break
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    out = "".join(seen) + out
    assert p.returncode == 3, out
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.INCOMPLETE and "interrupted" in rec.error
    rows = pd.read_parquet(run / "requests.parquet")
    assert len(rows) > 100 and rows.ok.all()
    assert not list(run.glob("parts"))


def test_unreachable_load_balancer_is_reported_before_any_load(testbed, tmp_path, results_dir):
    import dataclasses
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    lb = dataclasses.replace(testbed.load_balancer, http_url=f"http://127.0.0.1:{closed_port}")
    bad = tmp_path / "cluster.toml"
    save_cluster(dataclasses.replace(testbed, load_balancer=lb), bad)
    r = eiperf("run", "--cluster", str(bad), "-t", "2s", "--out", str(results_dir))
    assert r.returncode == 2
    assert "does not answer" in r.stderr and r.stderr.count("\n") == 1
    assert not results_dir.exists()


@pytest.mark.parametrize("args, message", [
    (["--weights", "nope=1"], "unknown scenario 'nope'"),
    (["--duration", "5x"], "--duration '5x' is not a duration"),
    (["--slo", "p95<fast"], "SLO 'p95<fast'"),
    (["--shape", "arrival"], "needs --arrival-rate"),
    (["--weights", "soap_http=1,json=1,console=1", "-u", "2"], "need at least 3 users, got 2"),
])
def test_bad_input_is_one_line_and_writes_nothing(testbed, results_dir, args, message):
    r = eiperf("run", "--cluster", testbed.source, "--out", str(results_dir), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1
    assert not results_dir.exists()


def test_timeline_records_users_for_a_step_run(testbed, results_dir):
    r = eiperf("run", "--cluster", testbed.source, "--shape", "step", "-u", "6",
               "--step-users", "2", "--step-time", "2s", "-t", "6s", "--warmup", "0",
               "--out", str(results_dir), "--no-collect")
    assert r.returncode == 0, r.stdout + r.stderr
    timeline = json.loads((only_run(results_dir) / "timeline.json").read_text())
    users = [u for _, u in timeline["users"]]
    assert max(users) == 6 and users[0] <= 2
    assert timeline["shape"]["shape"] == "step"


def test_relative_results_folder(testbed, tmp_path):
    # Locust runs inside the run folder: a relative --out must still mean the caller's folder.
    r = eiperf("run", "--cluster", testbed.source, "-u", "2", "-t", "2s", "--warmup", "0",
               "--out", "results", "--no-collect", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "results")
    assert len(pd.read_parquet(run / "requests.parquet")) > 0
    assert not (run / "results").exists()
