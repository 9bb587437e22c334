"""Node control on the testbed: a node reached over SSH, and rolling restarts under traffic."""

from __future__ import annotations

import threading
import time

import pytest

from eicore import node_control
from eicore.cluster import load_cluster
from eicore.lbclient import LbClient, Reply
from eicore.transport import local_pid_alive, transport_for
from eicore.transport.ssh import SSHTransport
from loadtests.messages import soap_envelope
from tests.sshd import cluster_file_with_ssh_node

SERVICE = "/services/SampleProxy"
MAX_REQUESTS = 2000
MAX_SECONDS = 60.0
PACE_S = 0.02


def _with_ssh_node(cluster, sshd, tmp_path, name: str):
    """The testbed's cluster.toml with `name` reached over SSH, written and read back."""
    path = cluster_file_with_ssh_node(cluster, sshd, tmp_path / "cluster-ssh.toml", name)
    assert 'transport = "ssh"' in path.read_text()
    return load_cluster(path)


def test_stop_start_restart_a_node_over_ssh(testbed, sshd, tmp_path):
    cluster = _with_ssh_node(testbed, sshd, tmp_path, testbed.nodes[-1].name)
    node = cluster.nodes[-1]
    t = transport_for(node)
    try:
        assert isinstance(t, SSHTransport)
        before = node_control.node_state(t, node)
        assert before.up and local_pid_alive(before.pid)

        assert node_control.stop_node(t, node) is True
        assert not local_pid_alive(before.pid)
        assert not node_control.port_open(node.host, node.http_port)
        assert node_control.stop_node(t, node) is False  # already stopped

        offset = t.size(node.log_file)
        pid = node_control.start_node(t, node)
        assert pid != before.pid and local_pid_alive(pid)
        assert node_control.STARTED_RE.search(t.read_from(node.log_file, offset))
        t.close()  # the SSH session that started it is gone: the node keeps running
        assert local_pid_alive(pid) and node_control.port_open(node.host, node.http_port)

        again = node_control.restart_node(t, node)
        assert again != pid and local_pid_alive(again) and not local_pid_alive(pid)
    finally:
        node_control.start_node(t, node)  # leave the shared testbed running
        t.close()


def test_restart_all_at_once_with_one_node_over_ssh(testbed, sshd, tmp_path):
    cluster = _with_ssh_node(testbed, sshd, tmp_path, testbed.nodes[0].name)
    local = transport_for(testbed.nodes[0])
    old = {n.name: node_control.read_pid(local, n) for n in cluster.nodes}
    messages: list[str] = []
    pids = node_control.restart_nodes(cluster, rolling=False, progress=messages.append)
    assert set(pids) == {n.name for n in cluster.nodes}
    for n in cluster.nodes:
        assert pids[n.name] != old[n.name]
        assert local_pid_alive(pids[n.name]) and not local_pid_alive(old[n.name])
        assert node_control.port_open(n.host, n.http_port)
    assert sorted(messages) == sorted(f"{n} restarted (pid {p})" for n, p in pids.items())


class _Traffic(threading.Thread):
    """SOAP requests through the LB's HTTP vhost until told to stop (bounded in count/time)."""

    def __init__(self, cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.replies: list[tuple[float, Reply]] = []
        self.done = threading.Event()

    def run(self) -> None:
        body = soap_envelope(1024)
        end = time.monotonic() + MAX_SECONDS
        with LbClient(self.cluster, timeout=10) as client:
            while (not self.done.is_set() and len(self.replies) < MAX_REQUESTS
                   and time.monotonic() < end):
                self.replies.append((time.monotonic(), client.request("http", "POST", SERVICE, body)))
                time.sleep(PACE_S)


@pytest.mark.timeout(180)
def test_rolling_restart_keeps_the_load_balancer_serving(testbed):
    t = transport_for(testbed.nodes[0])
    old = {n.name: node_control.read_pid(t, n) for n in testbed.nodes}
    messages: list[str] = []
    traffic = _Traffic(testbed)
    traffic.start()
    try:
        time.sleep(0.5)  # traffic flows before the first node goes down
        began = time.monotonic()
        pids = node_control.restart_nodes(testbed, rolling=True, progress=messages.append)
        ended = time.monotonic()
        time.sleep(0.3)
    finally:
        traffic.done.set()
        traffic.join(MAX_SECONDS + 15)
    assert not traffic.is_alive()
    during = [r for ts, r in traffic.replies if began <= ts <= ended]
    failed = [r for _, r in traffic.replies if not r.ok]
    assert len(during) >= 100, f"too little traffic during the restart ({len(during)})"
    assert not failed, (f"{len(failed)} of {len(traffic.replies)} requests failed: "
                        + "; ".join(f"{r.status} {r.error}" for r in failed[:5]))
    for n in testbed.nodes:
        assert pids[n.name] != old[n.name] and local_pid_alive(pids[n.name])
    # Rolling: the second node went down only after the first served through nginx again.
    assert [m.split()[0] for m in messages] == [n.name for n in testbed.nodes]
    assert all("served through the load balancer after" in m for m in messages)
    served = {r.node for ts, r in traffic.replies if ts > ended - 0.5} | {
        r.node for r in during}
    assert served >= {n.name for n in testbed.nodes}
