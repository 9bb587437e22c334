"""`eiperf doctor --fix` on the multi-host testbed: drop-ins written on each node host over
SSH through the change journal, the net.* values applied inside that host's own network
namespace (read back over SSH), this machine's own values untouched, and `eiperf tune
restore` putting every file back byte for byte (or removing it, when it was absent), and the
live values the fix replaced set back (`restore_live`, from the journal's note).

The testbed's hosts share this machine's /etc (only /etc/nginx is bound per host), so the
drop-ins go under a testbed-owned folder inside each node host (`--etc`, in its EI_HOME).
The node user `wso2` may run exactly `sysctl -p <that drop-in>` through sudo while the test
runs (a sudoers rule of the test's own, removed after it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from eicore.transport import transport_for
from eiperf.cli import main
from testbed.hosts import EI_HOME, NODE_USER, host_files, in_host
from tuning.doctor.facts import NODE_FILES, sysctl_path
from tuning.doctor.fix import LIVE_NOTE, relocate
from tuning.doctor.os_checks import LIMITS_DROPIN, SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN
from tuning.journal import unfinished_journals

ETC = f"{EI_HOME}/eiperf-etc"  # inside each node host: its own folder, owned by the test
NET_DROPIN = relocate(SYSCTL_DROPIN, ETC)
# node1 had a drop-in of its own before the fix: it must come back byte for byte
NODE1_BEFORE = b"# the admin's own\r\nnet.ipv4.tcp_fin_timeout=45\nnet.core.somaxconn = 1024"


def _read_proc(transport, key: str) -> str:
    r = transport.run(["cat", sysctl_path(key)], timeout=30)
    assert r.ok, r.stderr
    return " ".join(r.stdout.split())


@pytest.fixture
def node_etc(hosts_testbed):
    """Each node host's drop-in folders (root-namespace paths), the sudo rule for the test, and
    afterwards the namespaces' old net.* values put back; everything removed."""
    d = Path(hosts_testbed.source).parent
    wso2 = pwd.getpwnam(NODE_USER)
    folders = {}
    for node in hosts_testbed.nodes:
        root = host_files(d, node.name).local(ETC)
        for sub in ("sysctl.d", "security/limits.d"):
            (root / sub).mkdir(parents=True)
        for path in (root, root / "sysctl.d", root / "security", root / "security/limits.d"):
            os.chown(path, wso2.pw_uid, wso2.pw_gid)
        folders[node.name] = root
    rule = Path(f"/etc/sudoers.d/eiperf-doctor-fix-test-{os.getpid()}")
    tmp = rule.with_name(f".{rule.name}.tmp")
    tmp.write_text(f"{NODE_USER} ALL=(root) NOPASSWD: /usr/sbin/sysctl -p {NET_DROPIN}, "
                   "/usr/sbin/sysctl -q -w net.*\n")
    os.chmod(tmp, 0o440)
    subprocess.run(["visudo", "-c", "-q", "-f", str(tmp)], check=True)
    os.replace(tmp, rule)
    saved = {}
    try:
        for node in hosts_testbed.nodes:
            t = transport_for(node)
            saved[node.name] = {k: _read_proc(t, k) for k in (
                "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse", "net.core.rmem_max",
                "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default",
                "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.ip_local_port_range")}
            t.close()
        yield folders, saved
    finally:
        rule.unlink(missing_ok=True)
        for node in hosts_testbed.nodes:
            t = transport_for(node)
            changed = [f"{k}={v}" for k, v in saved.get(node.name, {}).items()
                       if _read_proc(t, k) != v]
            t.close()
            if changed:
                in_host(host_files(d, node.name), ["sysctl", "-q", "-w", *changed], check=True)
        for root in folders.values():
            shutil.rmtree(root)


