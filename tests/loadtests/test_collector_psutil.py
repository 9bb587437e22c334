"""PsutilCollector specifics: TCP connections, the generator's CPU, the host's units."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil

from eicore.node_control import read_pid
from eicore.transport import LocalTransport
from loadtests.collectors.psutil_collector import PsutilCollector
from loadtests.collectors.sockets import (
    SocketCounter,
    established_inodes_netlink,
    established_inodes_proc,
    established_via_pidfd,
)

T = LocalTransport()


def values(rows, node: str) -> dict[str, float]:
    return {r.metric: r.value for r in rows if r.node == node}


def test_pid_follows_the_pid_file(testbed):
    procs = {n.name: psutil.Process(read_pid(T, n)) for n in testbed.nodes}
    fds_before = {name: proc.num_fds() for name, proc in procs.items()}
    with PsutilCollector(testbed) as collector:
        rows = collector.sample(time.time())
    for node in testbed.nodes:
        got = values(rows, node.name)
        assert got["pid"] == read_pid(T, node)
        assert got["rss_bytes"] > 10 * 2**20
        assert got["threads"] >= 10
        # A JVM opens and closes descriptors on its own (sockets of the shared testbed closing,
        # jars), so the count is bracketed by reads before and after the sample.
        counts = (fds_before[node.name], procs[node.name].num_fds())
        assert min(counts) - 2 <= got["open_files"] <= max(counts) + 2, (got, counts)


def test_tcp_connections_counts_established_sockets_of_the_jvm(testbed):
    node = testbed.nodes[0]
    with PsutilCollector(testbed) as collector:
        before = values(collector.sample(time.time()), node.name)["tcp_connections"]
        conns = [socket.create_connection((node.host, node.http_port)) for _ in range(5)]
        try:
            deadline = time.monotonic() + 5
            while True:
                during = values(collector.sample(time.time()), node.name)["tcp_connections"]
                if during >= before + 5 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            for c in conns:
                c.close()
    assert during >= before + 5


def socket_fds(pid: int) -> dict[int, bytes]:
    """fd -> socket inode of a process."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out[int(name)] = target[8:-1].encode()
    return out


def test_pidfd_and_socket_table_agree_for_a_jvm_under_connections(testbed):
    node = testbed.nodes[0]
    pid = read_pid(T, node)
    conns = [socket.create_connection((node.host, node.http_port)) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        while True:  # the JVM accepts them asynchronously
            fds = socket_fds(pid)
            table = established_inodes_netlink()
            by_table = sum(1 for inode in fds.values() if inode in table)
            by_pidfd = established_via_pidfd(pid, list(fds))
            if (by_pidfd == by_table and by_table >= 4) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        by_proc = sum(1 for inode in fds.values() if inode in established_inodes_proc(pid))
    finally:
        for c in conns:
            c.close()
    assert by_pidfd == by_table == by_proc >= 4


def test_netlink_and_proc_agree_on_established_sockets():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            mine = {str(os.fstat(s.fileno()).st_ino).encode() for s in (client, accepted)}
            netlink = established_inodes_netlink()
            proc = established_inodes_proc()
            counted = SocketCounter().count(psutil.Process())
            own = socket_fds(os.getpid())
            by_pidfd = established_via_pidfd(os.getpid(), list(own))
            by_table = sum(1 for inode in own.values() if inode in netlink)
    assert mine <= netlink and mine <= proc
    assert counted is not None and counted[1] >= 2
    assert by_pidfd == by_table >= 2
    with socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))
        idle.listen()  # LISTEN, not ESTABLISHED
        assert str(os.fstat(idle.fileno()).st_ino).encode() not in established_inodes_netlink()


def test_generator_cpu_sums_processes_set_after_start(testbed):
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                             "while time.time()-t<10: pass"])
    try:
        pids: list[int] = []
        with PsutilCollector(testbed, generator_pids=lambda: pids) as collector:
            assert not values(collector.sample(time.time()), "generator")
            pids[:] = [busy.pid, psutil.Process().pid]  # workers appear after start
            collector.sample(time.time())
            time.sleep(0.5)
            got = values(collector.sample(time.time()), "generator")
    finally:
        busy.kill()
        busy.wait()
    assert got["generator_cores"] == 2
    assert got["cpu_percent_max"] >= 30  # a busy loop: ~100 = one core, less on a loaded host
    assert got["cpu_percent"] >= got["cpu_percent_max"]


def test_host_cpu_percent_counts_one_core_as_100(testbed):
    with PsutilCollector(testbed) as collector:
        time.sleep(0.3)
        got = values(collector.sample(time.time()), "host")
    assert got["cpus"] == psutil.cpu_count()
    assert 0 <= got["cpu_percent"] <= 100 * got["cpus"] + 1
    assert 0 < got["mem_used_bytes"] < got["mem_total_bytes"]
