"""Linux /proc text -> numbers: pure parsers and the figures of two consecutive samples.

`parse_sample` reads what the remote sampler (`loadtests.collectors.proc_sampler`) prints for
one round -- /proc files between `@file` markers -- into a `Snapshot`; `host_figures` and
`target_figures` turn the previous and the current snapshot into (metric, value) pairs named as
`loadtests.collectors.proc_collector` documents. Each `parse_*` function takes the text of one
/proc file as the kernel writes it (see proc(5)) and ignores lines it does not know, so a
newer kernel's extra fields or lines change nothing.

Time: rates and CPU percentages divide by the host's own clock (/proc/uptime, read in the same
pass), never by the collector's, so network latency does not move them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: /proc/stat cpu line columns (proc(5)); guest and guest_nice are already inside user / nice.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
             "guest", "guest_nice")
#: the modes reported as `host.cpu_<mode>_percent`
REPORTED_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: /proc/net/tcp `st` column (include/net/tcp_states.h)
TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1",
    "05": "fin_wait2", "06": "time_wait", "07": "close", "08": "close_wait",
    "09": "last_ack", "0A": "listen", "0B": "closing", "0C": "new_syn_recv",
}
#: /proc/net/snmp `Tcp:` counters reported as rates (`host.tcp_<snake name>_per_s`)
TCP_COUNTERS = ("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "InSegs",
                "OutSegs", "RetransSegs", "InErrs", "OutRsts")
#: /proc/net/netstat `TcpExt:` counters reported as rates: a full accept queue
TCPEXT_COUNTERS = ("ListenOverflows", "ListenDrops")
#: block devices that are no disk of their own (virtual, or stacked on disks already counted)
_NOT_DISKS = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd|nbd)")
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size


def snake(name: str) -> str:
    """RetransSegs -> retrans_segs."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# --------------------------------------------------------------------------- one file each


def parse_uptime(text: str) -> float:
    """Seconds since boot (/proc/uptime, first field)."""
    return float(text.split()[0])


def parse_stat_cpu(text: str) -> tuple[dict[str, int], int]:
    """(/proc/stat "cpu" line as {mode: ticks}, number of cpuN lines = online CPUs)."""
    total: dict[str, int] = {}
    cpus = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            total = dict(zip(CPU_MODES, values, strict=False))
        elif line.startswith("cpu") and line[3:4].isdigit():
            cpus += 1
    if not total:
        raise ValueError("no cpu line in /proc/stat")
    return total, cpus


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    a, b, c = text.split()[:3]
    return float(a), float(b), float(c)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo fields in bytes (values given in kB), e.g. {"MemTotal": ...}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if not words or not words[0].isdigit():
            continue
        scale = 1024 if len(words) > 1 and words[1] == "kB" else 1
        out[key.strip()] = int(words[0]) * scale
    return out


def mem_available(mem: dict[str, int]) -> int:
    """MemAvailable, or (kernels before 3.14) free + buffers + page cache as psutil estimates."""
    if "MemAvailable" in mem:
        return mem["MemAvailable"]
    return mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)


@dataclass(frozen=True)
class NetCounters:
    """One interface's cumulative counters from /proc/net/dev."""

    recv_bytes: int
    recv_packets: int
    recv_errors: int
    recv_drops: int
    sent_bytes: int
    sent_packets: int
    sent_errors: int
    sent_drops: int


def parse_net_dev(text: str) -> dict[str, NetCounters]:
    """/proc/net/dev: counters per interface (the two header lines skipped)."""
    out: dict[str, NetCounters] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        v = rest.split()
        if len(v) < 12 or not all(x.isdigit() for x in v[:12]):
            continue
        out[name.strip()] = NetCounters(int(v[0]), int(v[1]), int(v[2]), int(v[3]),
                                        int(v[8]), int(v[9]), int(v[10]), int(v[11]))
    return out


def parse_diskstats(text: str) -> tuple[int, int]:
    """(read bytes, written bytes) since boot, summed over whole disks: partitions and
    virtual or stacked devices (loop, ram, zram, dm-*, md*, ...) are left out, so nothing is
    counted twice."""
    rows: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or not f[3].isdigit():
            continue
        rows[f[2]] = (int(f[5]) * SECTOR_BYTES, int(f[9]) * SECTOR_BYTES)
    read = written = 0
    for name, (r, w) in rows.items():
        if _NOT_DISKS.match(name) or _is_partition(name, rows):
            continue
        read += r
        written += w
    return read, written


def _is_partition(name: str, devices: dict[str, object]) -> bool:
    """A partition of a listed disk, named as the kernel names them: the disk's name and a
    number (sda1), with a "p" between when the disk's name ends in a digit (nvme0n1p2)."""
    for disk in devices:
        if disk != name and name.startswith(disk):
            rest = name[len(disk):]
            if re.fullmatch(r"p\d+" if disk[-1].isdigit() else r"\d+", rest):
                return True
    return False


