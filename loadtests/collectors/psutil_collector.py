"""`PsutilCollector`: the nodes' JVM processes, the host, and the load generator, from the OS.

Series (source "psutil"); every `cpu_percent` here means 100 = one core busy, like `top`:

- per node on this host (node = node name): `cpu_percent`, `rss_bytes`, `threads`,
  `open_files` (all file descriptors: files, sockets, pipes -- what `ulimit -n` bounds),
  `tcp_connections` (ESTABLISHED TCP sockets the JVM holds), `pid`;
- node "host": `cpu_percent` (all cores together: 100 x cores when all are busy), `cpus`,
  `load1`, `mem_used_bytes` (total - available), `mem_total_bytes`, `net_sent_bytes_per_s`,
  `net_recv_bytes_per_s` (all interfaces, loopback included);
- node "generator": `cpu_percent` summed over the generator processes, `cpu_percent_max` (the
  busiest one: a Locust process is single-threaded, so ~100 means it is saturated), and
  `generator_cores` (how many generator processes were measured).

A node's PID comes from its wso2carbon.pid (through the node's transport) and is read again
whenever the process is gone, so a restarted node is followed. psutil only sees this machine:
nodes on other hosts (transport "ssh") are left to `ProcCollector`, which reads the same
figures (and their hosts') from /proc over SSH.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from eicore.cluster import Cluster, Node
from eicore.node_control import read_pid
from eicore.transport import NodeTransport, transport_for
from loadtests.collectors.base import Collector, Sample, log
from loadtests.collectors.sockets import SocketCounter

GeneratorPids = Callable[[], Iterable[int]] | Iterable[int] | None

# A PID file written this long before the process started belongs to an earlier process.
_PID_FILE_SLACK_S = 2.0


@dataclass
class _Watched:
    """A process being followed, with its CPU time at the previous round."""

    proc: psutil.Process
    cpu_s: float | None = None
    at: float | None = None

    def cpu_percent(self, cpu_s: float, at: float) -> float | None:
        """CPU since the previous call, 100 = one core; None on the first call."""
        pct = None
        if self.cpu_s is not None and self.at is not None and at > self.at:
            pct = max(0.0, (cpu_s - self.cpu_s) / (at - self.at) * 100.0)
        self.cpu_s, self.at = cpu_s, at
        return pct


class PsutilCollector(Collector):
    """Node JVMs, host and load generator as the OS sees them (see the module docstring)."""

    name = "psutil"

    def __init__(self, cluster: Cluster, generator_pids: GeneratorPids = None) -> None:
        super().__init__()
        self.nodes: tuple[Node, ...] = tuple(n for n in cluster.nodes if n.transport == "local")
        self.skipped = tuple(n.name for n in cluster.nodes if n.transport != "local")
        #: A list of PIDs, or a callable returning them (read every round); settable any time.
        self.generator_pids: GeneratorPids = generator_pids
        self._transports: dict[str, NodeTransport] = {}
        self._nodes: dict[str, _Watched] = {}
        self._generators: dict[int, _Watched] = {}
        self._host_cpu: tuple[float, float] | None = None  # (busy s, total s) summed over cores
        self._net: tuple[float, int, int] | None = None  # (monotonic, sent, recv)

    def start(self) -> None:
        if self.skipped:
            log.info("psutil: %s on other hosts: sampled over SSH by the proc collector",
                     ", ".join(self.skipped))
        self._transports = {n.name: transport_for(n) for n in self.nodes}
        self.sample(time.time())  # prime the CPU and network baselines

    def sample(self, now: float) -> list[Sample]:
        rows: list[Sample] = []
        at = time.monotonic()
        sockets = SocketCounter()
        for node in self.nodes:
            rows += self._sample_node(now, at, node, sockets)
        rows += self._sample_host(now, at)
        rows += self._sample_generator(now, at)
        return rows

    def close(self) -> None:
        for t in self._transports.values():
            try:
                t.close()
            except Exception:
                pass
        self._nodes.clear()
        self._generators.clear()

    # ------------------------------------------------------------------ nodes

    def _process_of(self, node: Node) -> tuple[_Watched | None, str]:
        """The node's JVM: the one followed so far while it runs, else the PID file's."""
        watched = self._nodes.get(node.name)
        if watched is not None and watched.proc.is_running():
            return watched, ""
        self._nodes.pop(node.name, None)
        transport = self._transports.get(node.name) or transport_for(node)
        pid = read_pid(transport, node)
        if pid is None:
            return None, f"no PID in {node.pid_file}"
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None, f"PID {pid} has exited"
            if proc.create_time() > os.stat(node.pid_file).st_mtime + _PID_FILE_SLACK_S:
                return None, f"PID {pid} in {node.pid_file} is stale (reused by another process)"
        except (psutil.NoSuchProcess, FileNotFoundError):
            return None, f"PID {pid} from {node.pid_file} is not running"
        except psutil.AccessDenied:
            return None, f"PID {pid}: access denied"
        watched = self._nodes[node.name] = _Watched(proc)
        return watched, ""

    def _sample_node(
        self, now: float, at: float, node: Node, sockets: SocketCounter
    ) -> list[Sample]:
        watched, reason = self._process_of(node)
        if watched is None:
            self.gap(node.name, reason)
            return []
        proc = watched.proc
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
                threads = proc.num_threads()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._nodes.pop(node.name, None)
            self.gap(node.name, f"PID {proc.pid} has exited")
            return []
        except psutil.AccessDenied:
            self.gap(node.name, f"PID {proc.pid}: access denied")
            return []
        self.answered(node.name)
        rows = [
            self.row(now, node.name, "pid", proc.pid),
            self.row(now, node.name, "rss_bytes", rss),
            self.row(now, node.name, "threads", threads),
        ]
        pct = watched.cpu_percent(times.user + times.system, at)
        if pct is not None:
            rows.append(self.row(now, node.name, "cpu_percent", pct))
        fds = sockets.count(proc)
        if fds is not None:
            open_files, tcp = fds
            rows.append(self.row(now, node.name, "open_files", open_files))
            rows.append(self.row(now, node.name, "tcp_connections", tcp))
        return rows

    # ------------------------------------------------------------------ host

    def _sample_host(self, now: float, at: float) -> list[Sample]:
        rows: list[Sample] = []
        cpus = psutil.cpu_count() or 1
        busy, total = _cpu_busy_total(psutil.cpu_times())
        if self._host_cpu is not None and total > self._host_cpu[1]:
            share = (busy - self._host_cpu[0]) / (total - self._host_cpu[1])
            rows.append(self.row(now, "host", "cpu_percent", max(0.0, share) * cpus * 100.0))
        self._host_cpu = (busy, total)
        rows.append(self.row(now, "host", "cpus", cpus))
        rows.append(self.row(now, "host", "load1", os.getloadavg()[0]))
        mem = psutil.virtual_memory()
        rows.append(self.row(now, "host", "mem_used_bytes", mem.total - mem.available))
        rows.append(self.row(now, "host", "mem_total_bytes", mem.total))
        net = psutil.net_io_counters()
        if net is not None:
            if self._net is not None and at > self._net[0]:
                dt = at - self._net[0]
                rows.append(self.row(now, "host", "net_sent_bytes_per_s",
                                     max(0, net.bytes_sent - self._net[1]) / dt))
                rows.append(self.row(now, "host", "net_recv_bytes_per_s",
                                     max(0, net.bytes_recv - self._net[2]) / dt))
            self._net = (at, net.bytes_sent, net.bytes_recv)
        return rows

    # ------------------------------------------------------------------ generator

    def _current_generator_pids(self) -> set[int]:
        source = self.generator_pids
        if source is None:
            return set()
        try:
            pids = source() if callable(source) else source
            return {int(p) for p in pids if int(p) > 0}
        except Exception as e:  # a caller's callable must not stop the collection
            log.warning("psutil: cannot read the generator PIDs (%s)", e)
            return set(self._generators)

    def _sample_generator(self, now: float, at: float) -> list[Sample]:
        pids = self._current_generator_pids()
        for gone in set(self._generators) - pids:
            del self._generators[gone]
        if not pids:
            return []
        total, busiest, measured = 0.0, 0.0, 0
        for pid in sorted(pids):
            watched = self._generators.get(pid)
            try:
                if watched is None:
                    watched = self._generators[pid] = _Watched(psutil.Process(pid))
                times = watched.proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._generators.pop(pid, None)
                continue
            pct = watched.cpu_percent(times.user + times.system, at)
            if pct is not None:
                total += pct
                busiest = max(busiest, pct)
                measured += 1
        if not measured:
            return []  # first round of these processes, or all gone
        return [
            self.row(now, "generator", "cpu_percent", total),
            self.row(now, "generator", "cpu_percent_max", busiest),
            self.row(now, "generator", "generator_cores", measured),
        ]


def _cpu_busy_total(times: psutil._common.scputimes) -> tuple[float, float]:
    """(busy, total) CPU seconds summed over cores, counted the way psutil.cpu_percent does."""
    total = sum(times)
    # On Linux guest time is already part of user/nice time.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total
