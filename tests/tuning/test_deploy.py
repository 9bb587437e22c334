"""`eiperf deploy` on the testbed: every node, one over SSH, really serves the proxy."""

from __future__ import annotations

import http.client
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from eicore import node_control
from eicore.cluster import load_cluster, save_cluster
from eicore.lbclient import LbClient
from eicore.proxy_template import render_proxy
from eicore.transport import LocalTransport
from eiperf.cli import main
from loadtests.messages import soap_envelope
from tests.sshd import cluster_file_with_ssh_node
from tuning.deploy import deploy_proxy, sample_proxy


def _cluster_file(cluster, sshd, tmp_path: Path, ssh_node: str) -> Path:
    return cluster_file_with_ssh_node(cluster, sshd, tmp_path / "cluster.toml", ssh_node)


def _snapshot(cluster) -> dict[str, dict[str, bytes]]:
    """Every node's proxy-services folder: file name -> bytes."""
    return {n.name: {f: Path(n.proxy_services_dir, f).read_bytes()
                     for f in sorted(os.listdir(n.proxy_services_dir))} for n in cluster.nodes}


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch) -> Path:
    """The results folder holding the change journals of `eiperf deploy` (not the work tree)."""
    folder = tmp_path / "results"
    monkeypatch.setenv("EIPERF_RESULTS", str(folder))
    return folder


