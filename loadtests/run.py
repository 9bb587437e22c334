"""One headless load test against a cluster, written as a versioned result folder.

`run_load_test` checks the load balancer answers before any load, records the cluster
snapshot, starts the collectors (their own process), runs Locust headless in a subprocess, and
writes results/<run-id>/ (see eicore.results). An `incomplete` run.json is written first, so an
interrupted or crashed run still leaves a valid result marked incomplete; Ctrl-C stops Locust
gracefully and keeps every row recorded so far.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from eicore import __version__
from eicore.cluster import Cluster, cluster_to_dict
from eicore.errors import EiperfError
from eicore.lbclient import LbClient
from eicore.results import (
    LOCUST_DIR,
    METRICS_FILE,
    REQUESTS_FILE,
    TIMELINE_JSON,
    RunRecord,
    RunStatus,
    host_facts,
    new_run_id,
    write_run_record,
)
from loadtests.catalog import SCENARIO_VHOSTS
from loadtests.collectors.jmx import JmxConnection
from loadtests.collectors.process import CollectorProcess, write_generator_pids
from loadtests.messages import soap_envelope
from loadtests.profile import LoadProfile
from loadtests.recorder import merge_request_files

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
Progress = Callable[[str], None]
Finalize = Callable[[Path, RunRecord], RunRecord]
#: reads a cluster's settings from its files for the snapshot ({"nginx": ..., "nodes": ...})
Settings = Callable[[Cluster], dict[str, Any]]


class LoadBalancerUnreachable(EiperfError):
    """The load balancer did not answer before the run started."""


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    record: RunRecord


def preflight(cluster: Cluster, profile: LoadProfile) -> None:
    """One request through every vhost the profile uses; raise before any load if one fails."""
    probes = {"http": ("POST", "/services/SampleProxy"), "https": ("POST", "/services/SampleProxy"),
              "console": ("GET", "/carbon/")}
    vhosts = {SCENARIO_VHOSTS[s] for s, w in profile.weights.items() if w > 0} & set(probes)
    with LbClient(cluster, timeout=5.0) as client:
        for vhost in sorted(vhosts):
            method, path = probes[vhost]
            body = soap_envelope(256) if method == "POST" else None
            r = client.request(vhost, method, path, body)
            if r.error or r.status >= 500 or r.status == 0:
                url = {"http": cluster.load_balancer.http_url,
                       "https": cluster.load_balancer.https_url,
                       "console": cluster.load_balancer.console_url}[vhost]
                why = r.error or f"HTTP {r.status}"
                raise LoadBalancerUnreachable(
                    f"the load balancer's {vhost} vhost ({url}) does not answer ({why}); "
                    "check nginx ('eiperf status') -- no load was started")


def snapshot(cluster: Cluster, settings: Settings | None = None) -> dict[str, Any]:
    """The cluster as the run found it: model, settings from its files (read by `settings`,
    which the caller passes in: tuning's readers), and live JVM flags (JMX).

    JMX logs in with each node's credentials (read from where cluster.toml points, never
    copied here); a node that cannot be read gets {"error": <one line>} instead."""
    snap: dict[str, Any] = {"model": cluster_to_dict(cluster),
                            **(settings(cluster) if settings is not None else {})}
    jvm_args: dict[str, Any] = {}
    try:
        for node in cluster.nodes:
            try:
                with JmxConnection.for_node(node) as jmx:
                    jvm_args[node.name] = {"input_arguments": jmx.input_arguments(),
                                           "heap_max_bytes": jmx.heap()["max"]}
            except EiperfError as e:
                jvm_args[node.name] = {"error": str(e)}
    except EiperfError as e:
        jvm_args = {"error": str(e)}
    snap["jvm_runtime"] = jvm_args
    return snap


def _versions() -> dict[str, str]:
    out = {"eiperf": __version__}
    for pkg in ("locust", "pandas", "pyarrow", "psutil"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _aggregated_rps(stats_csv: Path) -> tuple[int, float] | None:
    """Requests so far and current req/s from Locust's live CSV (written every ~2 s)."""
    try:
        lines = stats_csv.read_text().splitlines()
    except FileNotFoundError:
        return None
    for row in csv.DictReader(lines):
        if row.get("Name") == "Aggregated":
            try:
                return int(row["Request Count"]), float(row["Requests/s"])
            except (KeyError, ValueError):
                return None
    return None


