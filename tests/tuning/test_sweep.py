"""`eiperf sweep` on the real testbed: each trial's heap is what JMX reports, a refused JVM flag
fails one trial and the sweep goes on, files come back byte for byte (at the end, after
SIGTERM, after SIGKILL + `eiperf tune restore`), a resumed sweep skips finished trials, and an
Optuna sweep runs. Trials are ~3 s of load each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from eicore import node_control
from eicore.cluster import Cluster
from eicore.lbclient import LbClient
from eicore.sweeps import SweepStatus, TrialState, read_trials
from eicore.transport import LocalTransport
from loadtests.verify import SERVICE, soap_envelope
from tests.tuning.test_apply import config_snapshot as root_snapshot
from tests.tuning.test_apply import root_of
from tuning.params import size_to_bytes
from tuning.sweep import run_sweep
from tuning.sweep_spec import load_spec

EIPERF = [sys.executable, "-m", "eiperf.cli"]
LOAD = '[load]\nusers = 2\nduration = "2s"\nwarmup = "1s"\n'


def config_snapshot(cluster: Cluster) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every config file of the testbed (tests/tuning/test_apply.py's)."""
    return root_snapshot(root_of(cluster))


def nodes_alive(cluster: Cluster) -> bool:
    t = LocalTransport()
    return all(node_control.node_state(t, n).alive for n in cluster.nodes)


def lb_serves(cluster: Cluster) -> bool:
    with LbClient(cluster) as client:
        return all(client.request("http", "POST", SERVICE, soap_envelope(256)).ok
                   for _ in range(4))


