"""`eiperf doctor` on the real session testbed: what it prints is what this machine's /proc,
limits and the nodes' files say; exit 0 when nothing fails, 1 otherwise; `--fix` writes
nothing; a broken copy of a node's files fails for its own reason."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from eicore.cluster import save_cluster
from eiperf.cli import main
from tuning.doctor.facts import sysctl_path
from tuning.doctor.os_checks import SYSCTL_DROPIN, SYSCTL_KEYS


def _doctor(capsys, *argv: str) -> tuple[int, str]:
    code = main(["doctor", *argv])
    return code, capsys.readouterr().out


@pytest.fixture
def report(testbed, capsys):
    code, out = _doctor(capsys, "--cluster", testbed.source, "--json")
    return code, json.loads(out)


def _proc(key: str) -> str | None:
    path = Path(sysctl_path(key))
    return " ".join(path.read_text().split()) if path.exists() else None


def test_json_shows_this_machines_sysctls_and_limits(testbed, report):
    code, doc = report
    os_rows = {r["check"]: r for r in doc["rows"] if r["area"] == "os"}
    for key in SYSCTL_KEYS:
        value = _proc(key)
        row = os_rows[key]
        if value is None:
            assert row["verdict"] == "n/a", row
        else:
            assert row["current"] == value, row
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    user = next(r for r in os_rows if r.startswith("nofile soft"))
    assert os_rows[user]["current"] == ("unlimited" if soft == resource.RLIM_INFINITY else str(soft))
    hard_row = os_rows[user.replace("soft", "hard")]
    assert hard_row["current"] == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard))
    for node in testbed.nodes:
        pid = int(Path(node.pid_file).read_text())
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        jvm = os_rows[f"{node.name} JVM open files"]
        assert jvm["current"] == f"{line.split()[3]} (pid {pid})"


def test_exit_code_follows_the_fail_rule(report):
    code, doc = report
    fails = [r for r in doc["rows"] if r["verdict"] == "fail"]
    assert doc["counts"]["fail"] == len(fails)
    assert code == (1 if fails else 0) and doc["ok"] is (code == 0)
    # the testbed's own nginx and clustering files are the guide's: none of them fails
    assert not [r for r in fails if r["area"] != "os"], fails


def test_table_shows_the_same_values(testbed, capsys):
    code, out = _doctor(capsys, "--cluster", testbed.source)
    fin = next(x for x in out.splitlines() if x.startswith("net.ipv4.tcp_fin_timeout "))
    assert fin.split()[1] == _proc("net.ipv4.tcp_fin_timeout")
    assert "== nginx: 127.0.0.1 (lb) ==" in out and "== cluster configuration: node1" in out
    assert out.rstrip().splitlines()[-1].startswith("doctor: ")
    assert (code == 1) == ("exit 1: a check fails" in out)


def test_fix_script_prints_a_script_and_writes_nothing(testbed, capsys):
    before = os.path.exists(SYSCTL_DROPIN)
    code, out = _doctor(capsys, "--cluster", testbed.source, "--fix-script")
    assert out.startswith("#!/bin/sh\n") and code in (0, 1)
    assert os.path.exists(SYSCTL_DROPIN) == before


def _os_needs_fix(testbed, capsys) -> bool:
    _, doc = _doctor(capsys, "--cluster", testbed.source, "--json")
    return any(r["area"] == "os" and r["verdict"] in ("warn", "fail") and r["fix_file"]
               for r in json.loads(doc)["rows"])


def _named_like_the_lb(testbed, cluster_file: Path, tmp_path: Path) -> None:
    """The copies' carbon.xml with the load balancer's host names (the testbed writes each
    node's address there, which the doctor flags): their cluster files need no fix."""
    lb = testbed.load_balancer
    for node in testbed.nodes:
        carbon = tmp_path / node.name / "conf" / "carbon.xml"
        text = carbon.read_text()
        text = re.sub(r"<HostName>[^<]*<", f"<HostName>{lb.host_name}<", text)
        text = re.sub(r"<MgtHostName>[^<]*<", f"<MgtHostName>{lb.console_host_name}<", text)
        carbon.write_text(text)


def test_fix_refuses_this_machine_in_one_line(testbed, tmp_path, capsys):
    """The loopback testbed's hosts are this machine: with only OS fixes to make, --fix
    writes nothing into its /etc (nor under --etc), opens no journal, and says so in one
    line."""
    if not _os_needs_fix(testbed, capsys):
        pytest.skip("this machine's OS settings need no fix")
    cluster_file = _copy_nodes(testbed, tmp_path)
    _named_like_the_lb(testbed, cluster_file, tmp_path)
    etc = tmp_path / "etc"
    (etc / "sysctl.d").mkdir(parents=True)
    before = sorted(os.listdir("/etc/sysctl.d"))
    for extra in ([], ["--etc", str(etc)]):
        code = main(["doctor", "--cluster", str(cluster_file), "--fix", "--results",
                     str(tmp_path / "results"), *extra])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "", captured.out
        assert len(captured.err.strip().splitlines()) == 1 and "refusing" in captured.err
    assert sorted(os.listdir("/etc/sysctl.d")) == before
    assert list((etc / "sysctl.d").iterdir()) == [] and not (tmp_path / "results").exists()


def test_fix_writes_the_cluster_files_and_restore_is_byte_exact(testbed, tmp_path, capsys):
    """Copies of the testbed's nodes, node2's wka list without node1 and its console
    connector without proxyPort: doctor without --fix changes nothing; --fix writes node2's
    axis2.xml and both nodes' carbon.xml (the LB's host names) and catalina-server.xml through
    the journal -- this machine's OS fixes skipped, said, exit 1 -- and the doctor then finds
    nothing to fix there; `eiperf tune restore` gives back every byte."""
    cluster_file = _copy_nodes(testbed, tmp_path)
    axis2 = tmp_path / "node2" / "conf" / "axis2" / "axis2.xml"
    node1 = testbed.nodes[0]
    text = axis2.read_text()
    member = re.compile(rf"\s*<member>\s*<hostName>{re.escape(node1.host)}</hostName>\s*"
                        rf"<port>{node1.member_port}</port>\s*</member>")
    assert member.search(text)
    axis2.write_text(member.sub("", text, count=1))
    catalina = tmp_path / "node2" / "conf" / "tomcat" / "catalina-server.xml"
    catalina.write_bytes(catalina.read_bytes().replace(b'proxyPort="443"', b"").replace(
        b"\n", b"\r\n"))
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    results = tmp_path / "results"

    code, _ = _doctor(capsys, "--cluster", str(cluster_file))
    assert code == 1  # the wka list fails
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # without --fix: nothing

    code, out = _doctor(capsys, "--cluster", str(cluster_file), "--fix", "--results",
                        str(results))
    assert f"node2: wrote {axis2}: wka member {node1.host}:{node1.member_port} added" in out
    assert f"node2: wrote {catalina}: <Connector port=9443> proxyPort=443" in out
    os_skipped = "OS fixes not written: this machine" in out
    assert os_skipped == _os_needs_fix(testbed, capsys)
    assert code == (1 if os_skipped else 0), out
    changed = {p for p, b in snapshot.items() if p.read_bytes() != b}
    assert {p.name for p in changed} == {"axis2.xml", "carbon.xml", "catalina-server.xml"}
    assert b"\r\n" in catalina.read_bytes() and b"\n" not in catalina.read_bytes().replace(
        b"\r\n", b"")
    _, doc = _doctor(capsys, "--cluster", str(cluster_file), "--json")
    rows = json.loads(doc)["rows"]
    bad = [r for r in rows if r["area"] == "cluster" and r["verdict"] in ("warn", "fail")
           and (r["check"] in ("wka members", "localMemberHost")
                or r["check"].startswith(("carbon.xml", "proxyPort")))]
    assert bad == []

    assert main(["tune", "restore", "--results", str(results)]) == 0
    assert {p: p.read_bytes() for p in snapshot} == snapshot


@pytest.mark.parametrize("argv", [["--etc", "/tmp/x"], ["--fix", "--etc", "relative"]])
def test_etc_needs_fix_and_an_absolute_folder(argv, capsys):
    code = main(["doctor", "--cluster", "/nonexistent.toml", *argv])
    err = capsys.readouterr().err
    assert code == 2 and "--etc" in err and len(err.strip().splitlines()) == 1


def _copy_nodes(testbed, tmp_path: Path) -> Path:
    """A cluster.toml whose nodes are copies of the testbed's conf/ and bin/ (no pid file)."""
    nodes = []
    for node in testbed.nodes:
        home = tmp_path / node.name
        for part in ("conf", "bin"):
            shutil.copytree(Path(node.ei_home) / part, home / part)
        nodes.append(replace(node, ei_home=str(home)))
    cluster_file = tmp_path / "cluster.toml"
    save_cluster(replace(testbed, nodes=tuple(nodes)), cluster_file)
    return cluster_file


def test_a_broken_copy_of_a_node_fails(testbed, tmp_path, capsys):
    """A copy of the testbed's node files where node2's wka list lost node1: exit 1, that
    row fails, and the copies' JVMs count as not running (no pid file copied)."""
    cluster_file = _copy_nodes(testbed, tmp_path)
    axis2 = tmp_path / "node2" / "conf" / "axis2" / "axis2.xml"
    node1 = testbed.nodes[0]
    text = axis2.read_text()
    member = (f"<member>\n                <hostName>{node1.host}</hostName>\n"
              f"                <port>{node1.member_port}</port>\n            </member>")
    assert member in text
    axis2.write_text(text.replace(member, ""))
    code, out = _doctor(capsys, "--cluster", str(cluster_file), "--json")
    rows = json.loads(out)["rows"]
    wka = {r["host"].split()[0]: r for r in rows if r["check"] == "wka members"}
    assert code == 1
    assert wka["node2"]["verdict"] == "fail" and "missing" in wka["node2"]["current"]
    assert wka["node1"]["verdict"] == "ok"
    jvm = [r for r in rows if r["check"].endswith("JVM open files")]
    assert {r["verdict"] for r in jvm} == {"n/a"}


def test_one_node_with_another_heap_is_listed_and_passes_once_fixed(testbed, tmp_path, capsys):
    """node2's copy of bin/integrator.sh gives -Xmx2g: the JVM-flags row warns naming jvm.xmx
    with both nodes' values; the script put back as it was, the row is ok again."""
    cluster_file = _copy_nodes(testbed, tmp_path)
    script = tmp_path / "node2" / "bin" / "integrator.sh"
    original = script.read_text()

    def jvm_row() -> dict:
        _, out = _doctor(capsys, "--cluster", str(cluster_file), "--json")
        rows = json.loads(out)["rows"]
        return next(r for r in rows if r["check"] == "JVM flags alike (bin/integrator.sh)")

    assert "-Xmx1024m" in original
    script.write_text(original.replace("-Xmx1024m", "-Xmx2g"))
    row = jvm_row()
    assert row["verdict"] == "warn" and row["current"] == "differ: jvm.xmx (node1 1024m, node2 2g)"
    script.write_text(original)
    row = jvm_row()
    assert row["verdict"] == "ok" and row["current"].startswith("identical (")


def test_a_missing_cluster_file_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["doctor", "--cluster", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not found" in err


def test_multi_host_testbed_is_read_over_ssh(hosts_testbed, capsys):
    """Each namespace host over SSH: the LB's and each node's own sysctls (net.* per network
    namespace), the nodes' user (wso2) and their JVMs, nginx through sites-enabled links."""
    code, out = _doctor(capsys, "--cluster", hosts_testbed.source, "--json")
    rows = json.loads(out)["rows"]
    hosts = {r["host"] for r in rows if r["area"] == "os"}
    lb = hosts_testbed.load_balancer
    assert f"{lb.host} (lb)" in hosts
    for node in hosts_testbed.nodes:
        assert any(h.startswith(node.host) and node.name in h for h in hosts), hosts
        jvm = next(r for r in rows if r["check"] == f"{node.name} JVM open files")
        assert "pid" in jvm["current"], jvm
    users = {r["check"] for r in rows if r["check"].startswith("nofile soft")}
    assert users == {f"nofile soft ({hosts_testbed.nodes[0].ssh_user})"}
    by = {r["check"]: r for r in rows if r["area"] == "nginx"}
    for check in ("vhost ei.http (ei.wso2.com, http)", "vhost ei.https (ei.wso2.com, https)",
                  "vhost ui.ei.https (ui.ei.wso2.com, https)"):
        assert by[check]["verdict"] == "ok" and "sites-enabled" in by[check]["current"]
    cluster = [r for r in rows if r["area"] == "cluster" and r["verdict"] == "fail"]
    assert cluster == []
    assert code == (1 if any(r["verdict"] == "fail" for r in rows) else 0)
