"""ProcCollector: /proc parsers on captured text, the sampler shell run for real (dash and bash in
POSIX mode, on this machine), and the collector over SSH on the multi-host testbed -- a run
records host, EI-process and nginx figures under psutil's names, and a host that stops
answering is a gap that closes when it is back."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from loadtests.collectors.proc_collector import ProcCollector
from loadtests.collectors.proc_sampler import Target, sampler_script
from loadtests.collectors.process import build_collectors
from loadtests.collectors.procfs import (
    HOST,
    host_figures,
    mem_available,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_pid_stat,
    parse_pid_status,
    parse_sample,
    parse_snmp,
    parse_sockstat,
    parse_stat_cpu,
    sampler_figures,
    target_figures,
)
from loadtests.collectors.psutil_collector import PsutilCollector
from testbed import host_manager
from testbed.hosts import host_files, start_host, stop_host
from tests.loadtests.conftest import eiperf

# --------------------------------------------------------------------------- captured /proc text
# From a 4-core Debian 12 VM (kernel 6.1) running an EI node, trimmed where lines repeat.

STAT_1 = """\
cpu  470500 3560 58400 36991760 23060 0 11350 1200 0 0
cpu0 139300 2800 23400 9250660 5759 0 5410 300 0 0
cpu1 115800 310 14200 9253190 5824 0 2380 300 0 0
cpu2 107300 120 10000 9245380 5755 0 2120 300 0 0
cpu3 108100 330 10800 9242530 5722 0 1440 300 0 0
intr 146289813 26 9 0 0 0 0 0 0 1 0 0 0 156 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 258544312
btime 1732960000
processes 1271163
procs_running 2
procs_blocked 0
softirq 116654812 1 31954612 60 21866531 524718 0 2178 31455781 0 30672931
"""
# 10 s later (HZ 100, 4 cores: 4000 ticks): user +1200 (of which guest +100), system +400,
# idle +2000, iowait +200, softirq +100, steal +100.
STAT_2 = STAT_1.replace(
    "cpu  470500 3560 58400 36991760 23060 0 11350 1200 0 0",
    "cpu  471700 3560 58800 36993760 23260 0 11450 1300 100 0")

MEMINFO = """\
MemTotal:       16316412 kB
MemFree:         9132184 kB
MemAvailable:   12950576 kB
Buffers:          286356 kB
Cached:          3551028 kB
SwapCached:            0 kB
Active:          4129752 kB
Inactive:        2319164 kB
SwapTotal:       2097148 kB
SwapFree:        1048576 kB
Dirty:               220 kB
AnonPages:       2611416 kB
Shmem:             95532 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap1G:    10485760 kB
"""

NET_DEV_1 = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1048576    1000    0    0    0     0          0         0  1048576    1000    0    0    0     0       0          0
  eth0: 987654321  900000    2    5    0     0          0       120 123456789  800000    0    0    0     0       0          0
docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
"""
NET_DEV_2 = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1058576    1100    0    0    0     0          0         0  1058576    1100    0    0    0     0       0          0
  eth0: 997654321  910000    2   15    0     0          0       120 133456789  805000    1    0    0     0       0          0
docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
"""

DISKSTATS_1 = """\
   7       0 loop0 51 0 2106 9 0 0 0 0 0 40 9 0 0 0 0 0 0
   8       0 sda 61024 13305 4474878 15452 155245 127339 6346192 121563 0 151848 152120 0 0 0 0 9871 15104
   8       1 sda1 60792 13297 4467734 15421 155145 127339 6346192 121516 0 151808 136938 0 0 0 0 0 0
   8       2 sda2 2 0 16 0 0 0 0 0 0 4 0 0 0 0 0 0 0
 259       0 nvme0n1 1000 0 20000 100 2000 0 40000 200 0 300 300 0 0 0 0 0 0
 259       1 nvme0n1p1 1000 0 20000 100 2000 0 40000 200 0 300 300 0 0 0 0 0 0
 259       2 nvme0n10 10 0 100 1 10 0 100 1 0 2 2 0 0 0 0 0 0
 253       0 dm-0 60000 0 4000000 15000 150000 0 6000000 120000 0 150000 135000 0 0 0 0 0 0
  11       0 sr0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""
