"""The collector process: samples every collector on a fixed schedule, away from Locust.

`CollectorProcess` (used by `eiperf run`) starts `python -m loadtests.collectors.process` in
its own session -- never inside Locust's event loop, and out of reach of the terminal's Ctrl-C,
which the caller handles -- and stops it with SIGTERM (then SIGKILL by PID). The child:

- builds PsutilCollector, JmxCollector, NginxCollector and, when the cluster file reaches a
  node or the load balancer over SSH, ProcCollector (those hosts' /proc) from the cluster file;
- samples them at t0 + k * interval on the monotonic clock (no drift; a round that overruns
  skips the ticks it missed and counts them), all rows of a round sharing one `ts`;
- writes the rows through `MetricsSink` (spool every `flush_s`, Parquet at the end);
- reads the generator PIDs (Locust master and workers, one per line) from a file the caller
  rewrites whenever they change;
- records its own cost as node "collector", source "collector": `cpu_seconds` (cumulative,
  all threads including the embedded JVM), `rss_bytes`, `round_ms.<collector>` (wall time of
  that collector's round), `gaps.<collector>` and `missed_ticks` (cumulative);
- on SIGTERM or SIGINT, or when its parent dies, flushes, writes the Parquet file and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from eicore.cluster import Cluster, load_cluster
from eicore.errors import ConfigError, EiperfError
from eicore.fsutil import atomic_write_text
from loadtests.collectors.base import Collector, Sample, log
from loadtests.collectors.jmx_collector import JmxCollector
from loadtests.collectors.nginx_collector import NginxCollector
from loadtests.collectors.proc_collector import ProcCollector, ssh_targets
from loadtests.collectors.psutil_collector import PsutilCollector
from loadtests.collectors.sink import MetricsSink, finish_spool, spool_path

READY = b"ready\n"
SELF_NODE = "collector"


class CollectorError(EiperfError):
    """The collector process could not be started."""


# --------------------------------------------------------------------------- the caller's side


def write_generator_pids(path: str | os.PathLike[str], pids: Iterable[int]) -> None:
    """Atomically rewrite the generator PID file (one PID per line)."""
    atomic_write_text(Path(path), "".join(f"{int(p)}\n" for p in sorted(set(pids))))


class CollectorProcess:
    """Run the collectors in a child process for the length of a load test.

    `start()` returns once the child sampled its first round (or raises CollectorError with its
    last log line) -- or in two steps, `spawn()` then `wait_ready()`; `stop()` asks it to finish and, if it does not within `timeout`, kills it
    by PID -- either way the metrics file is left valid (rebuilt from the spool if need be).
    Its log goes to `log_path` (default: the metrics file's name + ".log").
    """

    def __init__(
        self,
        cluster_file: str | os.PathLike[str],
        out_path: str | os.PathLike[str],
        interval: float = 1.0,
        generator_pids_file: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        flush_s: float = 10.0,
    ) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ConfigError(f"collector interval {interval!r}: give a number of seconds above 0")
        self.cluster_file = Path(cluster_file).absolute()
        self.out_path = Path(out_path).absolute()
        self.interval = interval
        self.generator_pids_file = Path(generator_pids_file).absolute() if generator_pids_file else None
        self.log_path = Path(log_path) if log_path else self.out_path.with_name(self.out_path.name + ".log")
        self.flush_s = flush_s
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "loadtests.collectors.process",
                "--cluster", str(self.cluster_file), "--out", str(self.out_path),
                "--interval", repr(self.interval), "--flush-s", repr(self.flush_s)]
        if self.generator_pids_file:
            argv += ["--generator-pids-file", str(self.generator_pids_file)]
        return argv

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until it has sampled once."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the child without waiting for it (`wait_ready` does): a run starts Locust
        meanwhile, whose own start-up takes about as long."""
        if self._proc is not None:
            raise CollectorError("the collector process was already started")
        load_cluster(self.cluster_file)  # a bad file: one clear ConfigError, nothing started
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                env=env, start_new_session=True, close_fds=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the spawned child has sampled once; CollectorError (the child killed)
        when it exits first or takes longer than `timeout` s."""
        if self._proc is None or self._proc.stdout is None or self._proc.stdout.closed:
            raise CollectorError("the collector process was not spawned (or was waited for)")
        try:
            ready = _read_line(self._proc.stdout, timeout)
        finally:
            self._proc.stdout.close()
        if ready != READY:
            self._kill()
            last = _last_line(self.log_path)
            why = "did not start in time" if self._proc.returncode is None else "exited"
            raise CollectorError(f"the collector process {why}: {last} (log: {self.log_path})")

    def set_generator_pids(self, pids: Iterable[int]) -> None:
        """Tell the running collector which processes are the load generator."""
        if self.generator_pids_file is None:
            raise ValueError("CollectorProcess was created without generator_pids_file")
        write_generator_pids(self.generator_pids_file, pids)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask the child to finish (SIGTERM); kill it by PID after `timeout` s. Returns its exit
        code (0 after a graceful stop) and leaves a valid metrics file behind."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("collector process %d did not stop in %.0f s; killing it",
                            proc.pid, timeout)
                self._kill()
        self.returncode = proc.returncode
        if spool_path(self.out_path).exists():  # it died before writing the Parquet file
            rows = finish_spool(self.out_path)
            log.warning("collector process ended with %s; %d rows recovered from its spool",
                        proc.returncode, rows)
        return self.returncode

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # by PID (Popen.kill sends SIGKILL to proc.pid)
            proc.wait(10)

    def __enter__(self) -> CollectorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(stream, timeout: float) -> bytes:
    """One line from a pipe, or what arrived before `timeout` / EOF."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


# --------------------------------------------------------------------------- the child's side


def build_collectors(cluster: Cluster, generator_pids=None) -> list[Collector]:
    """The collectors for a cluster: psutil, JMX, nginx (when it has a status URL) and proc
    (when it reaches a node or the load balancer over SSH)."""
    collectors: list[Collector] = [PsutilCollector(cluster, generator_pids), JmxCollector(cluster)]
    if cluster.load_balancer.status_url:
        collectors.append(NginxCollector(cluster))
    if ssh_targets(cluster):
        collectors.append(ProcCollector(cluster))
    return collectors


class PidFile:
    """The generator PIDs in a file the caller rewrites; re-read only when it changed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._pids: set[int] = set()

    def __call__(self) -> set[int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._pids = None, set()
            return self._pids
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            text = self.path.read_text(errors="replace")
            self._pids = {int(w) for w in text.split() if w.isdigit()}
            self._stamp = stamp
        return self._pids


class SamplingLoop:
    """Sample `collectors` every `interval` s into `sink` until `stop()` (or a signal)."""

    def __init__(self, collectors: list[Collector], sink: MetricsSink, interval: float) -> None:
        self.collectors = collectors
        self.sink = sink
        self.interval = interval
        self.rounds = 0
        self.missed_ticks = 0
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._parent = os.getppid()
        self._last_ts = -math.inf
        self._errors_logged: set[str] = set()

    def stop(self, *_: object) -> None:
        """Finish after the current round (safe to call from a signal handler)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run(self, on_first_round=None) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stopping:
            self._sample_round()
            if k == 0 and on_first_round is not None:
                on_first_round()
            k += 1
            late = time.monotonic() - (t0 + k * self.interval)
            if late > 0:  # overran: skip to the next tick still ahead
                skipped = int(late // self.interval) + 1
                self.missed_ticks += skipped
                k += skipped
            self._sleep_until(t0 + k * self.interval)
            if os.getppid() != self._parent:
                log.warning("the process that started the collector is gone; stopping")
                self._stopping = True

    def _sleep_until(self, deadline: float) -> None:
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready = select.select([self._wake_r], [], [], left)[0]
            if ready:
                os.read(self._wake_r, 64)

    def _sample_round(self) -> None:
        now = max(time.time(), self._last_ts + 1e-6)  # strictly increasing even if the clock steps
        self._last_ts = now
        rows: list[Sample] = []
        own: list[Sample] = []
        for c in self.collectors:
            began = time.perf_counter()
            try:
                rows += c.sample(now)
            except Exception:  # a bug in one collector must not end the collection
                if c.name not in self._errors_logged:
                    self._errors_logged.add(c.name)
                    log.exception("%s: sampling failed", c.name)
                c.gaps += 1
            cost_ms = (time.perf_counter() - began) * 1000.0
            own.append(Sample(now, SELF_NODE, SELF_NODE, f"round_ms.{c.name}", cost_ms))
            own.append(Sample(now, SELF_NODE, SELF_NODE, f"gaps.{c.name}", float(c.gaps)))
        times = os.times()
        own.append(Sample(now, SELF_NODE, SELF_NODE, "cpu_seconds", times.user + times.system))
        own.append(Sample(now, SELF_NODE, SELF_NODE, "rss_bytes", float(_own_rss())))
        own.append(Sample(now, SELF_NODE, SELF_NODE, "missed_ticks", float(self.missed_ticks)))
        self.sink.add(rows)
        self.sink.add(own)
        self.sink.maybe_flush()
        self.rounds += 1


def _own_rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return psutil.Process().memory_info().rss


def run(
    cluster: Cluster,
    out_path: str | os.PathLike[str],
    interval: float = 1.0,
    generator_pids_file: str | os.PathLike[str] | None = None,
    flush_s: float = 10.0,
    on_ready=None,
) -> int:
    """Collect until SIGTERM/SIGINT (or the parent's death); returns the rows written."""
    pids = PidFile(generator_pids_file) if generator_pids_file else None
    collectors = build_collectors(cluster, pids)
    sink = MetricsSink(out_path, flush_s=flush_s)
    loop = SamplingLoop(collectors, sink, interval)
    handlers = {s: signal.signal(s, loop.stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for c in collectors:
            c.start()
        # The embedded JVM is told to leave signals alone (-Xrs); set ours again anyway.
        for s in handlers:
            signal.signal(s, loop.stop)
        loop.run(on_first_round=on_ready)
    finally:
        for c in collectors:
            try:
                c.close()
            except Exception:
                log.exception("%s: close failed", c.name)
        rows = sink.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    log.info("collector stopped after %d rounds: %d rows in %s (%d missed ticks)",
             loop.rounds, rows, out_path, loop.missed_ticks)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.collectors.process",
        description="Sample node, host, generator and nginx metrics into a Parquet file "
                    "until SIGTERM/SIGINT.")
    parser.add_argument("--cluster", required=True, help="cluster.toml of the cluster to watch")
    parser.add_argument("--out", required=True, help="metrics Parquet file to write")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--generator-pids-file", help="file with the load generator's PIDs")
    parser.add_argument("--flush-s", type=float, default=10.0,
                        help="seconds between appends to the crash-safe spool")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s collector[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)  # not two lines per SSH connect
    if not (args.interval > 0 and math.isfinite(args.interval)):
        parser.error(f"--interval {args.interval}: must be a positive number of seconds")
    try:
        cluster = load_cluster(args.cluster)
    except EiperfError as e:
        log.error("%s", e)
        return 2

    def ready() -> None:
        os.write(1, READY)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the caller stops reading: later prints must not hit a closed pipe
        os.close(devnull)

    try:
        run(cluster, args.out, args.interval, args.generator_pids_file, args.flush_s, ready)
    except Exception:
        log.exception("the collector failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
