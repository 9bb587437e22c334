"""The multi-host testbed (`eiperf up --hosts`): hosts in network namespaces, reached only over
SSH, nodes at default ports as `wso2`, nginx as root on its own host with symlinked vhosts,
the load balancer's user limited to nginx -t, reload and the write helper through sudo."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from eicore.cluster import load_cluster
from eicore.lbclient import LbClient
from eicore.transport import transport_for
from loadtests.verify import SERVICE, format_checks, run_verify, soap_envelope
from testbed import host_manager
from testbed.hosts import EI_HOME, host_files
from testbed.netns import BENCH_NET, links, namespaces
from tuning.apply import apply_settings
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restore import restore_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """One multi-host testbed (2 nodes, 1 generator) for the module; taken down at the end,
    and nothing of it may be left."""
    d = tmp_path_factory.mktemp("hosts")
    cluster = host_manager.up_hosts(d, nodes=2, generators=1, progress=lambda m: None)
    net = host_manager.saved_network(d)
    yield cluster
    host_manager.down_hosts(d, purge=True, progress=lambda m: None)
    assert not {h.namespace for h in net.hosts} & namespaces()
    assert not ({h.veth_root for h in net.hosts} | {net.bridge}) & links()
    assert not host_manager.sudoers_file(net).exists()
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"])
            if any(str(d) in part or EI_HOME in part for part in (p.info["cmdline"] or []))]
    assert left == []


def test_the_cluster_file_reaches_every_host_over_ssh_at_default_ports(hosts):
    cluster = load_cluster(hosts.source)
    lb = cluster.load_balancer
    assert lb.transport == "ssh" and lb.become == "sudo" and lb.http_url.endswith(":80")
    addresses = [lb.host, *(n.host for n in cluster.nodes)]
    assert all(__import__("ipaddress").ip_address(a) in BENCH_NET for a in addresses)
    for node in cluster.nodes:
        assert (node.transport, node.port_offset, node.member_port) == ("ssh", 0, 4100)
        assert (node.ei_home, node.ssh_user, node.http_port) == (EI_HOME, "wso2", 8280)
        t = transport_for(node)
        try:
            r = t.run(["sh", "-c", f"id -un; stat -c %U {EI_HOME}/bin/integrator.sh"])
        finally:
            t.close()
        assert r.stdout.split() == ["wso2", "wso2"]
    for vhost in lb.vhost_files:
        assert "/sites-enabled/" in vhost
        local = host_files(Path(cluster.testbed_dir), "lb").local(vhost)
        assert local.is_symlink() and os.readlink(local).startswith("../sites-available/")


def test_requests_through_the_lb_are_spread_over_both_nodes(hosts):
    with LbClient(hosts) as client:
        nodes = [client.request("http", "POST", SERVICE, soap_envelope(256)).node
                 for _ in range(20)]
    assert sorted(set(nodes)) == ["node1", "node2"], nodes


def test_verify_passes_over_ssh(hosts):
    checks = run_verify(hosts, n=40)
    assert all(c.ok for c in checks), "\n".join(format_checks(checks))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nginx_change_through_sudo_keeps_the_symlink_and_restores_byte_for_byte(hosts, tmp_path):
    lb_files = host_files(Path(hosts.testbed_dir), "lb")
    link = lb_files.local("/etc/nginx/sites-enabled/ei.http.conf")
    target = lb_files.local("/etc/nginx/sites-available/ei.http.conf")
    before, stat_before = _sha(target), target.stat()
    journal = Journal.begin(tmp_path, Path(hosts.source), "test")
    try:
        apply_settings(hosts, ParamSet({"nginx.proxy_read_timeout": "42s"}), journal,
                       progress=lambda m: None)
        assert link.is_symlink() and "proxy_read_timeout 42s;" in target.read_text()
        st = target.stat()
        assert (st.st_uid, st.st_mode) == (stat_before.st_uid, stat_before.st_mode)
    finally:
        restore_cluster(hosts, journal, progress=lambda m: None)
        journal.close()
    assert link.is_symlink() and _sha(target) == before


def test_the_lb_user_cannot_run_anything_else_as_root(hosts):
    t = transport_for(hosts.load_balancer)
    try:
        r = t.run(["sudo", "-n", "cat", "/etc/shadow"])
        assert r.returncode != 0
        r = t.run(["sh", "-c", "echo x | sudo -n /srv/eiperf-host/bin/eiperf-conf-write "
                               "/etc/passwd"])
        assert r.returncode != 0 and "not a file under /etc/nginx" in r.stderr
    finally:
        t.close()


def test_up_hosts_refuses_a_user_that_is_not_root(tmp_path):
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-m", "eiperf.cli", "up", "--hosts",
                        "--testbed-dir", str(tmp_path / "tb")],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "run it as root" in r.stderr
    assert not (tmp_path / "tb").exists()


def test_a_run_through_the_lbs_address_attributes_nodes_and_reads_jmx(hosts, tmp_path):
    r = subprocess.run([sys.executable, "-m", "eiperf.cli", "run", "--cluster", hosts.source,
                        "-u", "4", "-t", "3s", "--warmup", "1s", "--results", str(tmp_path)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    import pandas as pd

    requests = pd.read_parquet(run_dir / "requests.parquet")
    assert set(requests["node"]) == {"node1", "node2"} and requests["ok"].all()
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    heap = metrics[(metrics["source"] == "jmx") & (metrics["metric"] == "heap_max_bytes")]
    assert set(heap["node"]) == {"node1", "node2"}


def test_a_jvm_change_over_ssh_restarts_nodes_rolling_and_comes_back(hosts, tmp_path):
    node = hosts.nodes[0]
    script = host_files(Path(hosts.testbed_dir), node.name).local(f"{EI_HOME}/bin/integrator.sh")
    before = _sha(script)
    journal = Journal.begin(tmp_path, Path(hosts.source), "test")
    try:
        outcome = apply_settings(hosts, ParamSet({"jvm.xmx": "384m"}), journal, rolling=True,
                                 progress=lambda m: None)
        assert sorted(outcome.restarted) == ["node1", "node2"]
        assert "-Xmx384m" in script.read_text() and script.stat().st_uid != 0  # still wso2's
        with LbClient(hosts) as client:
            assert client.request("http", "POST", SERVICE, soap_envelope(256)).ok
    finally:
        restore_cluster(hosts, journal, progress=lambda m: None)
        journal.close()
    assert _sha(script) == before


def test_jmx_asks_for_the_password_and_a_wrong_one_is_one_line(hosts, monkeypatch):
    from dataclasses import replace

    from loadtests.collectors.jmx import JmxAuthError, JmxConnection

    node = hosts.nodes[0]
    assert node.jmx_user == "admin" and oct(os.stat(node.jmx_password_file).st_mode)[-3:] == "600"
    with JmxConnection.for_node(node) as jmx:
        assert jmx.heap()["max"] > 0
    wrong = "not-the-password-%d" % os.getpid()
    monkeypatch.setenv("EIPERF_TEST_JMX_PW", wrong)
    bad = replace(node, jmx_password_file=None, jmx_password_env="EIPERF_TEST_JMX_PW")
    with pytest.raises(JmxAuthError) as e:
        with JmxConnection.for_node(bad) as jmx:
            jmx.heap()
    assert "refused the credentials of user 'admin'" in str(e.value)
    assert wrong not in str(e.value) and "\n" not in str(e.value)