# 10 s later: sda read 2000 sectors and wrote 20000; dm-0 (on sda) the same, not counted again.
DISKSTATS_2 = (DISKSTATS_1
               .replace("sda 61024 13305 4474878", "sda 61124 13305 4476878")
               .replace("155245 127339 6346192 121563", "155545 127339 6366192 121563")
               .replace("dm-0 60000 0 4000000", "dm-0 60100 0 4002000"))

SNMP_1 = """\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates
Ip: 1 64 73458234 0 2 0 0 0 73457960 70183416 12 40 0 0 0 0 0 0 0
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 45 0 0 45 0 0 0 0 0 0 0 0 0 0 45 0 45 0 0 0 0 0 0 0 0 0 0
IcmpMsg: InType3 OutType3
IcmpMsg: 45 45
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 104525 1339 1015 288 37 73329114 74838251 2016 0 1573 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 128577 45 0 128621 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
"""
# 10 s later: 500 active opens, 50000 segments out of which 250 retransmitted.
SNMP_2 = SNMP_1.replace("Tcp: 1 200 120000 -1 104525 1339 1015 288 37 73329114 74838251 2016",
                        "Tcp: 1 200 120000 -1 105025 1339 1015 288 41 73379114 74888251 2266")

NETSTAT_1 = """\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled ListenOverflows ListenDrops TCPTimeouts
TcpExt: 0 0 0 3 0 12 12 1570
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets
IpExt: 0 0 0 0 0 0 9800000000 5300000000
MPTcpExt: MPCapableSYNRX MPCapableSYNTX ListenOverflows
MPTcpExt: 0 0 999
"""
NETSTAT_2 = NETSTAT_1.replace("TcpExt: 0 0 0 3 0 12 12 1570", "TcpExt: 0 0 0 3 0 32 42 1570")