def _terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM (a CI job cancelled, a sweep stopped) ends a run like Ctrl-C: kept, incomplete."""
    raise KeyboardInterrupt


def _stop_process_tree(proc: subprocess.Popen, grace: float) -> None:
    """SIGINT Locust (it stops, flushes and quits), then SIGKILL what is left, by PID.

    SIGINT, not SIGTERM: in headless mode with a load shape, Locust 2.x installs its SIGTERM
    handler only after the shape has finished, so a SIGTERM during a shaped run kills it
    before the recorder can write its last rows. Its KeyboardInterrupt path works in both.
    """
    pids = [proc.pid, *_children(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _window(run_dir: Path, parts: Path, warmup: float, planned: float,
            requests_file: Path) -> tuple[float | None, float | None]:
    """The measured window: Locust's test start + warm-up .. the planned end or test stop.

    The end is capped at test start + warm-up + duration: requests Locust starts while it is
    stopping its users wait on the stop (hundreds of ms seen here) and are not load the cluster
    saw, so they stay in requests.parquet but out of the statistics.
    """
    timeline = parts / TIMELINE_JSON
    if timeline.exists():
        t = json.loads(timeline.read_text())
        shutil.copy2(timeline, run_dir / TIMELINE_JSON)
        return (t["test_start"] + t.get("warmup", warmup),
                min(t["test_stop"], t["test_start"] + planned))
    import pyarrow.parquet as pq

    ts = pq.read_table(requests_file, columns=["ts"]).column("ts").to_pylist()
    if not ts:
        return None, None
    return min(ts) + warmup, max(ts)


def run_load_test(
    cluster: Cluster, profile: LoadProfile, out_dir: Path, slo: list[str] | None = None,
    finalize: Finalize | None = None, progress: Progress = print, collect: bool = True,
    interval: float = 1.0, run_id: str | None = None, labels: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> RunOutcome:
    """Run one load test and write its result folder; returns the folder and final record.

    `finalize` fills in the figures of the finished run (analysis.record.record_figures);
    `settings` reads the cluster's settings for the snapshot (tuning.settings.cluster_settings).
    Both are passed in by the caller, so this layer imports neither.
    """
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file (Locust reads it)")
    preflight(cluster, profile)
    run_id = run_id or new_run_id()
    run_dir = Path(out_dir).absolute() / run_id  # Locust runs with cwd=run_dir
    parts = run_dir / "parts"
    locust_dir = run_dir / LOCUST_DIR
    for d in (parts, locust_dir):
        d.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record = RunRecord(
        id=run_id, status=RunStatus.INCOMPLETE, started_at=started, ended_at=None,
        measure_start=None, measure_end=None,
        load={**profile.as_dict(), **({"labels": labels} if labels else {})},
        cluster=snapshot(cluster, settings), slo=list(slo or []),
        generator={"processes": profile.processes, "cpus": os.cpu_count()},
        versions=_versions(), host=host_facts(),
    )
    write_run_record(run_dir, record)
    progress(f"run {run_id}: {profile.users} users, {profile.shape}, "
             f"{profile.warmup:g}s warm-up + {profile.duration:g}s -> {run_dir}")

    collector = None
    pids_file = run_dir / "generator.pids"
    write_generator_pids(pids_file, [os.getpid()])
    if collect:
        collector = CollectorProcess(cluster.source, run_dir / METRICS_FILE, interval=interval,
                                     generator_pids_file=str(pids_file))
        collector.start()

    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--cluster", cluster.source, "--eiperf-out", str(parts),
            "--csv", str(locust_dir / "stats"), "--html", str(locust_dir / "report.html"),
            "--exit-code-on-error", "0", "--loglevel", "WARNING", "--stop-timeout", "5",
            *profile.locust_args()]
    status, error = RunStatus.COMPLETE, None
    log = open(locust_dir / "locust.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=run_dir)
    deadline = time.monotonic() + profile.total_seconds + 120
    next_note = time.monotonic() + 5
    old_term = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        while proc.poll() is None:
            write_generator_pids(pids_file, [proc.pid, *_children(proc.pid)])
            if time.monotonic() > deadline:
                status, error = RunStatus.INCOMPLETE, "Locust did not stop in time; it was killed"
                break
            if time.monotonic() > next_note:
                next_note += 5
                live = _aggregated_rps(locust_dir / "stats_stats.csv")
                elapsed = time.time() - started
                extra = f", {live[0]:,} requests, {live[1]:,.0f} req/s" if live else ""
                progress(f"  {elapsed:4.0f}/{profile.total_seconds:.0f} s{extra}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        status, error = RunStatus.INCOMPLETE, "interrupted (Ctrl-C)"
        progress("interrupted: stopping Locust, keeping what was recorded ...")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        _stop_process_tree(proc, grace=15)
        log.close()
        if collector is not None:
            collector.stop()
    if proc.returncode not in (0, -signal.SIGINT) and status is RunStatus.COMPLETE:
        status, error = RunStatus.FAILED, f"Locust exited with {proc.returncode}"

    requests_file = run_dir / REQUESTS_FILE
    rows = merge_request_files(parts, requests_file)
    measure_start, measure_end = _window(run_dir, parts, profile.warmup, profile.total_seconds,
                                          requests_file)
    shutil.rmtree(parts, ignore_errors=True)
    if rows == 0 and status is RunStatus.COMPLETE:
        status = RunStatus.FAILED
        error = "no request was recorded; see locust/locust.log"
    if status is RunStatus.FAILED:
        tail = (locust_dir / "locust.log").read_text(errors="replace").strip().splitlines()[-5:]
        error = f"{error}: {' | '.join(tail)}" if tail else error
    record = replace(record, status=status, ended_at=time.time(), measure_start=measure_start,
                     measure_end=measure_end, error=error,
                     generator={**record.generator, "requests": rows})
    if finalize is not None:
        record = finalize(run_dir, record)
    write_run_record(run_dir, record)
    return RunOutcome(run_dir, record)