def test_fix_applies_net_values_in_each_namespace_and_restore_is_byte_exact(
        hosts_testbed, node_etc, tmp_path, capsys):
    folders, saved = node_etc
    node1_file = folders["node1"] / "sysctl.d" / Path(SYSCTL_DROPIN).name
    node1_file.write_bytes(NODE1_BEFORE)
    os.chown(node1_file, pwd.getpwnam(NODE_USER).pw_uid, -1)
    mine = {k: Path(sysctl_path(k)).read_text() for k in saved["node1"]}  # this machine's own
    results = tmp_path / "results"
    cluster_files = {}  # the nodes' cluster files, over SSH: --fix may fix them too
    for node in hosts_testbed.nodes:
        t = transport_for(node)
        cluster_files[node.name] = {name: t.read_bytes(node.path(*NODE_FILES[name]))
                                    for name in ("axis2.xml", "carbon.xml", "catalina-server.xml")}
        t.close()

    code = main(["doctor", "--cluster", hosts_testbed.source, "--fix", "--etc", ETC,
                 "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 1, out  # the load balancer host has no such folder: said, not fixed
    assert "(lb): not fixed: no folder" in out
    for node in hosts_testbed.nodes:  # the testbed names each node's address in carbon.xml
        lb = hosts_testbed.load_balancer
        assert (f"{node.name}: wrote {node.path('conf', 'carbon.xml')}: <HostName>"
                f"{lb.host_name}</HostName>; <MgtHostName>{lb.console_host_name}</MgtHostName>"
                ) in out, out
    for node in hosts_testbed.nodes:
        assert f"({node.name}): applied {NET_DROPIN}" in out, out
        written = (folders[node.name] / "sysctl.d" / Path(SYSCTL_DROPIN).name).read_text()
        lines = [x for x in written.splitlines() if x.startswith("net.") and "somaxconn" not in x]
        assert lines, written
        t = transport_for(node)
        try:  # read back over SSH, inside that host's own network namespace
            for line in lines:
                key, value = (x.strip() for x in line.split("=", 1))
                assert _read_proc(t, key) == " ".join(value.split()), key
        finally:
            t.close()
    assert "net.ipv4.tcp_fin_timeout=45" not in node1_file.read_text()
    assert "net.core.somaxconn = 1024" in node1_file.read_text()  # the admin's other line stays
    assert {k: Path(sysctl_path(k)).read_text() for k in mine} == mine
    # a namespace shows the kernel's socket buffer sizes read-only: written for the next boot,
    # reported, never applied (nor this machine's own)
    kernel = folders["node2"] / "sysctl.d" / Path(SYSCTL_GLOBAL_DROPIN).name
    assert "net.core.rmem_max = 67108864" in kernel.read_text()
    assert "(node2): kernel-wide values written, not applied" in out
    t = transport_for(hosts_testbed.nodes[1])
    assert _read_proc(t, "net.core.rmem_max") == saved["node2"]["net.core.rmem_max"]
    t.close()
    limits = folders["node2"] / "security" / "limits.d" / Path(LIMITS_DROPIN).name
    node2_net = folders["node2"] / "sysctl.d" / Path(SYSCTL_DROPIN).name
    assert limits.exists() and node2_net.exists()

    (journal,) = unfinished_journals(results, include_applied=True)
    note = journal.notes[LIVE_NOTE]  # the live values sysctl -p replaced, per node host
    journal.release()
    assert {e["role"]: e["values"]["net.ipv4.tcp_fin_timeout"] for e in note} == {
        n.name: saved[n.name]["net.ipv4.tcp_fin_timeout"] for n in hosts_testbed.nodes}

    assert main(["tune", "restore", "--results", str(results)]) == 0
    assert node1_file.read_bytes() == NODE1_BEFORE
    assert not node2_net.exists() and not limits.exists() and not kernel.exists()
    assert sorted(p.name for p in (folders["node2"] / "sysctl.d").iterdir()) == []
    for node in hosts_testbed.nodes:
        t = transport_for(node)
        assert {name: t.read_bytes(node.path(*NODE_FILES[name]))
                for name in cluster_files[node.name]} == cluster_files[node.name]
        t.close()
    # the live values too: `tune restore` set them back from the journal's note
    for node in hosts_testbed.nodes:
        t = transport_for(node)
        try:
            assert {k: _read_proc(t, k) for k in saved[node.name]} == saved[node.name]
        finally:
            t.close()
    assert {k: Path(sysctl_path(k)).read_text() for k in mine} == mine
