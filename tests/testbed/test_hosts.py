"""The multi-host testbed (`eiperf up --hosts`): hosts in network namespaces, reached only over
SSH, nodes at default ports as `wso2`, nginx as root on its own host with symlinked vhosts,
the load balancer's user limited to nginx -t, reload and the write helper through sudo."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from eicore.cluster import load_cluster
from eicore.errors import EiperfError
from eicore.lbclient import LbClient
from eicore.transport import transport_for
from loadtests.collectors.jmx import JmxAuthError, JmxConnection
from loadtests.verify import SERVICE, format_checks, run_verify, soap_envelope
from testbed import host_manager, manager
from testbed.host_layout import check_node_java, render_hosts
from testbed.hosts import EI_HOME, NODE_USER, HostError, host_files
from testbed.netns import BENCH_NET, create_network, links, namespaces
from testbed.netns import plan_network as netns_plan
from testbed.node_build import STATE_FILE, NodeJava, resolve_node_java, save_node_java
from tuning.apply import apply_settings
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restore import restore_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


@pytest.fixture
def hosts(hosts_testbed):
    return hosts_testbed


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
    node = hosts.nodes[0]
    assert node.jmx_user == "admin" and oct(os.stat(node.jmx_password_file).st_mode)[-3:] == "600"
    with JmxConnection.for_node(node) as jmx:
        assert jmx.heap()["max"] > 0
    wrong = f"not-the-password-{os.getpid()}"
    monkeypatch.setenv("EIPERF_TEST_JMX_PW", wrong)
    bad = replace(node, jmx_password_file=None, jmx_password_env="EIPERF_TEST_JMX_PW")
    with pytest.raises(JmxAuthError) as e:
        with JmxConnection.for_node(bad) as jmx:
            jmx.heap()
    assert "refused the credentials of user 'admin'" in str(e.value)
    assert wrong not in str(e.value) and "\n" not in str(e.value)


EIPERF = [sys.executable, "-m", "eiperf.cli"]


def _config_files(cluster) -> dict[str, str]:
    """sha256 of every config file on every host (runtime files left out), by host path."""
    d = Path(cluster.testbed_dir)
    out = {}
    for host, root in (("lb", "/etc/nginx"), *((n.name, EI_HOME) for n in cluster.nodes)):
        base = host_files(d, host).local(root)
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base)
            if p.is_symlink():
                out[f"{host}:{rel}"] = "-> " + os.readlink(p)
            elif p.is_file() and not ({"logs", "tmp"} & set(rel.parts)) and p.suffix != ".pid" \
                    and rel.parts[:2] != ("conf", "jmx"):
                out[f"{host}:{rel}"] = _sha(p)
    return out


def test_deploy_over_ssh_then_restore_removes_it(hosts, tmp_path):
    before = _config_files(hosts)
    r = subprocess.run([*EIPERF, "deploy", "--cluster", hosts.source, "--name", "HostsProxy",
                        "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.split()[:2] for ln in r.stdout.splitlines()[1:3]] == [["ok", "node1:"],
                                                                     ["ok", "node2:"]]
    proxy = f"{EI_HOME}/repository/deployment/server/synapse-configs/default/proxy-services"
    for n in hosts.nodes:
        deployed = host_files(Path(hosts.testbed_dir), n.name).local(f"{proxy}/HostsProxy.xml")
        assert deployed.stat().st_uid != 0  # written as wso2, the node's own user
    r = subprocess.run([*EIPERF, "tune", "restore", "--results", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _config_files(hosts) == before


SWEEP = """\
seed = 2
slo = ["errors<5%"]
[parameters]
"nginx.lb_method" = ["round_robin", "least_conn"]
[load]
users = 2
duration = "2s"
warmup = "1s"
"""


def test_a_two_trial_sweep_over_ssh_restores_every_file(hosts, tmp_path):
    before = _config_files(hosts)
    (tmp_path / "spec.toml").write_text(SWEEP)
    r = subprocess.run([*EIPERF, "sweep", str(tmp_path / "spec.toml"), "--cluster", hosts.source,
                        "--results", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "best: trial" in r.stdout and "eiperf tune apply --set nginx.lb_method=" in r.stdout
    assert _config_files(hosts) == before


def test_sigkill_of_a_sweep_then_tune_restore(hosts, tmp_path):
    before = _config_files(hosts)
    spec = tmp_path / "spec.toml"
    spec.write_text(SWEEP.replace('duration = "2s"', 'duration = "20s"'))
    out = tmp_path / "out"
    env = dict(os.environ, EIPERF_TEST_PAUSE_AFTER_WRITE="30")
    proc = subprocess.Popen([*EIPERF, "sweep", str(spec), "--cluster", hosts.source,
                             "--results", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _config_files(hosts) == before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
    assert _config_files(hosts) != before  # killed with a changed file on the lb host
    r = subprocess.run([*EIPERF, "tune", "restore", "--results", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _config_files(hosts) == before
    with LbClient(hosts) as client:
        assert client.request("http", "POST", SERVICE, soap_envelope(256)).ok


def test_sudo_refused_is_one_line_and_changes_nothing(hosts, tmp_path):
    """A write helper the sudoers rule does not name (other testbeds' rules name the real one,
    so removing ours would not be a refusal while they run)."""
    before = _config_files(hosts)
    text = Path(hosts.source).read_text().replace(
        "/srv/eiperf-host/bin/eiperf-conf-write", "/srv/eiperf-host/bin/not-allowed")
    assert "not-allowed" in text
    (tmp_path / "cluster.toml").write_text(text)
    r = subprocess.run([*EIPERF, "tune", "apply", "--cluster", str(tmp_path / "cluster.toml"),
                        "--set", "nginx.proxy_read_timeout=61s", "--results", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "sudo refused" in r.stderr and "sudoers" in r.stderr
    assert _config_files(hosts) == before


def test_an_unknown_host_key_is_refused_with_the_line_that_adds_it(hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    text = Path(hosts.source).read_text().replace(hosts.nodes[0].known_hosts, str(empty))
    (tmp_path / "cluster.toml").write_text(text)
    r = subprocess.run([*EIPERF, "tune", "show", "--cluster", str(tmp_path / "cluster.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "is not in" in r.stderr and "ssh-keyscan" in r.stderr and r.stderr.count("\n") == 1


def test_a_failed_up_hosts_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(host_manager, "_start_nginx", _refuse)
    d = tmp_path / "broken"
    with pytest.raises(EiperfError, match="nginx refused for the test"):
        host_manager.up_hosts(d, nodes=1, generators=0, progress=lambda m: None)
    net = host_manager.saved_network(d)
    assert not {h.namespace for h in net.hosts} & namespaces()
    assert not ({h.veth_root for h in net.hosts} | {net.bridge}) & links()
    assert not host_manager.sudoers_file(net).exists()
    assert not [p for p in psutil.process_iter(["cmdline"])
                if any(str(d) in part for part in (p.info["cmdline"] or []))]


def _refuse(dir):
    raise EiperfError("nginx refused for the test")


def test_a_namespace_that_exists_already_is_one_line(tmp_path):
    d = tmp_path / "taken"
    net = netns_plan(d, 1, 0)
    subprocess.run(["ip", "netns", "add", net.hosts[0].namespace], check=True)
    try:
        with pytest.raises(EiperfError, match="already exists"):
            create_network(net)
        assert net.bridge not in links()
    finally:
        subprocess.run(["ip", "netns", "del", net.hosts[0].namespace])


def test_java_for_the_hosts_nodes_is_written_checked_and_kept(tmp_path):
    """`eiperf up --hosts --java`: files only (no host started)."""
    java = resolve_node_java("11")
    new = tmp_path / "new"
    assert host_manager._node_java(new, "11") == java  # a new testbed takes it
    render_hosts(new, netns_plan(new, 1, 0), java_home=java.home)
    home = host_files(new, "node1").local(EI_HOME)
    assert f'JAVA_HOME="{java.home}"\n' in (home / "bin" / "integrator.sh").read_text()
    r = subprocess.run(["runuser", "-u", NODE_USER, "--", java.java, "-version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f'"{java.version}"' in r.stderr  # the node's user may run it
    closed = NodeJava("/x", str(tmp_path / "jdk"), "11.0.1")  # under pytest's 0700 folder
    with pytest.raises(HostError, match=f"user {NODE_USER} may not run {closed.java}"):
        check_node_java(closed)
    # a built testbed keeps its JDK: another --java is one line, before anything starts
    save_node_java(new, java)
    (new / "hosts.json").write_text("{}")
    before = sorted(p.name for p in new.iterdir())
    with pytest.raises(EiperfError) as err:
        manager.up(new, hosts=True, java="17", progress=lambda m: None)
    assert str(err.value) == (f"the multi-host testbed in {new} runs Java {java.version} "
                              f"({java.home}); run 'eiperf down --purge' first to build it "
                              "with another --java, or pass another --dir")
    (new / STATE_FILE).unlink()  # built before --java: its nodes run their hosts' java
    with pytest.raises(EiperfError, match="runs its hosts' java; run 'eiperf down --purge'"):
        manager.up(new, hosts=True, java="11", progress=lambda m: None)
    assert sorted(p.name for p in new.iterdir()) == sorted(set(before) - {STATE_FILE})
