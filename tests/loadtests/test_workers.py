"""`eiperf run --workers` and `[[generators]]`: Locust's own master/worker mode on this machine
and on generator hosts reached over SSH (runs of a few seconds).

Every request row names its worker, the rows are exactly Locust's own total, a worker killed
mid-run (by PID) leaves an incomplete run that names it and keeps the others' rows, and a
generator that cannot run this eiperf's workers is one line before any load.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from eicore.cluster import Cluster, Generator, load_cluster, save_cluster
from eicore.results import SCHEMA_VERSION, RunStatus, read_run_record
from eicore.transport import transport_for
from loadtests.generators import (
    LOCAL,
    cluster_processes_on,
    default_workers,
    plan_workers,
)
from tests.loadtests.conftest import ROOT, eiperf
from tests.loadtests.test_run import locust_total, only_run

LOCUSTFILE = str(ROOT / "loadtests" / "locustfile.py")


def rows_of(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "requests.parquet")


def assert_rows_are_locusts(run: Path) -> pd.DataFrame:
    """Every row names a worker the run started, and they are exactly Locust's own total."""
    rec = read_run_record(run)
    rows = rows_of(run)
    names = {w["name"] for w in rec.generator["workers"]}
    assert rows["worker"].notna().all() and set(rows["worker"]) <= names
    assert len(rows) == locust_total(run) == rec.generator["requests"]
    per_worker = rows["worker"].value_counts().to_dict()
    assert {w["name"]: w["rows"] for w in rec.generator["workers"] if w["rows"]} == per_worker
    return rows


# --------------------------------------------------------------------------- the plan


def test_the_default_leaves_the_cores_of_a_cluster_on_this_machine_to_it(testbed):
    # loopback testbed: two nodes and nginx on this machine
    assert cluster_processes_on(testbed, None) == 3
    assert [default_workers(c, 3) for c in (1, 2, 4, 8)] == [1, 1, 1, 5]
    assert default_workers(8, 0) == 8  # a machine that runs no part of the cluster
    plan = plan_workers(testbed, None, users=100)
    (machine,) = plan.machines
    assert machine.name == LOCAL and machine.workers == default_workers(os.cpu_count(), 3)
    assert plan.single is (machine.workers == 1)
    # never more workers than users; -1 is one per core; a count is taken as given
    assert plan_workers(testbed, None, users=1).single
    assert plan_workers(testbed, -1, users=100).total == os.cpu_count()
    two = plan_workers(testbed, 2, users=1)
    assert (two.total, two.single, two.bind_host) == (2, False, "127.0.0.1") and two.port > 0


def test_generator_hosts_run_one_worker_per_core_and_dial_the_bridge(hosts_testbed):
    gens = hosts_testbed.generators
    assert [g.name for g in gens] == ["gen1", "gen2"]
    plan = plan_workers(hosts_testbed, None, users=100)
    assert [m.name for m in plan.machines] == ["gen1", "gen2"]  # this machine: the master only
    net_gateway = gens[0].master_host
    for m in plan.machines:
        assert m.remote and m.dial == net_gateway and m.workers == m.cores >= 1
    assert plan.bind_host == net_gateway  # the master listens on the bridge, not everywhere
    assert plan_workers(hosts_testbed, 1, users=100).total == 2


def with_generator(testbed: Cluster, tmp_path: Path, **gen) -> Path:
    """The testbed's cluster file plus one [[generators]] entry."""
    path = tmp_path / "cluster.toml"
    save_cluster(dataclasses.replace(testbed, generators=(Generator(**gen),)), path)
    load_cluster(path)  # valid as written
    return path


def test_a_generator_with_other_versions_is_one_line_before_any_load(testbed, tmp_path,
                                                                      results_dir):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho \'{"locust": "2.0.0", "eiperf": "0.0.1", "cpus": 2, '
                    '"locustfile": "/x/locustfile.py", "home": "/tmp"}\'\n')
    fake.chmod(0o755)
    cluster = with_generator(testbed, tmp_path, name="old-box", host="127.0.0.1",
                             transport="local", python=str(fake))
    r = eiperf("run", "--cluster", str(cluster), "-t", "2s", "--out", str(results_dir))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "generator old-box (127.0.0.1): Locust 2.0.0 and eiperf 0.0.1" in r.stderr
    assert "no load was started" in r.stderr
    assert not results_dir.exists()


def test_a_generator_without_the_python_is_one_line_naming_the_host(hosts_testbed, tmp_path,
                                                                    results_dir):
    gen = dataclasses.replace(hosts_testbed.generators[1], python="/nowhere/bin/python")
    path = tmp_path / "cluster.toml"
    save_cluster(dataclasses.replace(hosts_testbed, generators=(gen,)), path)
    r = eiperf("run", "--cluster", str(path), "-t", "2s", "--out", str(results_dir))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert f"generator gen2 ({gen.host}): cannot run /nowhere/bin/python there" in r.stderr
    assert not results_dir.exists()


