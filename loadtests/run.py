"""One headless load test against a cluster, written as a versioned result folder.

`run_load_test` checks the load balancer answers and every load generator fits before any
load, records the cluster snapshot, starts the collectors (their own process), runs Locust
headless in a subprocess -- standalone, or as Locust's master with its workers on this machine
or the cluster's `[[generators]]` (`loadtests.generators`) -- and writes results/<run-id>/ (see
eicore.results). An `incomplete` run.json is written first, so an interrupted or crashed run
still leaves a valid result marked incomplete; Ctrl-C stops Locust gracefully and keeps every
row recorded so far; a worker lost mid-run leaves the run incomplete, naming it.
"""

from __future__ import annotations

import csv
import json
import os
import select
import shutil
import signal
import socket
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
    DoctorSummary,
    RunRecord,
    RunStatus,
    WorkerInfo,
    host_facts,
    new_run_id,
    write_run_record,
)
from loadtests.arrivals import ArrivalCounts, RateProfile
from loadtests.catalog import SCENARIO_VHOSTS
from loadtests.collectors.jmx import JmxConnection
from loadtests.collectors.process import CollectorProcess, write_generator_pids
from loadtests.gc_logs import collect_gc_logs
from loadtests.generators import (
    LOCAL,
    LOCUSTFILE,
    WORKER_WAIT_S,
    WorkerFleet,
    WorkerPlan,
    plan_workers,
)
from loadtests.messages import soap_envelope
from loadtests.profile import LoadProfile
from loadtests.recorder import merge_request_files
from loadtests.worker_reports import WORKER_CPU_FILE, read_workers

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


#: The file in parts/ whose existence lets Locust start the load (--eiperf-start-gate).
START_GATE = "start.gate"


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
                                           "heap_max_bytes": jmx.heap()["max"],
                                           **_java_runtime(jmx)}
            except EiperfError as e:
                jvm_args[node.name] = {"error": str(e)}
    except EiperfError as e:
        jvm_args = {"error": str(e)}
    snap["jvm_runtime"] = jvm_args
    return snap


def _java_runtime(jmx: JmxConnection) -> dict[str, str]:
    """The node's java.vm.vendor and java.version (Runtime MBean), for comparing runs made on
    different JDKs; what cannot be read is left out."""
    try:
        props = jmx.attribute("java.lang:type=Runtime", "SystemProperties")
        out = {}
        for key, name in (("java.vm.vendor", "java_vm_vendor"), ("java.version", "java_version")):
            row = props.get([key])  # TabularData keyed by the property name
            if row is not None:
                out[name] = str(row.get("value"))
        return out
    except Exception:  # an MBean server without SystemProperties: the snapshot goes on
        return {}


