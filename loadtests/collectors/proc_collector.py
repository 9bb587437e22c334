"""`ProcCollector`: the hosts reached over SSH, from their /proc -- agentless.

For every host the cluster file reaches over SSH (nodes with transport "ssh", and the load
balancer when its transport is "ssh"), one SSH connection and on it one long-running POSIX
shell (`loadtests.collectors.proc_sampler`) that prints /proc once per round; the text is
parsed here (`loadtests.collectors.procfs`). Nothing is installed on the host. Targets that
share a login (same host, port and user) share the connection.

Series (source "proc"). The `node` value is the target's own name -- the node's name, or "lb"
for the load balancer -- for its process figures AND its host's figures:

- node (node = node name), the EI JVM named by `<EI_HOME>/wso2carbon.pid`, the same names
  and units as `PsutilCollector` gives a local node: `cpu_percent` (100 = one core busy),
  `rss_bytes`, `threads` (OS threads), `open_files` (all file descriptors), `pid`, and
  `tcp_connections` (ESTABLISHED TCP sockets it holds) on rounds that read the socket tables;
- load balancer (node "lb"), nginx's master (from the LB's `pid_file`) and its children (the
  workers): `cpu_percent` and `rss_bytes` summed over them, `processes`, `pid` (the master's);
  nginx's stub_status counters stay with the "nginx" source on the same node "lb";
- host figures of the target's host, each named `host.<name>` where `<name>` is what
  `PsutilCollector` calls the same quantity for this machine's series "host":
  `host.cpu_percent` (all cores: 100 x cores when all are busy), `host.cpus`, `host.load1`,
  `host.mem_used_bytes` (total - available), `host.mem_total_bytes`,
  `host.net_sent_bytes_per_s`, `host.net_recv_bytes_per_s` (all interfaces, loopback
  included); and more than psutil gives: `host.cpu_<mode>_percent` for user, nice, system,
  idle, iowait, irq, softirq, steal (a share of all cores' time, 0..100, like top's %Cpu(s)),
  `host.load5`, `host.load15`, `host.mem_available_bytes`, `host.swap_used_bytes`,
  `host.net.<interface>.<recv|sent>_<bytes|packets|errors|drops>_per_s`,
  `host.disk_read_bytes_per_s`, `host.disk_write_bytes_per_s` (whole disks),
  `host.tcp_curr_estab` (SNMP CurrEstab: ESTABLISHED + CLOSE_WAIT), `host.tcp_inuse`,
  `host.tcp_time_wait`, `host.tcp_orphans` (/proc/net/sockstat),
  `host.tcp_<counter>_per_s` for the /proc/net/snmp counters active_opens, passive_opens,
  attempt_fails, estab_resets, in_segs, out_segs, retrans_segs, in_errs, out_rsts, and
  `host.tcp_listen_overflows_per_s`, `host.tcp_listen_drops_per_s` (a full accept queue);
  on rounds that read the socket tables, `host.tcp_state.<state>` for every TCP state
  (established, syn_sent, syn_recv, fin_wait1, fin_wait2, time_wait, close, close_wait,
  last_ack, listen, closing, new_syn_recv);
- the sampler's own cost on that host (cumulative CPU seconds): `sampler_cpu_seconds` (the
  shell and the commands it ran) and `sampler_sshd_cpu_seconds` (the SSH session process that
  serves it); `sampler_round_ms` is the wall time of the round as the collector saw it.

Why the `host.` prefix and not node "host": "host" is this machine's series, and a cluster has
several remote hosts; the node's name says which host, but on that same node `cpu_percent` is
already the JVM's (what `analysis.summary` reads as the node's CPU), so the host's figures need
a name of their own. The prefix keeps them apart, and stripping it gives psutil's name. Targets
that share a host each carry its host figures (the same values).

Socket tables (/proc/net/tcp, tcp6) cost the kernel a walk of its whole TCP hash on every read
(~4 ms here with an empty table, ~15 ms with 16k TIME_WAIT sockets), so they are read on the
first round and then every `tcp_table_every` rounds; the rest is read every round.

Failures: a host that does not answer, or answers too late, is a gap for each of its targets
(logged once when it goes away and once when it is back); the round never waits for it longer
than `deadline_s`. Its connection is reopened at most every `retry_s` seconds, so a host that
comes back is sampled again. A host that answers while a target's process is not running gives
its host figures, no process figures, and a gap for that target.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import paramiko

from eicore.cluster import Cluster
from eicore.transport import BecomeTransport, SSHTransport, TransportError, transport_for
from loadtests.collectors.base import Collector, Sample, log
from loadtests.collectors.proc_sampler import SHELL_COMMAND, Target, sampler_script
from loadtests.collectors.procfs import (
    HOST,
    Snapshot,
    host_figures,
    parse_sample,
    sampler_figures,
    target_figures,
)

#: the command name each kind of target's process must have
_COMM = {"node": "java", "lb": "nginx"}
_RECV = 65536


class HostDown(Exception):
    """A host gave no round: unreachable, refused, hung or its sampler ended."""


def ssh_targets(cluster: Cluster) -> list[tuple[object, Target]]:
    """(cluster item, Target) for every node and the load balancer reached over SSH."""
    out: list[tuple[object, Target]] = [
        (n, Target(n.name, "node", n.pid_file)) for n in cluster.nodes if n.transport == "ssh"]
    lb = cluster.load_balancer
    if lb.transport == "ssh":
        out.append((lb, Target("lb", "lb", lb.conf_path(lb.pid_file))))
    return out


def _ssh_of(item: object) -> SSHTransport:
    """The SSH transport the cluster file names for a node or the LB (without sudo: the
    sampler only reads)."""
    t = transport_for(item)
    inner = t.inner if isinstance(t, BecomeTransport) else t
    if not isinstance(inner, SSHTransport):
        raise TypeError(f"{type(inner).__name__} is no SSH transport")
    return inner


@dataclass
class _Host:
    """One SSH login on one host: its connection, its sampler shell, the targets there."""

    ssh: SSHTransport
    targets: list[Target]
    script: str
    chan: paramiko.Channel | None = None
    seq: int = 0
    hz: int = 100
    rounds: int = 0  # rounds asked for by `sample` (the socket tables every n-th)
    prev: Snapshot | None = None
    busy: Future | None = None
    next_connect: float = 0.0
    connect_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]


class ProcCollector(Collector):
    """Host, EI process and nginx figures of the SSH hosts, from /proc (see module docstring)."""

    name = "proc"

    def __init__(
        self,
        cluster: Cluster,
        deadline_s: float = 0.8,
        retry_s: float = 2.0,
        hang_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        tcp_table_every: int = 10,
    ) -> None:
        super().__init__()
        self.deadline_s = deadline_s
        self.retry_s = retry_s
        self.hang_s = hang_s
        self.connect_timeout_s = connect_timeout_s
        self.tcp_table_every = max(1, tcp_table_every)
        hosts: dict[tuple[str, int, str], _Host] = {}
        for item, target in ssh_targets(cluster):
            ssh = _ssh_of(item)
            key = (ssh.host, ssh.port, ssh.user)
            if key not in hosts:
                ssh.connect_timeout = connect_timeout_s
                hosts[key] = _Host(ssh, [], "")
            hosts[key].targets.append(target)
        for h in hosts.values():
            h.script = sampler_script(h.targets)
        self._hosts = list(hosts.values())
        self._pool: ThreadPoolExecutor | None = None

    @property
    def targets(self) -> list[str]:
        """The names this collector samples (node names and "lb")."""
        return [n for h in self._hosts for n in h.names]

    def start(self) -> None:
        if not self._hosts:
            return
        self._pool = ThreadPoolExecutor(max_workers=len(self._hosts), thread_name_prefix="proc")
        # Open every host at once and take a first round (the baseline for rates); a host
        # that does not answer is a gap later.
        for h in self._hosts:
            h.busy = self._pool.submit(self._round, h, True)
        wait([h.busy for h in self._hosts if h.busy], timeout=self.connect_timeout_s + 1)

    def sample(self, now: float) -> list[Sample]:
        if not self._hosts:
            return []
        if self._pool is None:
            self.start()
        assert self._pool is not None
        running: dict[int, Future] = {}
        for i, h in enumerate(self._hosts):
            if h.busy is not None and not h.busy.done():
                continue  # still connecting, or stuck in an earlier round
            full = h.rounds % self.tcp_table_every == 0
            h.rounds += 1
            h.busy = running[i] = self._pool.submit(self._round, h, full)
        if running:
            wait(running.values(), timeout=self.deadline_s)
        rows: list[Sample] = []
        for i, h in enumerate(self._hosts):
            future = running.get(i)
            if future is None:
                self._gaps(h, f"connecting to {h.ssh.where}" if h.chan is None
                           else "an earlier round has not returned yet")
            elif not future.done():
                self._gaps(h, f"no answer within {self.deadline_s:.1f} s")
            elif future.exception() is not None:
                self._gaps(h, str(future.exception()))
            else:
                rows += self._rows(now, h, *future.result())
        return rows

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for h in self._hosts:
            self._hang_up(h)

    # ------------------------------------------------------------------ rows (sampling thread)

    def _gaps(self, h: _Host, why: str) -> None:
        for name in h.names:
            self.gap(name, why)

    def _rows(self, now: float, h: _Host, snap: Snapshot, prev: Snapshot | None,
              round_ms: float) -> list[Sample]:
        shared = [(HOST + m, v) for m, v in host_figures(prev, snap)]
        shared += sampler_figures(snap, h.hz)
        shared.append(("sampler_round_ms", round_ms))
        rows: list[Sample] = []
        for i, target in enumerate(h.targets):
            own, why = target_figures(target.kind, prev, snap, i, h.hz, _COMM[target.kind])
            if own is None:
                self.gap(target.name, f"{target.pid_file}: {why}")
                own = []
            else:
                self.answered(target.name)
            rows += [self.row(now, target.name, m, v) for m, v in (*own, *shared)]
        return rows

    # ------------------------------------------------------------------ one host (worker thread)

    def _round(self, h: _Host, full: bool) -> tuple[Snapshot, Snapshot | None, float]:
        """One round on one host: (snapshot, the previous one, wall ms); HostDown if none."""
        with h.lock:
            began = time.perf_counter()
            self._open(h)
            assert h.chan is not None
            h.seq += 1
            try:
                h.chan.sendall(f"s {h.seq} {int(full)}\n".encode())
                text = self._read(h, f"@begin {h.seq}\n", f"@end {h.seq}\n")
                snap = parse_sample(text)
            except (OSError, EOFError, paramiko.SSHException, TimeoutError) as e:
                self._hang_up(h)
                raise HostDown(f"{h.ssh.where}: {e or type(e).__name__}") from None
            except ValueError as e:
                self._hang_up(h)
                raise HostDown(f"{h.ssh.where}: unreadable sample ({e})") from None
            prev, h.prev = h.prev, snap
            return snap, prev, (time.perf_counter() - began) * 1000.0

    def _open(self, h: _Host) -> None:
        """Start the sampler shell if none runs (at most once every `retry_s`)."""
        if h.chan is not None and not h.chan.closed:
            return
        if time.monotonic() < h.next_connect:
            raise HostDown(h.connect_error or f"{h.ssh.where}: not reconnecting yet")
        h.next_connect = time.monotonic() + self.retry_s
        h.prev = None  # a new shell: no baseline for its own cost, and maybe a rebooted host
        try:
            h.chan = h.ssh.open_channel(SHELL_COMMAND)
            h.chan.sendall(h.script.encode())
            hello = self._read(h, "@hello ", "\n").split()
            h.hz = int(hello[1]) if len(hello) > 1 and hello[1].isdigit() else 100
        except TransportError as e:
            self._hang_up(h)
            h.connect_error = str(e)
            raise HostDown(h.connect_error) from None
        except (OSError, EOFError, paramiko.SSHException, TimeoutError, ValueError) as e:
            self._hang_up(h)
            h.connect_error = f"{h.ssh.where}: the sampler shell did not start ({e})"
            raise HostDown(h.connect_error) from None
        h.connect_error = ""
        log.info("proc: sampling %s on %s", ", ".join(h.names), h.ssh.where)

    def _read(self, h: _Host, begin: str, end: str) -> str:
        """What the shell prints between `begin` and `end` (earlier output is dropped: the
        rest of a round that came too late); TimeoutError after `hang_s`."""
        chan = h.chan
        assert chan is not None
        deadline = time.monotonic() + self.hang_s
        buf = b""
        start_mark, end_mark = begin.encode(), end.encode()
        while True:
            at = buf.find(start_mark)
            if at >= 0:
                stop = buf.find(end_mark, at + len(start_mark))
                if stop >= 0:
                    return buf[at + len(start_mark):stop].decode("utf-8", "replace")
            while chan.recv_stderr_ready():  # never let a full stderr window block the shell
                chan.recv_stderr(_RECV)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer in {self.hang_s:.0f} s")
            chan.settimeout(min(left, 0.5))
            try:
                data = chan.recv(_RECV)
            except TimeoutError:
                continue
            if not data:
                raise EOFError(f"the sampler shell ended (exit {chan.exit_status})")
            buf += data

    def _hang_up(self, h: _Host) -> None:
        """Drop the shell and the connection (the next round reconnects)."""
        chan, h.chan = h.chan, None
        if chan is not None:
            try:
                chan.close()
            except Exception:
                pass
        try:
            h.ssh.close()
        except Exception:
            pass