def parse_snmp(text: str, section: str = "Tcp") -> dict[str, int]:
    """One section of /proc/net/snmp or /proc/net/netstat (a header line of names, then a
    line of values, both starting with "<section>:") as {name: value}."""
    header: list[str] | None = None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key != section:
            continue
        if header is None:
            header = rest.split()
        else:
            values = rest.split()
            return {k: int(v) for k, v in zip(header, values, strict=False)
                    if v.lstrip("-").isdigit()}
    return {}


def parse_sockstat(text: str, protocol: str = "TCP") -> dict[str, int]:
    """The `protocol` line of /proc/net/sockstat (TCP: inuse, orphan, tw (TIME_WAIT), alloc,
    mem in pages) or /proc/net/sockstat6 (TCP6: inuse), as {name: value}."""
    for line in text.splitlines():
        if line.startswith(protocol + ":"):
            words = line.split()[1:]
            return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=False)
                    if v.isdigit()}
    return {}


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that are read (times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    threads: int
    starttime: int  # ticks after boot

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def cpu_ticks_with_children(self) -> int:
        """Own CPU plus that of the children it has waited for (a shell's commands)."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_pid_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat; the command name may hold spaces and parentheses."""
    head, _, tail = text.strip().rpartition(")")
    pid, _, comm = head.partition(" (")
    f = tail.split()
    if len(f) < 20:
        raise ValueError(f"short /proc/<pid>/stat: {text[:80]!r}")
    return ProcStat(pid=int(pid), comm=comm, state=f[0], ppid=int(f[1]), utime=int(f[11]),
                    stime=int(f[12]), cutime=int(f[13]), cstime=int(f[14]),
                    threads=int(f[17]), starttime=int(f[19]))


def parse_pid_status(text: str) -> dict[str, int]:
    """/proc/<pid>/status: rss_bytes (VmRSS) and threads, when present."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if key == "VmRSS" and words and words[0].isdigit():
            out["rss_bytes"] = int(words[0]) * 1024
        elif key == "Threads" and words and words[0].isdigit():
            out["threads"] = int(words[0])
    return out


# --------------------------------------------------------------------------- one round


@dataclass
class Proc:
    """One process as sampled: its stat, and VmRSS / Threads from its status."""

    stat: ProcStat
    status: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start time): the same PID started again is another process."""
        return self.stat.pid, self.stat.starttime


@dataclass
class TargetSnap:
    """A target's processes in one round (`pid` None: no PID in its file)."""

    pid: int | None = None
    proc: Proc | None = None
    children: list[Proc] = field(default_factory=list)
    open_files: int | None = None
    tcp_connections: int | None = None


@dataclass
class Snapshot:
    """Everything one round printed, parsed."""

    uptime: float
    cpu: dict[str, int]
    cpus: int
    load: tuple[float, float, float] | None = None
    mem: dict[str, int] = field(default_factory=dict)
    net: dict[str, NetCounters] = field(default_factory=dict)
    disk: tuple[int, int] | None = None
    tcp: dict[str, int] = field(default_factory=dict)
    tcpext: dict[str, int] = field(default_factory=dict)
    sockstat: dict[str, int] = field(default_factory=dict)  # "inuse": IPv4 and IPv6
    #: sockets per state name; None when the socket tables were not read this round
    tcp_states: dict[str, int] | None = None
    targets: dict[int, TargetSnap] = field(default_factory=dict)
    sampler: ProcStat | None = None  # the sampling shell (its finished commands included)
    session: ProcStat | None = None  # the SSH session process serving it (the shell's parent)


def split_blocks(text: str) -> list[tuple[str, str, str]]:
    """The sampler's output as (marker word, marker argument, following text) blocks."""
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("@"):
            word, _, arg = line[1:].partition(" ")
            blocks.append((word, arg, []))
        elif blocks:
            blocks[-1][2].append(line)
    return [(w, a, "\n".join(body)) for w, a, body in blocks]


def parse_sample(text: str) -> Snapshot:
    """One round of sampler output -> Snapshot; ValueError when /proc/uptime or /proc/stat is
    missing or unreadable (the round is then no sample at all)."""
    files: dict[str, str] = {}
    targets: dict[int, TargetSnap] = {}
    states: dict[str, int] | None = None
    procs: dict[tuple[str, int], Proc] = {}
    snap_self: dict[str, ProcStat] = {}
    for word, arg, body in split_blocks(text):
        if word == "file":
            files[arg] = body
        elif word == "tcptable":
            states = dict.fromkeys(TCP_STATES.values(), 0)
        elif word == "tcp" and states is not None:
            code, _, count = arg.partition(" ")
            name = TCP_STATES.get(code.upper())
            if name and count.isdigit():
                states[name] += int(count)
        elif word in ("fds", "conns"):
            idx, _, count = arg.partition(" ")
            t = targets.setdefault(int(idx), TargetSnap())
            if word == "fds":
                t.open_files = int(count)
            else:
                t.tcp_connections = int(count)
        elif word.startswith(("target:", "child:")) or word in ("sampler", "session"):
            role, _, idx = word.partition(":")
            if role == "target":
                targets.setdefault(int(idx), TargetSnap())
            parts = arg.split("/")
            if len(parts) < 4 or not parts[2].isdigit():
                continue  # no PID in the PID file
            pid = int(parts[2])
            if role == "target":
                targets[int(idx)].pid = pid
            if not body.strip():
                continue  # the process is gone: its file could not be read
            if parts[3] == "status":
                if (word, pid) in procs:
                    procs[(word, pid)].status = parse_pid_status(body)
                continue
            stat = parse_pid_stat(body)
            if role in ("sampler", "session"):
                snap_self[role] = stat
                continue
            proc = procs[(word, pid)] = Proc(stat)
            t = targets[int(idx)] if role == "target" else targets.setdefault(int(idx), TargetSnap())
            if role == "target":
                t.proc = proc
            else:
                t.children.append(proc)
    if not files.get("/proc/uptime", "").strip() or not files.get("/proc/stat", "").strip():
        raise ValueError("the sampler printed no /proc/uptime or /proc/stat")
    cpu, cpus = parse_stat_cpu(files["/proc/stat"])
    snap = Snapshot(uptime=parse_uptime(files["/proc/uptime"]), cpu=cpu, cpus=cpus,
                    tcp_states=states, targets=targets, sampler=snap_self.get("sampler"),
                    session=snap_self.get("session"))
    if files.get("/proc/loadavg", "").strip():
        snap.load = parse_loadavg(files["/proc/loadavg"])
    snap.mem = parse_meminfo(files.get("/proc/meminfo", ""))
    snap.net = parse_net_dev(files.get("/proc/net/dev", ""))
    if "/proc/diskstats" in files:
        snap.disk = parse_diskstats(files["/proc/diskstats"])
    snap.tcp = parse_snmp(files.get("/proc/net/snmp", ""), "Tcp")
    snap.tcpext = parse_snmp(files.get("/proc/net/netstat", ""), "TcpExt")
    snap.sockstat = parse_sockstat(files.get("/proc/net/sockstat", ""))
    inuse6 = parse_sockstat(files.get("/proc/net/sockstat6", ""), "TCP6").get("inuse")
    if inuse6 is not None and "inuse" in snap.sockstat:  # IPv4's count; IPv6 has its own
        snap.sockstat["inuse"] += inuse6
    return snap


# --------------------------------------------------------------------------- figures

Figures = list[tuple[str, float]]
HOST = "host."


def _rate(prev: int, cur: int, dt: float) -> float:
    """A counter's increase per second; a counter that went back (wrapped, reset) counts 0."""
    return max(0, cur - prev) / dt


def host_figures(prev: Snapshot | None, cur: Snapshot) -> Figures:
    """The host's figures (names without the "host." prefix the collector adds); rates and
    percentages only when `prev` is an earlier round of the same host."""
    out: Figures = [("cpus", cur.cpus)]
    if cur.load is not None:
        out += [("load1", cur.load[0]), ("load5", cur.load[1]), ("load15", cur.load[2])]
    mem = cur.mem
    if "MemTotal" in mem:
        available = mem_available(mem)
        out += [("mem_total_bytes", mem["MemTotal"]), ("mem_available_bytes", available),
                ("mem_used_bytes", mem["MemTotal"] - available)]
    if "SwapTotal" in mem and "SwapFree" in mem:
        out.append(("swap_used_bytes", mem["SwapTotal"] - mem["SwapFree"]))
    if "CurrEstab" in cur.tcp:
        out.append(("tcp_curr_estab", cur.tcp["CurrEstab"]))
    for key, name in (("inuse", "tcp_inuse"), ("tw", "tcp_time_wait"), ("orphan", "tcp_orphans")):
        if key in cur.sockstat:
            out.append((name, cur.sockstat[key]))
    if cur.tcp_states is not None:
        out += [(f"tcp_state.{name}", n) for name, n in cur.tcp_states.items()]
    if prev is None or not cur.uptime > prev.uptime:
        return out
    dt = cur.uptime - prev.uptime
    out += _cpu_figures(prev, cur)
    both = [n for n in cur.net if n in prev.net]
    if both:
        sent = sum(_rate(prev.net[n].sent_bytes, cur.net[n].sent_bytes, dt) for n in both)
        recv = sum(_rate(prev.net[n].recv_bytes, cur.net[n].recv_bytes, dt) for n in both)
        out += [("net_sent_bytes_per_s", sent), ("net_recv_bytes_per_s", recv)]
    for n in both:
        a, b = prev.net[n], cur.net[n]
        for f in ("recv_bytes", "sent_bytes", "recv_packets", "sent_packets", "recv_errors",
                  "sent_errors", "recv_drops", "sent_drops"):
            out.append((f"net.{n}.{f}_per_s", _rate(getattr(a, f), getattr(b, f), dt)))
    if prev.disk is not None and cur.disk is not None:
        out += [("disk_read_bytes_per_s", _rate(prev.disk[0], cur.disk[0], dt)),
                ("disk_write_bytes_per_s", _rate(prev.disk[1], cur.disk[1], dt))]
    for table, names in ((cur.tcp, TCP_COUNTERS), (cur.tcpext, TCPEXT_COUNTERS)):
        before = prev.tcp if table is cur.tcp else prev.tcpext
        for name in names:
            if name in table and name in before:
                out.append((f"tcp_{snake(name)}_per_s", _rate(before[name], table[name], dt)))
    return out


def _cpu_figures(prev: Snapshot, cur: Snapshot) -> Figures:
    """cpu_percent (100 = one core, like psutil's host figure) and each mode's share (%)."""
    delta = {m: max(0, cur.cpu.get(m, 0) - prev.cpu.get(m, 0)) for m in CPU_MODES}
    total = sum(delta.values()) - delta["guest"] - delta["guest_nice"]
    if total <= 0:
        return []
    busy = total - delta["idle"] - delta["iowait"]
    out: Figures = [("cpu_percent", max(0, busy) / total * cur.cpus * 100.0)]
    out += [(f"cpu_{m}_percent", delta[m] / total * 100.0) for m in REPORTED_MODES
            if m in cur.cpu]
    return out


def _cpu_seconds(procs: list[Proc], before: dict[tuple[int, int], Proc], since_ticks: float,
                 hz: int) -> float:
    """CPU seconds the processes used since the previous round: against their previous
    figures, or all of it for a process started after that round."""
    ticks = 0
    for p in procs:
        old = before.get(p.key)
        if old is not None:
            ticks += max(0, p.stat.cpu_ticks - old.stat.cpu_ticks)
        elif p.stat.starttime >= since_ticks:
            ticks += p.stat.cpu_ticks
    return ticks / hz


def target_figures(kind: str, prev: Snapshot | None, cur: Snapshot, idx: int, hz: int,
                   comm: str | None = None) -> tuple[Figures | None, str]:
    """A target's process figures, or (None, why) when it has no live process.

    kind "node": pid, rss_bytes, threads, open_files, tcp_connections, cpu_percent of the one
    process; kind "lb": pid (master), processes, rss_bytes and cpu_percent summed over the
    master and its children. `comm` is the command name the process must have (a PID file left
    behind may name a PID reused by another program)."""
    t = cur.targets.get(idx)
    if t is None or t.pid is None:
        return None, "no PID in its PID file"
    if t.proc is None or t.proc.stat.state in ("Z", "X"):
        return None, f"PID {t.pid} from its PID file is not running"
    if comm is not None and t.proc.stat.comm != comm:
        return None, (f"PID {t.pid} from its PID file is a {t.proc.stat.comm!r} process, "
                      f"not {comm!r} (a stale PID file?)")
    procs = [t.proc, *t.children] if kind == "lb" else [t.proc]
    out: Figures = [("pid", t.pid)]
    rss = [p.status["rss_bytes"] for p in procs if "rss_bytes" in p.status]
    if rss:
        out.append(("rss_bytes", sum(rss)))
    if kind == "lb":
        out.append(("processes", len(procs)))
    else:
        out.append(("threads", t.proc.stat.threads))
        if t.open_files is not None:
            out.append(("open_files", t.open_files))
        if t.tcp_connections is not None:
            out.append(("tcp_connections", t.tcp_connections))
    if prev is not None and cur.uptime > prev.uptime:
        old = prev.targets.get(idx)
        before = {p.key: p for p in ([old.proc, *old.children] if old and old.proc else [])}
        seconds = _cpu_seconds(procs, before, prev.uptime * hz, hz)
        out.append(("cpu_percent", seconds / (cur.uptime - prev.uptime) * 100.0))
    return out, ""


def sampler_figures(cur: Snapshot, hz: int) -> Figures:
    """The sampler's own cost on the host, cumulative CPU seconds: the shell with the commands
    it ran (`sampler_cpu_seconds`) and the SSH session process serving it."""
    out: Figures = []
    if cur.sampler is not None:
        out.append(("sampler_cpu_seconds", cur.sampler.cpu_ticks_with_children / hz))
    if cur.session is not None:
        out.append(("sampler_sshd_cpu_seconds", cur.session.cpu_ticks / hz))
    return out