def ignores_sigterm(cluster: Cluster) -> list[str]:
    """Nodes whose JVM ignores SIGTERM (it then never runs its shutdown hook on `stop`)."""
    t = LocalTransport()
    found = []
    for node in cluster.nodes:
        pid = node_control.node_state(t, node).pid
        status = Path(f"/proc/{pid}/status").read_text()
        (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
        if int(mask, 16) & (1 << (signal.SIGTERM - 1)):
            found.append(node.name)
    return found


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def jmx_heap_max(run_dir: Path) -> dict[str, float]:
    m = pd.read_parquet(run_dir / "metrics.parquet")
    heap = m[(m["source"] == "jmx") & (m["metric"] == "heap_max_bytes")]
    return heap.groupby("node")["value"].max().to_dict()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*EIPERF, "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def complete_rows(out: Path) -> int:
    files = list((out / "sweeps").glob("*/trials.parquet"))
    if not files:
        return 0
    return sum(r.state is TrialState.COMPLETE for r in read_trials(files[0]))


@pytest.fixture
def original(testbed):
    """The testbed's config files before the test; the test checks they are back."""
    before = config_snapshot(testbed)
    assert nodes_alive(testbed)
    yield before


def test_grid_sweep_heap_per_trial_refused_flag_and_restore(testbed, original, tmp_path):
    spec = load_spec(write_spec(tmp_path / "heap.toml", (
        'seed = 4\nslo = ["errors<5%"]\n[parameters]\n'
        '"jvm.xmx" = ["384m", "512m", "999999g"]\n' + LOAD)))
    outcome = run_sweep(spec, testbed, tmp_path / "results")

    assert outcome.status is SweepStatus.COMPLETE
    by_value = {t.params["jvm.xmx"]: t for t in outcome.results}
    assert set(by_value) == {"384m", "512m", "999999g"}
    refused = by_value["999999g"]
    assert refused.state is TrialState.FAILED
    assert "Could not reserve enough space" in refused.error
    for value in ("384m", "512m"):
        trial = by_value[value]
        assert trial.state is TrialState.COMPLETE, trial
        assert trial.objective and trial.objective > 0
        (run_id,) = trial.run_ids
        heap = jmx_heap_max(tmp_path / "results" / run_id)
        assert set(heap) == {n.name for n in testbed.nodes}
        assert all(v == size_to_bytes(value) for v in heap.values()), (value, heap)
        record = json.loads((tmp_path / "results" / run_id / "run.json").read_text())
        assert record["load"]["labels"]["params"] == {"jvm.xmx": value}

    info = json.loads((outcome.path / "sweep.json").read_text())
    assert info["status"] == "complete" and info["kind"] == "sweep"
    assert info["best"]["trial"] in (by_value["384m"].trial, by_value["512m"].trial)
    assert info["parameters"] == ["jvm.xmx"]
    table = pd.read_parquet(outcome.path / "trials.parquet")
    assert list(table.columns[:10]) == ["trial", "repetition", "state", "run_id", "objective",
                                        "slo_ok", "slo_detail", "error", "started", "duration_s"]
    assert str(table["trial"].dtype) == "int64" and "param.jvm.xmx" in table.columns
    assert len(table) == 3

    assert config_snapshot(testbed) == original
    assert nodes_alive(testbed) and lb_serves(testbed)
    assert ignores_sigterm(testbed) == []  # restarted by the restore, still stoppable
    assert not (tmp_path / "results" / ".journal").exists()


def _kill_tree_except_nodes(proc: subprocess.Popen) -> None:
    """SIGKILL the sweep and the Locust / collector processes it started (never a node JVM)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait(10)
    for child in children:
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "locust" in cmd or "collectors" in cmd or "eiperf" in cmd:
            try:
                child.kill()
            except psutil.Error:
                pass
    psutil.wait_procs([c for c in children if c.is_running()], timeout=10)


def test_sigkill_mid_trial_then_tune_restore(testbed, original, tmp_path):
    spec = write_spec(tmp_path / "kill.toml", (
        'seed = 1\n[parameters]\n"jvm.xmx" = ["384m", "512m"]\n'
        '[load]\nusers = 2\nduration = "20s"\nwarmup = "1s"\n'))
    out = tmp_path / "results"
    proc = start_sweep([str(spec), "--cluster", testbed.source, "--out", str(out)], tmp_path)
    try:
        run_json = wait_for(lambda: next(out.glob("2*/run.json"), None), 90, "a trial's run")
        time.sleep(2)  # well inside the 21 s run
        assert proc.poll() is None, proc.stdout.read().decode()
    finally:
        _kill_tree_except_nodes(proc)
    assert json.loads(run_json.read_text())["status"] == "incomplete"
    assert config_snapshot(testbed) != original  # the trial's heap is still in the files
    journals = list((out / ".journal").iterdir())
    assert len(journals) == 1

    r = subprocess.run([*EIPERF, "tune", "restore", "--results", str(out)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert config_snapshot(testbed) == original
    assert nodes_alive(testbed) and lb_serves(testbed)
    assert not (out / ".journal").exists()
    info = json.loads(next(out.glob("sweeps/*/sweep.json")).read_text())
    assert info["status"] == "running"  # it never got to say otherwise; resume treats it so


def test_sigterm_then_resume_skips_finished_trials(testbed, original, tmp_path):
    text = ('seed = 3\nslo = ["errors<5%"]\n[parameters]\n'
            '"nginx.proxy_read_timeout" = ["30s", "45s", "60s"]\n' + LOAD)
    spec = write_spec(tmp_path / "resume.toml", text)
    out = tmp_path / "results"
    proc = start_sweep([str(spec), "--cluster", testbed.source, "--out", str(out)], tmp_path)
    try:
        wait_for(lambda: complete_rows(out) >= 1, 120, "the first finished trial")
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            _kill_tree_except_nodes(proc)
    assert proc.returncode == 3, output
    assert "--resume" in output
    sweep_dir = next(out.glob("sweeps/*"))
    info = json.loads((sweep_dir / "sweep.json").read_text())
    assert info["status"] == "incomplete"
    assert config_snapshot(testbed) == original
    first = [r for r in read_trials(sweep_dir / "trials.parquet")
             if r.state is TrialState.COMPLETE]
    assert 1 <= len(first) < 3

    outcome = run_sweep(None, testbed, out, resume=sweep_dir.name)
    assert outcome.status is SweepStatus.COMPLETE
    rows = read_trials(sweep_dir / "trials.parquet")
    assert sorted(r.trial for r in rows) == [0, 1, 2]
    assert all(r.state is TrialState.COMPLETE for r in rows)
    assert sorted(r.params["nginx.proxy_read_timeout"] for r in rows) == ["30s", "45s", "60s"]
    for done in first:  # finished trials were not run again
        (again,) = [r for r in rows if r.trial == done.trial]
        assert again.run_id == done.run_id and again.started == done.started
    assert config_snapshot(testbed) == original
    r = subprocess.run([*EIPERF, "sweep", "--resume", sweep_dir.name, "--out", str(out),
                        "--cluster", testbed.source], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "is complete" in r.stderr


def test_optuna_sweep_three_trials(testbed, original, tmp_path):
    spec = load_spec(write_spec(tmp_path / "opt.toml", (
        'strategy = "optuna"\nseed = 11\nslo = ["p95<500ms"]\n[budget]\ntrials = 3\n'
        '[parameters]\n"nginx.upstream_keepalive" = {low = 0, high = 32}\n'
        '"nginx.lb_method" = {choices = ["round_robin", "least_conn"]}\n' + LOAD
        + '[objective]\nmetric = "p95_ms"\n')))
    outcome = run_sweep(spec, testbed, tmp_path / "results")
    assert outcome.status is SweepStatus.COMPLETE
    assert [t.trial for t in outcome.results] == [0, 1, 2]
    assert all(t.state is TrialState.COMPLETE for t in outcome.results), outcome.results
    for t in outcome.results:
        assert 0 <= int(t.params["nginx.upstream_keepalive"]) <= 32
        assert t.params["nginx.lb_method"] in ("round_robin", "least_conn")
        assert t.objective is not None and t.objective > 0
    info = json.loads((outcome.path / "sweep.json").read_text())
    assert info["strategy"] == "optuna"
    assert info["objective"] == {"metric": "p95_ms", "direction": "minimize"}
    if info["best"] is not None:
        best = min((t for t in outcome.results if t.slo_ok), key=lambda t: t.objective)
        assert info["best"]["trial"] == best.trial
    assert config_snapshot(testbed) == original
    assert lb_serves(testbed)


def test_no_process_left(testbed):
    """Every Locust / collector process a sweep here started is gone."""
    mine = [p for p in psutil.process_iter(["pid", "cmdline"])
            if p.info["cmdline"] and "locust" in " ".join(p.info["cmdline"])
            and testbed.source in " ".join(p.info["cmdline"])]
    assert not mine, [p.info for p in mine]
    assert os.path.exists(testbed.source)
