"""Shared fixtures: a real testbed (nginx + JVM nodes) on free loopback ports.

The session testbed is started once and shared; tests that stop a node start it again. At the
end every process the suite started is stopped by PID, and the suite fails if one is left.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import psutil
import pytest

from eicore.errors import EiperfError
from eicore.transport import SSHTransport
from testbed import host_manager, manager
from testbed.layout import TestbedPlan
from testbed.netns import links, namespaces
from tests.sshd import start_sshd


def free_testbed_ports(nodes: int, tries: int = 50) -> tuple[int, int]:
    """(port_base, offset_base) whose every testbed port is free right now."""
    rng = random.Random()
    for _ in range(tries):
        plan = TestbedPlan(dir=Path("/nonexistent"), nodes=nodes,
                           port_base=rng.randrange(30000, 40000),
                           offset_base=rng.randrange(1000, 19000), nginx_bin="nginx")
        try:
            manager.check_ports(plan)
        except EiperfError:
            continue
        return plan.port_base, plan.offset_base
    raise RuntimeError("no free port block found for a testbed")


def start_testbed(dir: Path, nodes: int = 2, **kwargs):
    """A testbed on free ports; plans again if a port is taken between the check and the bind.

    `kwargs` go to `manager.up` (e.g. jmx_auth=True)."""
    for attempt in range(3):
        port_base, offset_base = free_testbed_ports(nodes)
        try:
            return manager.up(dir, nodes=nodes, port_base=port_base, offset_base=offset_base,
                              progress=lambda m: None, **kwargs)
        except EiperfError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    """A running two-node testbed shared by the session (nodes on JDK 11, the default)."""
    d = tmp_path_factory.mktemp("testbed")
    cluster = start_testbed(d)
    yield cluster
    manager.down(d, progress=lambda m: None)


@pytest.fixture(scope="session")
def testbed17(tmp_path_factory):
    """A running one-node testbed on JDK 17 (the session `testbed` runs JDK 11, EI 6.x's),
    for what JDK 17 answers differently (legacy JVM flags)."""
    d = tmp_path_factory.mktemp("testbed17")
    cluster = start_testbed(d, nodes=1, java="17")
    yield cluster
    manager.down(d, progress=lambda m: None)


@pytest.fixture
def fresh_testbed_dir(tmp_path):
    """A folder for a testbed of a test's own; whatever the test started there is stopped."""
    d = tmp_path / "tb"
    yield d
    if (d / "cluster.toml").exists():
        manager.down(d, progress=lambda m: None)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One real sshd for the session (own host key, key-only login), stopped by PID at the end."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def ssh_transport(sshd):
    """An SSHTransport to the test sshd, closed after the test."""
    t = SSHTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(sshd.client_key),
                     known_hosts=str(sshd.known_hosts))
    yield t
    t.close()


@pytest.fixture(scope="session")
def hosts_testbed(tmp_path_factory):
    """The multi-host testbed (2 nodes, 2 generators; namespaces, sshd, SSH only), shared by the
    session; taken down at the end, and nothing of it may be left (namespaces, links, sudoers
    rule, processes)."""
    if os.geteuid() != 0:
        pytest.skip("the multi-host testbed needs root")
    d = tmp_path_factory.mktemp("hosts")
    cluster = host_manager.up_hosts(d, nodes=2, generators=2, progress=lambda m: None)
    net = host_manager.saved_network(d)
    yield cluster
    ours = host_manager.namespace_pids(net)  # every process that lives on one of its hosts
    host_manager.down_hosts(d, purge=True, progress=lambda m: None)
    assert not {h.namespace for h in net.hosts} & namespaces()
    assert not ({h.veth_root for h in net.hosts} | {net.bridge}) & links()
    assert not host_manager.sudoers_file(net).exists()
    left = [p.info for p in psutil.process_iter(["pid", "cmdline", "status", "ppid"])
            if p.info["status"] != psutil.STATUS_ZOMBIE
            and (p.info["pid"] in ours or any(str(d) in part for part in (p.info["cmdline"] or [])))]
    assert left == []


@pytest.fixture(params=["loopback", "hosts"])
def any_testbed(request):
    """The same test on both topologies: the loopback testbed and the multi-host one."""
    return request.getfixturevalue("testbed" if request.param == "loopback" else "hosts_testbed")