SOCKSTAT = """\
sockets: used 1419
TCP: inuse 40 orphan 2 tw 16478 alloc 76 mem 90
UDP: inuse 3 mem 2
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = """\
TCP6: inuse 8
UDP6: inuse 1
UDPLITE6: inuse 0
RAW6: inuse 1
FRAG6: inuse 0 memory 0
"""

# An EI JVM (the Bootstrap main thread's command name is "java"), 60 threads.
JAVA_STAT = ("4321 (java) S 4300 4290 4290 0 -1 4194560 812342 0 3 0 {utime} {stime} 0 0 20 0 "
             "60 0 {start} 5217181696 152400 18446744073709551615 94558913789952 94558913790888 "
             "140726347950368 0 0 0 0 2 16800975 0 0 0 17 2 0 0 0 0 0 94558913802640 "
             "94558913803384 94558943715328 140726347958169 140726347958690 140726347958690 "
             "140726347964376 0")
JAVA_STATUS = """\
Name:	java
Umask:	0022
State:	S (sleeping)
Tgid:	4321
Pid:	4321
PPid:	4300
VmPeak:	 5217184 kB
VmSize:	 5095296 kB
VmHWM:	  612340 kB
VmRSS:	  609600 kB
RssAnon:	  585232 kB
Threads:	60
voluntary_ctxt_switches:	3
"""
NGINX_STAT = ("{pid} (nginx) S {ppid} {pid} {pid} 0 -1 4194624 {pid} 0 0 0 {utime} {stime} 0 0 20 0 1 "
              "0 {start} 11046912 488 18446744073709551615 1 1 0 0 0 0 0 1073745920 402745863 0 "
              "0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0")
NGINX_STATUS = "Name:\tnginx\nState:\tS (sleeping)\nVmRSS:\t    {kb} kB\nThreads:\t1\n"
SHELL_STAT = ("777 (sh) S 770 777 777 0 -1 4194304 292 199 0 2 {utime} {stime} {cutime} {cstime} "
              "20 0 1 0 439250 2654208 365 18446744073709551615 0 0 0 0 0 0 0 0 65536 1 0 0 "
              "17 1 0 0 0 0 0")
SSHD_STAT = ("770 (sshd) S 765 765 765 0 -1 4194624 216 0 0 0 {utime} {stime} 0 0 20 0 1 0 "
             "439245 17477632 1376 18446744073709551615 1 1 0 0 0 0 0 4096 65536 0 0 0 17 0 "
             "0 0 0 0 0 0 0 0 0 0 0 0 0")


def round_text(seq: int, *, uptime: float, stat: str, net: str, disk: str, snmp: str,
               netstat: str, java: dict | None, nginx: list[dict], shell: dict, fds: int,
               conns: int | None, tcp: dict[str, int] | None) -> str:
    """What the sampler prints for one round with an EI node (target 0) and nginx (target 1)."""
    out = [f"@begin {seq}", "@file /proc/uptime", f"{uptime:.2f} 1234567.89",
           "@file /proc/stat", stat.rstrip("\n"), "@file /proc/loadavg",
           "1.52 0.98 0.61 3/712 4711", "@file /proc/meminfo", MEMINFO.rstrip("\n"),
           "@file /proc/net/dev", net.rstrip("\n"), "@file /proc/diskstats", disk.rstrip("\n"),
           "@file /proc/net/snmp", snmp.rstrip("\n"), "@file /proc/net/netstat",
           netstat.rstrip("\n"), "@file /proc/net/sockstat", SOCKSTAT.rstrip("\n"),
           "@file /proc/net/sockstat6", SOCKSTAT6.rstrip("\n")]
    if tcp is not None:
        out.append("@tcptable")
        out += [f"@tcp {code} {n}" for code, n in tcp.items()]
    if java is None:
        out.append("@target:0")
    else:
        out += ["@target:0 /proc/4321/stat", JAVA_STAT.format(**java),
                "@target:0 /proc/4321/status", JAVA_STATUS]
    for i, p in enumerate(nginx):
        role = "target:1" if i == 0 else "child:1"
        out += [f"@{role} /proc/{p['pid']}/stat", NGINX_STAT.format(**p),
                f"@{role} /proc/{p['pid']}/status", NGINX_STATUS.format(**p)]
    out += ["@sampler /proc/777/stat", SHELL_STAT.format(**shell),
            "@sampler /proc/777/status", "Name:\tsh\nVmRSS:\t 1460 kB\nThreads:\t1",
            "@session /proc/770/stat", SSHD_STAT.format(utime=3, stime=4),
            "@session /proc/770/status", "Name:\tsshd\nVmRSS:\t 5532 kB\nThreads:\t1",
            f"@fds 0 {fds}"]
    if conns is not None:
        out.append(f"@conns 0 {conns}")
    out.append(f"@end {seq}")
    return "\n".join(out) + "\n"


def inner(text: str, seq: int) -> str:
    """The part between the markers, as the collector hands it to parse_sample."""
    return text.split(f"@begin {seq}\n", 1)[1].split(f"@end {seq}\n", 1)[0]


MASTER = {"pid": 900, "ppid": 1, "utime": 5, "stime": 5, "start": 1000, "kb": 1800}
WORKER = {"pid": 901, "ppid": 900, "utime": 800, "stime": 400, "start": 1001, "kb": 9000}
ROUND_1 = round_text(
    1, uptime=100000.00, stat=STAT_1, net=NET_DEV_1, disk=DISKSTATS_1, snmp=SNMP_1,
    netstat=NETSTAT_1, java={"utime": 90000, "stime": 10000, "start": 500000},
    nginx=[MASTER, WORKER], shell={"utime": 2, "stime": 3, "cutime": 40, "cstime": 55},
    fds=412, conns=37, tcp={"01": 37, "0A": 9, "06": 16478, "08": 2})
# 10 s later: the JVM used 250 ticks (2.5 s: 25 % of a core); nginx reloaded -- its old worker
# is gone and a new one started 6 s into the interval (start time 10000600 ticks = 100006 s).
NEW_WORKER = {"pid": 950, "ppid": 900, "utime": 30, "stime": 20, "start": 10000600, "kb": 8800}
ROUND_2 = round_text(
    2, uptime=100010.00, stat=STAT_2, net=NET_DEV_2, disk=DISKSTATS_2, snmp=SNMP_2,
    netstat=NETSTAT_2, java={"utime": 90200, "stime": 10050, "start": 500000},
    nginx=[{**MASTER, "utime": 6, "stime": 9}, NEW_WORKER],
    shell={"utime": 2, "stime": 3, "cutime": 44, "cstime": 60}, fds=420, conns=None, tcp=None)


def figures(pairs) -> dict[str, float]:
    out = dict(pairs)
    assert len(out) == len(list(pairs)), "a metric name given twice"
    return out


# --------------------------------------------------------------------------- parsers


def test_stat_gives_the_cpu_line_and_counts_online_cores():
    modes, cpus = parse_stat_cpu(STAT_1)
    assert cpus == 4
    assert modes["user"] == 470500 and modes["idle"] == 36991760 and modes["steal"] == 1200
    assert modes["guest"] == 0 and modes["guest_nice"] == 0
    with pytest.raises(ValueError):
        parse_stat_cpu("intr 1 2 3\n")


def test_meminfo_in_bytes_and_available_without_memavailable():
    mem = parse_meminfo(MEMINFO)
    assert mem["MemTotal"] == 16316412 * 1024 and mem["SwapFree"] == 1048576 * 1024
    assert mem["HugePages_Total"] == 0  # a count, not kB
    assert mem_available(mem) == 12950576 * 1024
    old_kernel = {k: v for k, v in mem.items() if k != "MemAvailable"}
    assert mem_available(old_kernel) == (9132184 + 286356 + 3551028) * 1024


def test_loadavg():
    assert parse_loadavg("1.52 0.98 0.61 3/712 4711\n") == (1.52, 0.98, 0.61)


def test_net_dev_counters_per_interface():
    net = parse_net_dev(NET_DEV_1)
    assert set(net) == {"lo", "eth0", "docker0"}
    eth0 = net["eth0"]
    assert (eth0.recv_bytes, eth0.recv_packets, eth0.recv_errors, eth0.recv_drops) == (
        987654321, 900000, 2, 5)
    assert (eth0.sent_bytes, eth0.sent_packets, eth0.sent_errors) == (123456789, 800000, 0)
    # very old kernels glue a long byte count to the colon
    assert parse_net_dev("  eth1:12345678901 5 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n")["eth1"].sent_bytes == 7


def test_diskstats_counts_each_disk_once():
    read, written = parse_diskstats(DISKSTATS_1)
    # sda and nvme0n1 and nvme0n10 (a namespace, not a partition of nvme0n1); not sda1/sda2,
    # nvme0n1p1 (partitions), dm-0 (stacked on sda), loop0, sr0
    assert read == (4474878 + 20000 + 100) * 512
    assert written == (6346192 + 40000 + 100) * 512
    mmc = "179 0 mmcblk0 10 0 80 0 0 0 0 0 0 0 0\n179 1 mmcblk0p1 10 0 80 0 0 0 0 0 0 0 0\n"
    assert parse_diskstats(mmc) == (80 * 512, 0)


def test_snmp_and_netstat_sections():
    tcp = parse_snmp(SNMP_1, "Tcp")
    assert tcp["RetransSegs"] == 2016 and tcp["CurrEstab"] == 37 and tcp["MaxConn"] == -1
    ext = parse_snmp(NETSTAT_1, "TcpExt")
    assert ext["ListenOverflows"] == 12  # not MPTcpExt's
    assert parse_snmp(SNMP_1, "Nope") == {}


def test_sockstat_tcp_and_tcp6():
    assert parse_sockstat(SOCKSTAT) == {"inuse": 40, "orphan": 2, "tw": 16478, "alloc": 76,
                                        "mem": 90}
    assert parse_sockstat(SOCKSTAT6, "TCP6") == {"inuse": 8}


def test_pid_stat_with_an_odd_command_name():
    s = parse_pid_stat("4242 (a (b) c) R 1 4242 4242 0 -1 0 0 0 0 0 17 4 6 8 20 0 12 0 999 0 0")
    assert (s.pid, s.comm, s.state, s.ppid) == (4242, "a (b) c", "R", 1)
    assert (s.utime, s.stime, s.cutime, s.cstime, s.threads, s.starttime) == (17, 4, 6, 8, 12, 999)
    assert parse_pid_status(JAVA_STATUS) == {"rss_bytes": 609600 * 1024, "threads": 60}


# --------------------------------------------------------------------------- one round, two rounds


def test_a_round_parses_into_a_snapshot():
    snap = parse_sample(inner(ROUND_1, 1))
    assert snap.uptime == 100000.0 and snap.cpus == 4 and snap.load == (1.52, 0.98, 0.61)
    assert snap.sockstat["inuse"] == 48  # IPv4 40 + IPv6 8
    assert snap.tcp_states["established"] == 37 and snap.tcp_states["syn_recv"] == 0
    node, lb = snap.targets[0], snap.targets[1]
    assert node.pid == 4321 and node.proc.stat.comm == "java"
    assert (node.open_files, node.tcp_connections) == (412, 37)
    assert lb.pid == 900 and [c.stat.pid for c in lb.children] == [901]
    assert snap.sampler.pid == 777 and snap.session.comm == "sshd"
    with pytest.raises(ValueError):
        parse_sample("@file /proc/loadavg\n1 2 3 1/2 3\n")


def test_host_figures_of_two_rounds():
    one, two = parse_sample(inner(ROUND_1, 1)), parse_sample(inner(ROUND_2, 2))
    first = figures(host_figures(None, one))
    assert "cpu_percent" not in first and "net_sent_bytes_per_s" not in first  # rates need two
    assert first["tcp_state.time_wait"] == 16478 and first["tcp_state.listen"] == 9
    got = figures(host_figures(one, two))
    assert got["cpus"] == 4 and got["load1"] == 1.52 and got["load15"] == 0.61
    assert got["mem_total_bytes"] == 16316412 * 1024
    assert got["mem_used_bytes"] == (16316412 - 12950576) * 1024
    assert got["swap_used_bytes"] == (2097148 - 1048576) * 1024
    # 4000 ticks in all: busy 1800 (idle 2000 and iowait 200 are not busy) -> 180 % of one core
    assert got["cpu_percent"] == pytest.approx(180.0)
    assert got["cpu_user_percent"] == pytest.approx(30.0)
    assert got["cpu_system_percent"] == pytest.approx(10.0)
    assert got["cpu_idle_percent"] == pytest.approx(50.0)
    assert got["cpu_iowait_percent"] == pytest.approx(5.0)
    assert got["cpu_steal_percent"] == pytest.approx(2.5)
    assert got["cpu_softirq_percent"] == pytest.approx(2.5)
    # all interfaces, loopback included, as psutil counts them
    assert got["net_recv_bytes_per_s"] == pytest.approx((10000 + 10000000) / 10)
    assert got["net_sent_bytes_per_s"] == pytest.approx((10000 + 10000000) / 10)
    assert got["net.eth0.recv_packets_per_s"] == pytest.approx(1000)
    assert got["net.eth0.recv_drops_per_s"] == pytest.approx(1)
    assert got["net.eth0.sent_errors_per_s"] == pytest.approx(0.1)
    assert got["net.docker0.recv_bytes_per_s"] == 0
    assert got["disk_read_bytes_per_s"] == pytest.approx(2000 * 512 / 10)
    assert got["disk_write_bytes_per_s"] == pytest.approx(20000 * 512 / 10)
    assert got["tcp_retrans_segs_per_s"] == pytest.approx(25)
    assert got["tcp_out_segs_per_s"] == pytest.approx(5000)
    assert got["tcp_active_opens_per_s"] == pytest.approx(50)
    assert got["tcp_listen_overflows_per_s"] == pytest.approx(2)
    assert got["tcp_listen_drops_per_s"] == pytest.approx(3)
    assert got["tcp_curr_estab"] == 41 and got["tcp_time_wait"] == 16478
    assert got["tcp_inuse"] == 48 and got["tcp_orphans"] == 2
    assert not any(k.startswith("tcp_state.") for k in got)  # tables not read in round 2


def test_node_process_figures():
    one, two = parse_sample(inner(ROUND_1, 1)), parse_sample(inner(ROUND_2, 2))
    first, why = target_figures("node", None, one, 0, 100, "java")
    assert why == "" and "cpu_percent" not in dict(first)
    got, _ = target_figures("node", one, two, 0, 100, "java")
    got = figures(got)
    assert got["pid"] == 4321 and got["threads"] == 60 and got["open_files"] == 420
    assert got["rss_bytes"] == 609600 * 1024
    assert got["cpu_percent"] == pytest.approx(250 / 100 / 10 * 100)  # 2.5 s in 10 s
    assert "tcp_connections" not in got  # only on rounds that read the socket tables
    assert figures(first)["tcp_connections"] == 37


def test_a_stale_or_missing_pid_is_no_process():
    snap = parse_sample(inner(ROUND_1, 1))
    got, why = target_figures("node", None, snap, 0, 100, "nginx")
    assert got is None and "'java' process, not 'nginx'" in why and "stale" in why
    gone = parse_sample(inner(ROUND_1, 1).replace(
        "@target:0 /proc/4321/stat\n" + JAVA_STAT.format(utime=90000, stime=10000, start=500000),
        "@target:0 /proc/4321/stat\n@missing /proc/4321/stat"))
    got, why = target_figures("node", None, gone, 0, 100, "java")
    assert got is None and why == "PID 4321 from its PID file is not running"
    none = parse_sample(inner(round_text(
        3, uptime=1.0, stat=STAT_1, net=NET_DEV_1, disk=DISKSTATS_1, snmp=SNMP_1,
        netstat=NETSTAT_1, java=None, nginx=[], shell={"utime": 0, "stime": 0, "cutime": 0,
                                                      "cstime": 0}, fds=0, conns=None, tcp=None), 3))
    assert target_figures("node", None, none, 0, 100, "java") == (None, "no PID in its PID file")


def test_a_restarted_process_counts_its_own_cpu_from_its_start():
    one = parse_sample(inner(ROUND_1, 1))
    restarted = ROUND_2.replace(" 0 500000 ", " 0 10000500 ")
    two = parse_sample(inner(restarted, 2))
    got = figures(target_figures("node", one, two, 0, 100, "java")[0])
    # started after the first round: all its 90200 + 10050 ticks are inside the interval
    assert got["cpu_percent"] == pytest.approx((90200 + 10050) / 100 / 10 * 100)


def test_nginx_figures_sum_the_master_and_its_workers_across_a_reload():
    one, two = parse_sample(inner(ROUND_1, 1)), parse_sample(inner(ROUND_2, 2))
    got = figures(target_figures("lb", one, two, 1, 100, "nginx")[0])
    assert got["pid"] == 900 and got["processes"] == 2
    assert got["rss_bytes"] == (1800 + 8800) * 1024
    # master +5 ticks; the old worker is gone (its last interval is lost); the new worker
    # started during the interval, so all its 50 ticks count
    assert got["cpu_percent"] == pytest.approx((5 + 50) / 100 / 10 * 100)
    assert "threads" not in got and "open_files" not in got


def test_sampler_cost_includes_the_commands_the_shell_ran():
    two = parse_sample(inner(ROUND_2, 2))
    assert figures(sampler_figures(two, 100)) == {
        "sampler_cpu_seconds": pytest.approx((2 + 3 + 44 + 60) / 100),
        "sampler_sshd_cpu_seconds": pytest.approx(0.07)}


# --------------------------------------------------------------------------- the sampler shell


def shell_round(proc: subprocess.Popen, seq: int, full: int) -> str:
    proc.stdin.write(f"s {seq} {full}\n".encode())
    proc.stdin.flush()
    return read_until(proc, f"@end {seq}\n")


def read_until(proc: subprocess.Popen, end: str, timeout: float = 10.0) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while end.encode() not in buf:
        assert time.monotonic() < deadline, f"no {end!r} from the sampler: {buf[-500:]!r}"
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the sampler shell ended: {buf[-500:]!r}"
            buf += chunk
    return buf.decode()


SHELLS = {"dash": ["/bin/dash"], "bash --posix": ["/bin/bash", "--posix"]}


@pytest.fixture
def targets(tmp_path):
    """A process with a PID file (a "node" target holding 2 TCP connections: this test process),
    a process with two children (an "lb" target), and a PID file that names no process."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"],
                              start_new_session=True)
    (tmp_path / "node.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "lb.pid").write_text(f"{parent.pid}\n")
    deadline = time.monotonic() + 5
    while len(Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield [Target("n", "node", str(tmp_path / "node.pid")),
           Target("lb", "lb", str(tmp_path / "lb.pid")),
           Target("gone", "node", str(tmp_path / "missing.pid"))]
    os.killpg(parent.pid, signal.SIGTERM)
    parent.wait(5)
    for s in (client, server, listener):
        s.close()


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_the_sampler_script_runs_in_a_posix_shell(shell, targets):
    proc = subprocess.Popen(SHELLS[shell], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(sampler_script(targets).encode())
        proc.stdin.flush()
        hello = read_until(proc, "\n").split()
        assert hello[:2] == ["@hello", str(proc.pid)] and hello[2] == str(os.sysconf("SC_CLK_TCK"))
        one = parse_sample(inner(shell_round(proc, 1, 1), 1))
        time.sleep(0.1)  # /proc/uptime counts hundredths: rates need rounds apart
        # two rounds asked at once: awk must not read the second request from the shell's stdin
        proc.stdin.write(b"s 2 0\ns 3 1\n")
        proc.stdin.flush()
        text = read_until(proc, "@end 3\n")
        two, three = parse_sample(inner(text, 2)), parse_sample(inner(text, 3))
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert proc.returncode == 0 and proc.stderr.read() == b""
    me, lb, gone = (three.targets[i] for i in range(3))
    assert me.pid == os.getpid() and me.proc.stat.comm == Path("/proc/self/comm").read_text().strip()
    assert abs(me.open_files - (len(os.listdir("/proc/self/fd")) - 1)) <= 1  # less listdir's own
    assert me.tcp_connections >= 2  # the pair the fixture opened
    assert two.targets[0].tcp_connections is None and two.tcp_states is None
    assert one.tcp_states["listen"] >= 1 and three.tcp_states["established"] >= 2
    assert [c.stat.comm for c in lb.children] == ["sleep", "sleep"]
    assert gone.pid is None and gone.proc is None
    assert three.sampler.pid == proc.pid and three.session.pid == os.getpid()
    node = figures(target_figures("node", one, three, 0, 100, None)[0])  # 0.1 s apart at least
    assert {"pid", "rss_bytes", "threads", "open_files", "tcp_connections", "cpu_percent"} <= set(node)
    host = figures(host_figures(one, three))
    assert host["cpus"] == os.cpu_count() and 0 <= host["cpu_percent"] <= 100 * os.cpu_count()
    assert host["mem_total_bytes"] > host["mem_used_bytes"] > 0


# --------------------------------------------------------------------------- over SSH


def names_of(rows) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.node, set()).add(r.metric)
    return out


@pytest.fixture(scope="module")
def psutil_names(testbed) -> dict[str, set[str]]:
    """The metric names psutil gives a local node and this machine's "host" series."""
    with PsutilCollector(testbed, generator_pids=[os.getpid()]) as collector:
        collector.sample(time.time())
        time.sleep(0.3)
        got = names_of(collector.sample(time.time()))
    return {"node": got[testbed.nodes[0].name], "host": got["host"]}


def test_a_run_over_ssh_records_host_process_and_nginx_figures_under_psutils_names(
        hosts_testbed, psutil_names, tmp_path):
    r = eiperf("run", "--cluster", hosts_testbed.source, "-u", "4", "-t", "3s", "--warmup",
               "1s", "--results", str(tmp_path))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    m = pd.read_parquet(run_dir / "metrics.parquet")
    proc = m[m.source == "proc"]
    got = {node: set(g.metric) for node, g in proc.groupby("node")}
    assert set(got) == {"node1", "node2", "lb"}
    host_names = {HOST + name for name in psutil_names["host"]}
    for node in ("node1", "node2"):
        assert psutil_names["node"] <= got[node], psutil_names["node"] - got[node]
        assert host_names <= got[node], host_names - got[node]
        assert {"host.cpu_iowait_percent", "host.cpu_steal_percent", "host.tcp_retrans_segs_per_s",
                "host.disk_write_bytes_per_s", "host.tcp_state.established",
                "host.net.eth0.recv_packets_per_s", "sampler_cpu_seconds"} <= got[node]
    assert {"cpu_percent", "rss_bytes", "processes", "pid"} | host_names <= got["lb"]
    # the figures are the nodes' own: their JVMs served the run, nginx ran a master + workers
    for node in ("node1", "node2"):
        cpu = proc[(proc.node == node) & (proc.metric == "cpu_percent")].value
        assert cpu.max() > 1, cpu.tolist()
    assert proc[(proc.node == "lb") & (proc.metric == "processes")].value.min() >= 2
    eth0 = proc[(proc.node == "lb") & (proc.metric == "host.net.eth0.recv_bytes_per_s")].value
    assert eth0.max() > 10_000  # the requests went in through the LB host's interface
    # the summary now has the remote nodes' CPU and RSS (psutil alone had none)
    lines = [ln for ln in r.stdout.splitlines() if " resources: CPU mean " in ln]
    assert len(lines) == 2 and not any("CPU mean n/a" in ln or "RSS max n/a" in ln for ln in lines)
    collector = m[(m.node == "collector") & (m.metric == "gaps.proc")]
    assert collector.value.max() == 0


# --------------------------------------------------------------------------- a host that goes away


@pytest.fixture(scope="module")
def small_hosts(tmp_path_factory):
    """A multi-host testbed of this module's own (one node, no generator): these tests stop
    its hosts, so the session's shared one is never touched."""
    if os.geteuid() != 0:
        pytest.skip("the multi-host testbed needs root")
    d = tmp_path_factory.mktemp("small-hosts")
    cluster = host_manager.up_hosts(d, nodes=1, generators=0, progress=lambda m: None)
    yield cluster, host_manager.saved_network(d)
    host_manager.down_hosts(d, purge=True, progress=lambda m: None)


def stop_sshd(dir: Path, net, name: str) -> None:
    """Stop a host's sshd and end the SSH sessions it served (as a reboot of sshd does); the
    JVM, started with nohup through integrator.sh, runs on."""
    assert stop_host(host_files(dir, name))
    ns = net.host(name).namespace
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                os.kill(int(pid), signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            pass


def start_sshd(dir: Path, net, name: str) -> None:
    start_host(net.host(name), host_files(dir, name))


def test_a_hung_host_is_a_gap_within_the_deadline_and_is_sampled_again(small_hosts):
    cluster, net = small_hosts
    veth = net.host("node1").veth_root
    collector = ProcCollector(cluster, deadline_s=0.5, retry_s=1.0, hang_s=1.5,
                              connect_timeout_s=1.0)
    with collector:
        assert "node1" in names_of(collector.sample(time.time()))
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        try:
            slowest, rounds = 0.0, []
            for _ in range(6):
                began = time.monotonic()
                rows = collector.sample(time.time())
                slowest = max(slowest, time.monotonic() - began)
                rounds.append(names_of(rows))
                time.sleep(0.3)
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        assert all("node1" not in got and "lb" in got for got in rounds)
        assert slowest < 1.0 and collector.gaps_by_node["node1"] == 6
        assert set(collector.gaps_by_node) == {"node1"}
        deadline = time.monotonic() + 20
        while "node1" not in names_of(collector.sample(time.time())):
            assert time.monotonic() < deadline, "node1 was not sampled again"
            time.sleep(0.3)


def test_sshd_stopped_mid_run_is_a_gap_and_the_run_completes(small_hosts, tmp_path):
    cluster, net = small_hosts
    dir = Path(cluster.testbed_dir)
    results = tmp_path / "results"
    events: dict[str, float] = {}

    def outage() -> None:
        deadline = time.monotonic() + 60
        while not any("proc: sampling node1" in p.read_text()  # the last collector started
                      for p in results.glob("*/metrics.parquet.log")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        time.sleep(3)
        events["stop"] = time.time()
        stop_sshd(dir, net, "node1")
        time.sleep(3)
        start_sshd(dir, net, "node1")
        events["start"] = time.time()

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        r = eiperf("run", "--cluster", cluster.source, "-u", "2", "-t", "10s", "--warmup",
                   "1s", "--results", str(results))
    finally:
        thread.join()
        if "stop" in events and "start" not in events:
            start_sshd(dir, net, "node1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert set(events) == {"stop", "start"}
    (run_dir,) = [p for p in results.iterdir() if (p / "run.json").exists()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    m = pd.read_parquet(run_dir / "metrics.parquet")
    node1 = m[(m.source == "proc") & (m.node == "node1") & (m.metric == "host.cpu_percent")]
    ts = node1.ts.sort_values().to_numpy()
    assert (ts < events["stop"]).any() and (ts > events["start"]).any(), "no rows around the gap"
    assert not ((ts > events["stop"] + 1.0) & (ts < events["start"])).any()
    gaps = m[(m.node == "collector") & (m.metric == "gaps.proc")].value
    assert gaps.max() >= 2
    pids = m[(m.source == "proc") & (m.node == "node1") & (m.metric == "pid")].value
    assert pids.nunique() == 1  # the JVM ran on: nohup'ed by integrator.sh, no child of sshd
    requests = pd.read_parquet(run_dir / "requests.parquet")
    assert (requests[requests.ts > events["start"]].node == "node1").any()
    lb = m[(m.source == "proc") & (m.node == "lb") & (m.metric == "host.cpu_percent")]
    assert lb.ts.between(events["stop"] + 1.0, events["start"]).any()  # the others went on
    log = (run_dir / "metrics.parquet.log").read_text()
    assert "proc: no samples from node1" in log and "proc: node1 answers again" in log


def test_only_ssh_hosts_get_a_proc_collector(testbed, hosts_testbed):
    assert "proc" not in [c.name for c in build_collectors(testbed)]
    (proc,) = [c for c in build_collectors(hosts_testbed) if c.name == "proc"]
    assert proc.targets == ["node1", "node2", "lb"]