def _versions() -> dict[str, str]:
    out = {"eiperf": __version__}
    for pkg in ("locust", "pandas", "pyarrow", "psutil"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _children(pid: int) -> list[int]:
    """Every descendant of `pid`. Read from the kernel's per-thread lists of children
    (/proc/<pid>/task/<tid>/children): psutil's `children()` reads every process of the
    machine to find them (~10 ms per scan with 240 processes here, ~0.5 % of a core at
    one scan per 2 s during a run). psutil where the kernel has no such lists."""
    if not _PROC_CHILDREN:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:  # gone meanwhile
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


#: whether this kernel lists each thread's children in /proc (CONFIG_PROC_CHILDREN)
_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


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


def _window(run_dir: Path, parts: Path, warmup: float, duration: float,
            requests_file: Path) -> tuple[float | None, float | None]:
    """The measured window: Locust's test start + warm-up .. the planned end or test stop.
    The warm-up is the one timeline.json records (an automatic one's actual length).

    The end is capped at test start + warm-up + duration: requests Locust starts while it is
    stopping its users wait on the stop (hundreds of ms seen here) and are not load the cluster
    saw, so they stay in requests.parquet but out of the statistics.
    """
    timeline = parts / TIMELINE_JSON
    if timeline.exists():
        t = json.loads(timeline.read_text())
        shutil.copy2(timeline, run_dir / TIMELINE_JSON)
        start = t["test_start"] + t.get("warmup", warmup)
        return start, min(t["test_stop"], start + duration)
    import pyarrow.parquet as pq

    ts = pq.read_table(requests_file, columns=["ts"]).column("ts").to_pylist()
    if not ts:
        return None, None
    return min(ts) + warmup, max(ts)


def _warmup_text(profile: LoadProfile) -> str:
    if profile.warmup_auto:
        return f"warm-up until throughput is stable (at most {profile.warmup_max:g}s)"
    return f"{profile.warmup:g}s warm-up"


def _auto_warmup_load(run_dir: Path, load: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """run.json's load with the automatic warm-up's actual seconds (from timeline.json), and
    a progress line saying how it ended."""
    t = _timeline(run_dir)
    took, stable = t.get("warmup"), t.get("warmup_stable")
    if took is None:
        return load
    how = {True: "throughput stable", False: f"not stable within its {load.get('warmup_max')}s "
           "bound; measured anyway", None: "the test stopped during it"}[stable]
    progress(f"  warm-up took {took:.1f} s (auto: {how})")
    return {**load, "warmup": round(float(took), 3), "warmup_stable": stable}


def _lost_error(workers: list[dict[str, Any]], test_start: float | None) -> str | None:
    """One sentence per worker lost mid-run: which, where, when."""
    lost = [w for w in workers if w.get("lost_at")]
    if not lost:
        return None
    parts = []
    for w in lost:
        at = float(w["lost_at"])
        into = f"{at - test_start:.1f} s into the load, " if test_start else ""
        pid = f", pid {w['pid']}" if w.get("pid") else ""
        parts.append(f"worker {w['name']} ({w.get('generator') or w.get('host')}{pid}) was lost "
                     f"{into}last heard at {time.strftime('%H:%M:%S', time.localtime(at))}")
    return ("; ".join(parts) + ": the run went on with the other workers; the rows it sent "
            "before are kept")


def _add_worker_cpu(parts: Path, metrics_file: Path) -> None:
    """Append the workers' own CPU samples (from the master) to metrics.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = parts / WORKER_CPU_FILE
    try:
        new = pq.read_table(src)
    except (OSError, pa.ArrowInvalid):
        return
    if not new.num_rows:
        return
    tables = [new]
    if metrics_file.exists():
        try:
            tables.insert(0, pq.read_table(metrics_file))
        except (OSError, pa.ArrowInvalid):
            pass
    tmp = metrics_file.with_name(f".{metrics_file.name}.tmp")
    pq.write_table(pa.concat_tables(tables, promote_options="default"), tmp, compression="zstd")
    os.replace(tmp, metrics_file)


def _worker_infos(started: list[WorkerInfo], reported: list[dict[str, Any]],
                  exits: dict[str, float], test_start: float | None) -> list[WorkerInfo]:
    """The workers as started (name, generator, host, pid) with what the master saw of each
    (rows, lost_at); a worker the master never heard from has 0 rows. A worker is lost when
    the master counted it missing, or when its process ended after the test started and
    before it stopped (`exits`: the master may not have noticed yet)."""
    by_name = {str(r.get("name")): r for r in reported}
    out: list[WorkerInfo] = []
    for info in started:
        seen = by_name.pop(info["name"], {})
        lost_at = seen.get("lost_at")
        exited = exits.get(info["name"])
        if lost_at is None and exited is not None and test_start and exited > test_start:
            lost_at = seen.get("last_heard") or exited
        out.append({**info, "pid": seen.get("pid") or info.get("pid"),
                    "rows": int(seen.get("rows") or 0), "lost_at": lost_at})
    for name, seen in sorted(by_name.items()):  # a worker nobody here started (plain Locust)
        out.append({"name": name, "generator": "", "host": str(seen.get("host") or ""),
                    "pid": seen.get("pid"), "rows": int(seen.get("rows") or 0),
                    "lost_at": seen.get("lost_at")})
    return out


def run_load_test(
    cluster: Cluster, profile: LoadProfile, out_dir: Path, slo: list[str] | None = None,
    finalize: Finalize | None = None, progress: Progress = print, collect: bool = True,
    interval: float = 1.0, run_id: str | None = None, labels: dict[str, Any] | None = None,
    settings: Settings | None = None, master_host: str | None = None,
    master_port: int | None = None, worker_wait: float = WORKER_WAIT_S,
    web_port: int | None = None, preflight_notes: DoctorSummary | None = None,
) -> RunOutcome:
    """Run one load test and write its result folder; returns the folder and final record.

    The workers go where `loadtests.generators.plan_workers` says (this machine, or the
    cluster's `[[generators]]`, checked before any load); `master_host` / `master_port` are
    the address generator hosts dial to reach the Locust master here, and its port;
    `worker_wait` how long (s) the master waits for every worker to connect.
    `web_port`: Locust's own web UI shows the run live on 127.0.0.1 at that port (the run is
    recorded the same; its stop button ends it early, recorded as stopped by the user).
    `finalize` fills in the figures of the finished run (analysis.record.record_figures);
    `settings` reads the cluster's settings for the snapshot (tuning.settings.cluster_settings).
    Both are passed in by the caller, so this layer imports neither. `preflight_notes`: the
    configuration checks taken before the load (`eiperf doctor`'s summary), kept as `doctor`.
    """
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file (Locust reads it)")
    preflight(cluster, profile)
    if web_port is not None:
        _check_web_port(web_port)
    plan = plan_workers(cluster, profile.processes, max(profile.users, profile.spike_users or 0),
                        master_host, master_port, progress)
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
        cluster={"model": cluster_to_dict(cluster)},  # the snapshot follows once Locust starts
        slo=list(slo or []),
        generator={"processes": plan.total, "cpus": os.cpu_count(), **plan.as_dict(),
                   "workers": []},
        versions=_versions(), host=host_facts(),
        doctor=preflight_notes or {},  # type: ignore[typeddict-item]
    )
    write_run_record(run_dir, record)
    progress(f"run {run_id}: {profile.users} users, {profile.shape}, "
             f"{_warmup_text(profile)} + {profile.duration:g}s -> {run_dir}")
    progress(f"  generators: {plan.describe()}")

    collector = None
    pids_file = run_dir / "generator.pids"
    write_generator_pids(pids_file, [os.getpid()])
    gate = parts / START_GATE
    if collect:
        # Started side by side with Locust (each takes ~1-2 s to get going); the load waits at
        # the gate until the collector has sampled once.
        collector = CollectorProcess(cluster.source, run_dir / METRICS_FILE, interval=interval,
                                     generator_pids_file=str(pids_file))
        collector.spawn()
    else:
        gate.touch()

    load_args = [*profile.locust_args(),
                 *(["--open-streams", str(plan.total)] if profile.open else [])]
    argv = [*_locust_argv(plan, cluster, load_args, parts, locust_dir, worker_wait, web_port),
            "--eiperf-start-gate", str(gate)]
    if web_port is not None:
        progress(f"  live: {_web_url(web_port)}  (Locust's web UI; its stop button ends the run)")
    fleet = None
    if plan.single:
        workers: list[WorkerInfo] = [{"name": f"{LOCAL}-1", "generator": LOCAL,
                                      "host": plan.machines[0].host, "pid": None, "rows": 0,
                                      "lost_at": None}]
    else:
        fleet = WorkerFleet(plan, cluster, load_args, run_id, locust_dir)
        workers = []
    status, error = RunStatus.COMPLETE, None
    log = open(locust_dir / "locust.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=run_dir)
    deadline = time.monotonic() + profile.total_seconds + 120 + (0 if plan.single
                                                                  else worker_wait)
    next_note = time.monotonic() + 5
    exit_watch = ExitWatch(proc)
    old_term = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    early: list[str] = []
    try:
        if fleet is not None:
            fleet.start()
            workers = fleet.infos()
            record = replace(record, generator={**record.generator, "workers": workers})
            write_run_record(run_dir, record)  # still incomplete: says which workers run where
        else:
            workers[0]["pid"] = proc.pid
        # while Locust and the collector start up: the cluster as the run found it (JMX)
        record = replace(record, cluster=snapshot(cluster, settings))
        write_run_record(run_dir, record)
        if collector is not None:
            collector.wait_ready()
            gate.touch()
        last_pids: list[int] = []
        next_scan, fast_until = 0.0, time.monotonic() + 5
        while proc.poll() is None:
            # The generator's PIDs for the collector: scanned every 0.5 s while Locust spawns
            # its processes, then every 2 s, and written only when they change (the scan and
            # the rewrite were ~1.5 % of a core on every run).
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + (0.5 if time.monotonic() < fast_until else 2.0)
                local = fleet.local_pids() if fleet is not None else []
                pids = sorted({proc.pid, *_children(proc.pid), *local})
                if pids != last_pids:
                    write_generator_pids(pids_file, pids)
                    last_pids = pids
            if fleet is not None and not (parts / TIMELINE_JSON).exists():  # test not stopped
                for name in fleet.poll():
                    progress(f"  worker {name} exited while the test runs")
            if time.monotonic() > deadline:
                status, error = RunStatus.INCOMPLETE, "Locust did not stop in time; it was killed"
                break
            if time.monotonic() > next_note:
                next_note += 5
                live = _aggregated_rps(locust_dir / "stats_stats.csv")
                elapsed = time.time() - started
                extra = f", {live[0]:,} requests, {live[1]:,.0f} req/s" if live else ""
                progress(f"  {elapsed:4.0f}/{profile.total_seconds:.0f} s{extra}")
            exit_watch.wait(0.5)  # not a sleep: the run goes on the moment Locust exits
        if fleet is not None and proc.returncode not in (0, None):
            early = _unconnected(fleet, read_workers(parts))
    except KeyboardInterrupt:
        status, error = RunStatus.INCOMPLETE, "interrupted (Ctrl-C)"
        progress("interrupted: stopping Locust, keeping what was recorded ...")
    except EiperfError as e:  # a generator refused its workers: no load ran
        status, error = RunStatus.FAILED, str(e)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        exit_watch.close()
        _stop_process_tree(proc, grace=15)
        log.close()
        if fleet is not None:  # told to quit by a master that ran; else nobody tells them
            fleet.stop(grace=10 if proc.returncode in (0, -signal.SIGINT) else 2)
        if collector is not None:
            collector.stop()
    if proc.returncode not in (0, -signal.SIGINT) and status is RunStatus.COMPLETE:
        status, error = RunStatus.FAILED, f"Locust exited with {proc.returncode}"
        if early:
            error += (f"; the master never heard from {'; '.join(early)} (check "
                      "master_host / --master-host, firewalls, and locust/worker-*.log)")

    requests_file = run_dir / REQUESTS_FILE
    rows = merge_request_files(parts, requests_file)
    measure_start, measure_end = _window(run_dir, parts, profile.warmup, profile.duration,
                                          requests_file)
    if profile.warmup_auto:
        record = replace(record, load=_auto_warmup_load(run_dir, record.load, progress))
    if fleet is not None:
        workers, status, error = _settle_workers(fleet, workers, run_dir, parts, status, error)
    else:
        workers[0]["rows"] = rows
    arrivals = _arrivals(run_dir, parts, profile, measure_start, measure_end) if profile.open \
        else None
    shutil.rmtree(parts, ignore_errors=True)
    if rows == 0 and status is RunStatus.COMPLETE:
        status = RunStatus.FAILED
        error = "no request was recorded; see locust/locust.log"
    if status is RunStatus.FAILED:
        tail = (locust_dir / "locust.log").read_text(errors="replace").strip().splitlines()[-5:]
        error = f"{error}: {' | '.join(tail)}" if tail else error
    web = _web_record(run_dir, web_port, profile, status, progress) if web_port else None
    record = replace(record, status=status, ended_at=time.time(), measure_start=measure_start,
                     measure_end=measure_end, error=error,
                     generator={**record.generator, "requests": rows, "workers": workers,
                                **({"arrivals": arrivals} if arrivals is not None else {}),
                                **({"web": web} if web is not None else {})})
    collect_gc_logs(cluster, run_dir, measure_start, measure_end, since=started, progress=progress)
    if finalize is not None:
        record = finalize(run_dir, record)
    write_run_record(run_dir, record)
    return RunOutcome(run_dir, record)


def _web_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


def _check_web_port(port: int) -> None:
    """One clear line before anything is written when the web UI's port is taken (Locust
    would only log it and run without its UI)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Locust binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise EiperfError(f"--web-port {port}: 127.0.0.1:{port} is taken ({e.strerror}); "
                              "pick another port") from None


def _web_record(run_dir: Path, port: int, profile: LoadProfile, status: RunStatus,
                progress: Progress) -> dict[str, Any]:
    """run.json ``generator.web``: where the live view was, and whether its stop button ended
    the test before its planned end (then the run is complete up to that moment)."""
    out: dict[str, Any] = {"url": _web_url(port), "stopped_by_user": False}
    t = _timeline(run_dir)
    try:
        ran = float(t["test_stop"]) - float(t["test_start"])
        planned = float(t.get("warmup", profile.warmup)) + profile.duration
    except (KeyError, TypeError, ValueError):
        return out
    if status is RunStatus.COMPLETE and ran < planned - 1.0:
        out.update(stopped_by_user=True, stopped_after_s=round(ran, 3))
        progress(f"stopped from the web UI after {ran:.1f} of {planned:g} s: recorded up to then")
    return out


class ExitWatch:
    """Waits for a child's exit without polling: its pidfd (Linux 5.3+) becomes readable when
    it exits. `Popen.wait(timeout)` polls every 50 ms instead, ~0.4 % of a core for the whole
    run on the generator machine (bench/bench_generator.py); it stays the fallback."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        try:
            self.fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux, an old kernel, or a seccomp filter
            self.fd = None

    def wait(self, timeout: float) -> None:
        """Return when the child has exited or `timeout` seconds have passed."""
        if self.fd is not None:
            select.select([self.fd], [], [], timeout)
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _locust_argv(plan: WorkerPlan, cluster: Cluster, load_args: list[str], parts: Path,
                 locust_dir: Path, worker_wait: float, web_port: int | None = None
                 ) -> list[str]:
    """The command line of the Locust process this machine runs: standalone for a single
    worker here, else the master waiting for the plan's workers; `load_args` are the
    profile's Locust options. With `web_port`, Locust's web UI on loopback, the test
    started at once and Locust gone as soon as it stops (--autostart --autoquit 0)."""
    assert cluster.source
    mode = ["--headless"] if web_port is None else [
        "--autostart", "--autoquit", "0", "--web-host", "127.0.0.1", "--web-port", str(web_port)]
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *mode,
            "--cluster", cluster.source, "--eiperf-out", str(parts),
            "--csv", str(locust_dir / "stats"), "--html", str(locust_dir / "report.html"),
            "--exit-code-on-error", "0", "--loglevel", "WARNING", "--stop-timeout", "5",
            *load_args]
    if plan.single:
        return [*argv, "--eiperf-worker", f"{LOCAL}-1"]
    # --enable-rebalancing: the users of a worker lost mid-run move to the others
    return [*argv, "--master", "--master-bind-host", plan.bind_host,
            "--master-bind-port", str(plan.port), "--expect-workers", str(plan.total),
            "--expect-workers-max-wait", f"{worker_wait:g}", "--enable-rebalancing"]


def _settle_workers(fleet: WorkerFleet, started: list[WorkerInfo], run_dir: Path, parts: Path,
                    status: RunStatus, error: str | None
                    ) -> tuple[list[WorkerInfo], RunStatus, str | None]:
    """After a master/worker run: each worker's rows and fate, their CPU samples into
    metrics.parquet, and the run incomplete (saying which and when) if one was lost."""
    test_start = _test_start(run_dir)
    workers = _worker_infos(started, read_workers(parts), fleet.exits(), test_start)
    _add_worker_cpu(parts, run_dir / METRICS_FILE)
    lost = _lost_error(workers, test_start)
    if lost and status is RunStatus.COMPLETE:
        return workers, RunStatus.INCOMPLETE, lost
    return workers, status, f"{error}; {lost}" if lost else error


def _unconnected(fleet: WorkerFleet, reported: list[dict[str, Any]]) -> list[str]:
    """The workers the master never heard from, each with where it dialled and its state
    (still running, or exited with its log's last line)."""
    heard = {str(r.get("name")) for r in reported}
    gone = dict(fleet.exited_early())
    return [f"{w.name} on {w.machine.name}, dialling {w.machine.dial}:{fleet.plan.port}, "
            + (f"exited: {gone[w.name]}" if w.name in gone else "still running")
            for w in fleet.workers if w.name not in heard]


def _arrivals(run_dir: Path, parts: Path, profile: LoadProfile, start: float | None,
              end: float | None) -> dict[str, Any]:
    """An open run's arrival counts, all processes added up (from the workers' last reports,
    workers.json, with a master; else from the single process's timeline.json), and the
    rate its profile meant over the measured window (`intended_rps`)."""
    timeline = _timeline(run_dir)
    reported = [w["arrivals"] for w in read_workers(parts) if w.get("arrivals")]
    if not reported:
        own = timeline.get("arrivals")
        reported = [own] if own else []
    out: dict[str, Any] = dict(ArrivalCounts.total(reported))
    test_start = _start_of(timeline)
    if test_start is not None and start is not None and end is not None and end > start:
        rates = RateProfile.parse(profile.rate_profile or str(profile.arrival_rate))
        out["intended_rps"] = rates.expected(start - test_start, end - test_start) / (end - start)
    return out


def _timeline(run_dir: Path) -> dict[str, Any]:
    """The run's timeline.json (the locustfile's record of the test); {} when there is none."""
    try:
        t = json.loads((run_dir / TIMELINE_JSON).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return t if isinstance(t, dict) else {}


def _start_of(timeline: dict[str, Any]) -> float | None:
    try:
        return float(timeline["test_start"])
    except (KeyError, ValueError, TypeError):
        return None


def _test_start(run_dir: Path) -> float | None:
    return _start_of(_timeline(run_dir))