def _post_status(node, name: str) -> int:
    """Status of a POST to the proxy on the node's own pass-through port (not through nginx)."""
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("POST", f"/services/{name}", soap_envelope(64),
                     {"Content-Type": "text/xml; charset=utf-8"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def cleanup(testbed):
    """Remove the proxies a test deployed, so the shared testbed stays as it was."""
    before = _snapshot(testbed)
    yield
    for n in testbed.nodes:
        for f in os.listdir(n.proxy_services_dir):
            if f not in before[n.name]:
                os.unlink(os.path.join(n.proxy_services_dir, f))


def test_deploy_sample_to_every_node_one_over_ssh(testbed, sshd, tmp_path, cleanup):
    cluster = load_cluster(_cluster_file(testbed, sshd, tmp_path, testbed.nodes[-1].name))
    assert cluster.nodes[-1].transport == "ssh"
    artifact = sample_proxy("EiperfDeployed")
    seen = []
    results = deploy_proxy(cluster, artifact, on_result=seen.append)
    assert seen == results
    assert [(r.node, r.ok, r.action) for r in results] == [
        (n.name, True, "new") for n in cluster.nodes]
    for n in cluster.nodes:
        assert Path(n.proxy_services_dir, "EiperfDeployed.xml").read_bytes() == artifact.xml
        assert artifact.xml == render_proxy("EiperfDeployed").encode()
    # Served through the load balancer by both nodes, each logging its log-mediator line.
    t = LocalTransport()
    offsets = {n.name: t.size(n.log_file) for n in cluster.nodes}
    with LbClient(cluster) as client:
        replies = [client.request("http", "POST", "/services/EiperfDeployed", soap_envelope(512))
                   for _ in range(8)]
    assert all(r.ok for r in replies), [(r.status, r.error) for r in replies]
    assert {r.node for r in replies} == {n.name for n in cluster.nodes}
    for n in cluster.nodes:
        new = t.read_from(n.log_file, offsets[n.name])
        assert b"To: /services/EiperfDeployed" in new
    # Again: nothing to write, still checked.
    again = deploy_proxy(cluster, artifact)
    assert [(r.ok, r.action) for r in again] == [(True, "unchanged")] * len(cluster.nodes)


def test_cli_deploys_a_given_proxy_file(testbed, sshd, tmp_path, cleanup, capsys):
    path = _cluster_file(testbed, sshd, tmp_path, testbed.nodes[0].name)
    proxy = tmp_path / "my-proxy.xml"
    proxy.write_text(render_proxy("EiperfCliProxy", log_level="full"))
    assert main(["deploy", "--cluster", str(path), "--proxy", str(proxy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("deploying proxy EiperfCliProxy")
    assert len(out) == 2 + len(testbed.nodes)
    for line, n in zip(out[1:], testbed.nodes):
        assert line.startswith(f"ok   {n.name}: new - EiperfCliProxy.xml written to ")
        assert f"POST http://{n.host}:{n.http_port}/services/EiperfCliProxy answers" in line
        assert Path(n.proxy_services_dir, "EiperfCliProxy.xml").read_bytes() == proxy.read_bytes()
    assert out[-1].endswith("'eiperf tune restore' puts it back")


def test_restore_puts_back_a_replaced_proxy_and_removes_a_new_one(testbed, sshd, tmp_path,
                                                                  cleanup, capsys):
    """The first node already has the proxy (another log level), over SSH; the others do not."""
    path = _cluster_file(testbed, sshd, tmp_path, testbed.nodes[0].name)
    first, *others = testbed.nodes
    original = render_proxy("EiperfRestored", log_level="simple").encode() + b"<!-- mine -->\n"
    target = Path(first.proxy_services_dir, "EiperfRestored.xml")
    target.write_bytes(original)
    target.chmod(0o640)
    before = _snapshot(testbed)
    assert main(["deploy", "--cluster", str(path), "--name", "EiperfRestored",
                 "--log-level", "full"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"ok   {first.name}: replaced - ")
    assert all(line.startswith(f"ok   {n.name}: new - ") for line, n in zip(out[2:], others))
    assert _snapshot(testbed) != before
    assert main(["tune", "restore"]) == 0
    out = capsys.readouterr().out
    assert "journal " in out and "(applied, deploy EiperfRestored.xml)" in out
    assert _snapshot(testbed) == before  # byte for byte, the new files gone
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    # EI noticed: the node that did not have it no longer serves it.
    deadline = time.monotonic() + 10
    while _post_status(others[0], "EiperfRestored") != 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _post_status(others[0], "EiperfRestored") == 404


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "proxy file not found; give an existing XML file"),
        ("<proxy name='A'", "not well-formed XML"),
        ("<sequence xmlns='http://ws.apache.org/ns/synapse' name='S'/>",
         "the root element is <sequence>, not <proxy>"),
        ("<proxy xmlns='http://ws.apache.org/ns/synapse'><target/></proxy>",
         "<proxy> has no name attribute; add name="),
        ("<proxy xmlns='http://ws.apache.org/ns/synapse' name='a/../b'/>",
         "proxy name 'a/../b' is not usable"),
        ("<proxy xmlns='urn:other' name='A'/>", "is in namespace 'urn:other'"),
    ],
)
def test_bad_proxy_file_is_one_line_exit_2_and_nothing_written(
        testbed, sshd, tmp_path, capsys, content, message):
    path = _cluster_file(testbed, sshd, tmp_path, testbed.nodes[0].name)
    proxy = tmp_path / "bad.xml"
    if content is not None:
        proxy.write_text(content)
    before = _snapshot(testbed)
    assert main(["deploy", "--cluster", str(path), "--proxy", str(proxy)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith(f"eiperf deploy: error: {proxy}: ")
    assert _snapshot(testbed) == before


def test_name_that_does_not_match_the_file_is_refused(testbed, tmp_path, capsys):
    proxy = tmp_path / "p.xml"
    proxy.write_text(render_proxy("FileName"))
    before = _snapshot(testbed)
    assert main(["deploy", "--cluster", testbed.source, "--proxy", str(proxy),
                 "--name", "Other"]) == 2
    assert "the proxy is named 'FileName', not 'Other'" in capsys.readouterr().err
    assert main(["deploy", "--cluster", testbed.source, "--name", "bad name"]) == 2
    assert "proxy name 'bad name' must be letters" in capsys.readouterr().err
    assert _snapshot(testbed) == before


def test_a_node_without_its_folder_stops_the_deploy_before_any_write(testbed, tmp_path, capsys):
    broken = replace(testbed.nodes[-1], ei_home=str(tmp_path / "no-ei-home"))
    path = tmp_path / "cluster.toml"
    save_cluster(testbed.with_nodes((*testbed.nodes[:-1], broken)), path)
    before = _snapshot(testbed)
    assert main(["deploy", "--cluster", str(path), "--name", "NeverWritten"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{broken.name}: proxy-services folder {broken.proxy_services_dir} not found" in err
    assert _snapshot(testbed) == before


def test_a_stopped_node_is_reported_and_the_exit_is_1(testbed, tmp_path, cleanup, capsys):
    victim = testbed.nodes[-1]
    t = LocalTransport()
    node_control.stop_node(t, victim)
    try:
        assert main(["deploy", "--cluster", testbed.source, "--name", "EiperfWhileDown",
                     "--timeout", "2"]) == 1
    finally:
        node_control.start_node(t, victim)
        node_control.wait_routed(testbed, victim)  # leave the shared testbed as it was found
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"ok   {testbed.nodes[0].name}: new")
    assert out[2].startswith(f"FAIL {victim.name}: new - written to ")
    assert "did not log its deployment within 2 s; is it running?" in out[2]
    # No node keeps a proxy the others lack, and no journal is left to restore.
    assert out[3].startswith(f"put back {len(testbed.nodes)} file(s) written")
    for n in testbed.nodes:
        assert not Path(n.proxy_services_dir, "EiperfWhileDown.xml").exists()
    assert main(["tune", "restore"]) == 0
    assert capsys.readouterr().out == "nothing to restore\n"