# --------------------------------------------------------------------------- runs


def test_two_local_workers_name_every_row_and_match_locust(testbed, results_dir):
    # 6 s: a worker's CPU share arrives with its reports to the master (every 3 s, the first
    # one only a baseline), stamped on arrival; the window must hold one of them
    r = eiperf("run", "--cluster", testbed.source, "--workers", "2", "-u", "4", "-t", "6s",
               "--warmup", "0", "--out", str(results_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 Locust workers: 2 on local" in r.stdout
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE and rec.schema_version == SCHEMA_VERSION
    assert rec.generator["processes"] == 2 and rec.generator["mode"] == "master-workers"
    rows = assert_rows_are_locusts(run)
    assert set(rows["worker"]) == {"local-1", "local-2"}
    assert set(rows["node"]) == {"node1", "node2"} and rows["ok"].all()
    # each worker's own CPU (from its reports), and the collector's view of every process
    metrics = pd.read_parquet(run / "metrics.parquet")
    gen = metrics[metrics["node"] == "generator"]
    assert {"worker_cpu_percent.local-1", "worker_cpu_percent.local-2"} <= set(gen["metric"])
    assert gen.loc[gen["metric"] == "generator_cores", "value"].max() >= 3  # master + 2
    assert "per worker local-1" in r.stdout
    assert sorted(p.name for p in (run / "locust").glob("worker-*.log")) == [
        "worker-local-1.log", "worker-local-2.log"]
    assert not (run / "parts").exists()


def test_one_worker_is_a_single_locust_process_whose_rows_name_it(testbed, results_dir):
    r = eiperf("run", "--cluster", testbed.source, "--processes", "1", "-u", "2", "-t", "2s",
               "--warmup", "0", "--out", str(results_dir), "--no-collect")
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.generator["mode"] == "standalone" and rec.generator["master"] is None
    assert set(assert_rows_are_locusts(run)["worker"]) == {"local-1"}


def test_plain_locust_processes_send_their_rows_to_the_master(testbed, tmp_path):
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "4", "-r", "4",
         "-t", "3s", "--processes", "2", "--cluster", testbed.source, "--eiperf-out", str(out),
         "--only-summary"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pd.concat(pd.read_parquet(p) for p in out.glob("requests-*.parquet"))
    assert rows["worker"].nunique() == 2 and rows["ok"].all()
    workers = json.loads((out / "workers.json").read_text())
    assert sorted(w["rows"] for w in workers) == sorted(rows["worker"].value_counts().tolist())


def _kill_during_run(args: list[str], results_dir: Path, victim: str, cluster: Cluster,
                     after_load_s: float = 0.5) -> tuple[subprocess.CompletedProcess, float]:
    """Start `eiperf run`, wait until its workers are listed in run.json and Locust counts
    requests, then SIGKILL worker `victim` by its PID (over its generator's transport).
    Returns the run's outcome and when the kill happened. Every wait is bounded."""
    p = subprocess.Popen([sys.executable, "-m", "eiperf.cli", "run", *args, "--out",
                          str(results_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        deadline = time.monotonic() + 90
        worker = None
        while worker is None and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.3)
            for f in results_dir.glob("*/run.json"):
                workers = json.loads(f.read_text())["generator"].get("workers", [])
                worker = next((w for w in workers if w["name"] == victim), None)
        assert worker is not None and worker["pid"], "the run never listed its workers"
        stats = next(results_dir.glob("*")) / "locust" / "stats_stats.csv"
        while time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.3)
            try:
                agg = [r for r in csv.DictReader(stats.read_text().splitlines())
                       if r["Name"] == "Aggregated"]
            except FileNotFoundError:
                continue
            if agg and int(agg[0]["Request Count"]) > 0:
                break
        time.sleep(after_load_s)
        assert p.poll() is None, "the run ended before the worker could be killed"
        host = next((g for g in cluster.generators if g.name == worker["generator"]), None)
        killed_at = time.time()
        if host is None:
            os.kill(int(worker["pid"]), signal.SIGKILL)
        else:
            t = transport_for(host)
            try:
                t.kill(int(worker["pid"]), signal.SIGKILL)
            finally:
                t.close()
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, ""), killed_at


def assert_lost(run: Path, out: subprocess.CompletedProcess, victim: str, survivor: str,
                killed_at: float) -> None:
    assert out.returncode == 3, out.stdout
    rec = read_run_record(run)
    assert rec.status is RunStatus.INCOMPLETE
    assert rec.error.startswith(f"worker {victim} (") and " was lost " in rec.error
    assert f"run incomplete: worker {victim}" in out.stdout
    lost = {w["name"]: w["lost_at"] for w in rec.generator["workers"]}
    assert lost[survivor] is None and abs(lost[victim] - killed_at) < 2.5
    rows = assert_rows_are_locusts(run)  # the victim's rows up to its last report, exactly
    later = rows[rows["ts"] > killed_at + 1]
    assert len(later) > 50 and set(later["worker"]) == {survivor} and later["ok"].all()
    assert not rows[rows["worker"] == victim]["ts"].gt(killed_at + 0.5).any()


def test_a_local_worker_killed_mid_run_is_named_and_the_other_goes_on(testbed, results_dir):
    out, killed_at = _kill_during_run(
        ["--cluster", testbed.source, "--workers", "2", "-u", "4", "-t", "10s", "--warmup", "0",
         "--no-collect"], results_dir, "local-2", testbed)
    assert_lost(only_run(results_dir), out, "local-2", "local-1", killed_at)


def test_two_generator_hosts_over_ssh(hosts_testbed, results_dir):
    r = eiperf("run", "--cluster", hosts_testbed.source, "--workers", "1", "-u", "4", "-t", "4s",
               "--warmup", "0", "--out", str(results_dir), "--no-collect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 on gen1" in r.stdout and "1 on gen2" in r.stdout
    run = only_run(results_dir)
    rec = read_run_record(run)
    rows = assert_rows_are_locusts(run)
    assert set(rows["worker"]) == {"gen1-1", "gen2-1"} and rows["ok"].all()
    # the workers send nginx's upstream addresses; the master names the nodes
    assert set(rows["node"]) == {n.name for n in hosts_testbed.nodes}
    assert {w["host"] for w in rec.generator["workers"]} == {g.host for g in
                                                             hosts_testbed.generators}
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert {"worker_cpu_percent.gen1-1", "worker_cpu_percent.gen2-1"} <= set(metrics["metric"])
    assert (run / "locust" / "worker-gen2-1.log").exists()
    # nothing left on the generator hosts: no worker process, no run folder
    for w in rec.generator["workers"]:
        gen = next(g for g in hosts_testbed.generators if g.name == w["generator"])
        t = transport_for(gen)
        try:
            assert not t.pid_alive(int(w["pid"]))
            assert not t.exists(f"/srv/eiperf-host/home/.eiperf/runs/{rec.id}")
        finally:
            t.close()


def test_a_worker_killed_on_a_generator_host_is_named(hosts_testbed, results_dir):
    out, killed_at = _kill_during_run(
        ["--cluster", hosts_testbed.source, "--workers", "1", "-u", "4", "-t", "10s",
         "--warmup", "0", "--no-collect"], results_dir, "gen2-1", hosts_testbed)
    assert_lost(only_run(results_dir), out, "gen2-1", "gen1-1", killed_at)


@pytest.mark.parametrize("entry, message", [
    ({"host": "10.0.0.9", "ssh_user": "load"}, "generators[0].python is needed"),
    ({"host": "10.0.0.9", "python": "/usr/bin/python3"}, "generators[0].ssh_user is needed"),
    ({"host": "10.0.0.9", "ssh_user": "u", "python": "venv/bin/python"},
     "generators[0].python 'venv/bin/python' must be an absolute path"),
    ({"host": "10.0.0.9", "ssh_user": "u", "python": "/p", "workers": 0},
     "generators[0].workers 0: give 1 or more"),
    ({"host": "10.0.0.9", "ssh_user": "u", "python": "/p", "transport": "rsh"},
     "generators[0].transport is 'rsh'"),
    ({"host": "10.0.0.9", "ssh_user": "u", "python": "/p", "cores": 4},
     "unknown key generators[0].cores"),
])
def test_a_bad_generator_entry_is_one_line(testbed, tmp_path, results_dir, entry, message):
    data = tomllib.loads(Path(testbed.source).read_text())
    path = tmp_path / "cluster.toml"
    path.write_text(tomli_w.dumps({**data, "generators": [entry]}))
    r = eiperf("run", "--cluster", str(path), "-t", "2s", "--out", str(results_dir))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
    assert not results_dir.exists()


def test_a_worker_that_never_connects_fails_the_run_naming_it(hosts_testbed, tmp_path,
                                                              results_dir):
    # gen2's workers dial an address nobody has: the master gives up after --worker-wait
    gen1, gen2 = hosts_testbed.generators
    nowhere = gen2.master_host.rsplit(".", 1)[0] + ".250"
    path = tmp_path / "cluster.toml"
    save_cluster(dataclasses.replace(hosts_testbed, generators=(
        gen1, dataclasses.replace(gen2, master_host=nowhere))), path)
    r = eiperf("run", "--cluster", str(path), "--workers", "1", "-u", "2", "-t", "2s",
               "--warmup", "0", "--worker-wait", "4", "--out", str(results_dir), "--no-collect")
    assert r.returncode == 2, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.FAILED
    assert f"the master never heard from gen2-1 on gen2, dialling {nowhere}:" in rec.error
    assert "Gave up waiting for workers to connect" in rec.error
    for w in rec.generator["workers"]:  # both stopped: gen1-1 by the master, gen2-1 by PID
        t = transport_for(gen1 if w["generator"] == "gen1" else gen2)
        try:
            assert not t.pid_alive(int(w["pid"]))
        finally:
            t.close()
