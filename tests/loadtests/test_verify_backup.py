"""`eiperf verify` with a `backup` member in the HTTP (and the HTTPS) upstream (active/passive),
on the real session testbed: the active takes the traffic, the backup takes it while the active is
stopped, the active takes it back once started again; with the backup itself down while the
active is stopped, the check fails saying so. The testbed's nginx file is put back after."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from eicore import lb_control, node_control
from eicore.lbclient import LbClient
from eicore.transport import LocalTransport
from loadtests.verify import backup_members, check_active_passive, format_checks, run_verify


@contextmanager
def _node2_backup_in(testbed, scheme: str):
    """node2 a backup member of the `scheme` upstream (the HTTPS one drops its `ip_hash`,
    which nginx refuses beside `backup`), nginx reloaded; afterwards the file as it was, nginx
    reloaded, and every node up and routed."""
    lb = testbed.load_balancer
    t = LocalTransport()
    path = Path(lb.conf_path(next(v for v in lb.vhost_files if v.endswith(f"/ei.{scheme}.conf"))))
    original = path.read_bytes()
    node2 = testbed.nodes[1]
    line = f"server {node2.host}:{getattr(node2, scheme + '_port')};".encode()
    assert line in original
    path.write_bytes(original.replace(line, line[:-1] + b" backup;").replace(b"    ip_hash;\n", b""))
    lb_control.reload(t, lb)
    try:
        yield testbed
    finally:
        path.write_bytes(original)
        lb_control.reload(t, lb)
        for node in testbed.nodes:
            node_control.start_node(t, node)
            node_control.wait_routed(testbed, node)


@pytest.fixture
def node2_backup(testbed):
    with _node2_backup_in(testbed, "http") as cluster:
        yield cluster


def test_backup_serves_only_while_the_active_is_down(node2_backup):
    assert backup_members(node2_backup) == ["node2"]
    assert backup_members(node2_backup, "https") == []
    checks = run_verify(node2_backup, n=20)
    lines = format_checks(checks)
    by = {c.name.split(" (")[0]: c for c in checks}
    assert all(c.ok for c in checks), "\n".join(lines)
    assert "stopped node1" in by["failover"].details[0]  # an active: the backup is no victim
    ap = by["active/passive"]
    assert ap.details[0] == "all up: 20/20 ok, served by node1 20"
    assert ap.details[1] == "actives node1 stopped: 20/20 ok, served by node2 20"
    assert ap.details[-1] == "actives back: 20/20 ok, served by node1 20"
    dist = by["per-node distribution matches the balancing method"]
    assert any("backup node2 served 0" in d for d in dist.details)


def test_active_passive_fails_when_the_backup_is_down_too(node2_backup):
    node_control.stop_node(LocalTransport(), node2_backup.nodes[1])
    with LbClient(node2_backup) as client:
        ap = check_active_passive(node2_backup, client, 10)
    assert not ap.ok and "NOT as nginx's backup rule says" in ap.evidence
    assert ap.details[1].startswith("actives node1 stopped: 0/10 ok"), ap.details


def test_https_active_passive_is_checked_on_its_own_upstream(testbed):
    """nginx keeps a failed server out of each upstream on its own: the HTTPS check waits for
    HTTPS to route to the active again, not only HTTP."""
    with _node2_backup_in(testbed, "https") as cluster:
        assert backup_members(cluster, "https") == ["node2"]
        assert backup_members(cluster, "http") == []
        with LbClient(cluster) as client:
            ap = check_active_passive(cluster, client, 10, "https")
        assert ap.ok, ap
        assert ap.name.startswith("active/passive HTTPS")
        assert ap.details[0] == "all up: 10/10 ok, served by node1 10"
        assert ap.details[1] == "actives node1 stopped: 10/10 ok, served by node2 10"
        assert ap.details[-1] == "actives back: 10/10 ok, served by node1 10"
