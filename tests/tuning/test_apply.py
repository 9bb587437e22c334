"""apply_settings / restore_cluster on the real testbed: nodes restart with the new flags (seen
in /proc and over JMX), files come back byte for byte, refused flags and configs change nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from eicore import lb_control, node_control
from eicore.cluster import Cluster
from eicore.lbclient import LbClient
from eicore.transport import LocalTransport
from loadtests.verify import SERVICE, soap_envelope
from tuning.apply import apply_settings
from tuning.changes import ApplyError, edit_file
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restore import restore_cluster

RUNTIME = ("logs", "tmp", "temp", "database")  # folders the running processes change


def config_snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every config file of a testbed (logs, pids and temp left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or p.suffix == ".pid" or p.name.endswith(".pid"):
            continue
        if any(part in RUNTIME for part in rel.parts):
            continue
        out[str(rel)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o7777)
    return out


def root_of(cluster: Cluster) -> Path:
    return Path(cluster.source).parent  # type: ignore[arg-type]


def pids(cluster: Cluster) -> dict[str, int | None]:
    t = LocalTransport()
    return {n.name: node_control.read_pid(t, n) for n in cluster.nodes}


def cmdline_heap(pid: int) -> list[str]:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return [a.decode() for a in args if a.startswith((b"-Xmx", b"-Xms"))]


def lb_serves(cluster: Cluster, n: int = 4) -> bool:
    with LbClient(cluster) as client:
        return all(client.request("http", "POST", SERVICE, soap_envelope(256)).ok for _ in range(n))


def test_xmx_restarts_nodes_and_restore_is_byte_identical(testbed, journal):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    outcome = apply_settings(testbed, ParamSet({"jvm.xmx": "512m"}), journal,
                             progress=lambda m: None)
    assert sorted(outcome.restarted) == [n.name for n in testbed.nodes]
    assert not outcome.reloaded
    assert all("-Xmx512m" in d for d in outcome.diffs.values()) and len(outcome.diffs) == 2
    after = pids(testbed)
    for node in testbed.nodes:
        assert after[node.name] != pids_before[node.name]
        assert cmdline_heap(after[node.name])[-1] == "-Xmx512m"  # type: ignore[arg-type]
    from loadtests.collectors.jmx import JmxConnection

    with JmxConnection(testbed.nodes[0].jmx_service_url) as jmx:
        assert "-Xmx512m" in jmx.input_arguments()
        assert jmx.heap()["max"] <= 512 * 1024 * 1024
    assert config_snapshot(root) != before
    assert lb_serves(testbed)

    restored = restore_cluster(testbed, journal, progress=lambda m: None)
    journal.close()
    assert len(restored) == 2
    assert config_snapshot(root) == before
    for node, pid in pids(testbed).items():
        assert cmdline_heap(pid)[-1] == "-Xmx1024m", node  # type: ignore[arg-type]
    assert lb_serves(testbed)


def test_legacy_maxpermsize_is_caught_before_any_restart(testbed17, tmp_path):
    # JDK 17 refuses it; JDK 11 (the session testbed) only warns: tests/tuning/test_node_jdk.py
    testbed = testbed17
    journal = Journal.begin(tmp_path / "results", Path(testbed.source), "test")
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    with pytest.raises(ApplyError) as err:
        apply_settings(testbed, ParamSet({"jvm.flag.MaxPermSize": "256m"}), journal,
                       progress=lambda m: None)
    message = str(err.value)
    assert "MaxPermSize" in (err.value.jvm_message or "")
    assert "-XX:MaxMetaspaceSize=256m" in message and "jvm.max_metaspace=256m" in message
    assert "\n" not in message
    assert err.value.node == testbed.nodes[0].name
    assert pids(testbed) == pids_before
    assert config_snapshot(root) == before
    assert journal.changed_files() == []


def test_cms_gc_is_caught_with_the_g1_fix(testbed17):
    with pytest.raises(ApplyError, match="UseConcMarkSweepGC.*UseG1GC.*jvm.gc=G1"):
        apply_settings(testbed17, ParamSet({"jvm.flag.UseConcMarkSweepGC": True}), None,
                       dry_run=True, progress=lambda m: None)


def test_nginx_t_failure_rolls_back_and_nginx_keeps_serving(testbed, journal):
    root = root_of(testbed)
    t = LocalTransport()
    before, master = config_snapshot(root), lb_control.master_pid(t, testbed.load_balancer)
    workers = lb_control.worker_pids(t, master)  # type: ignore[arg-type]
    huge = "9" * 30 + "s"  # a time nginx's parser rejects, though it looks like one
    with pytest.raises(ApplyError, match="nginx -t refused.*restored"):
        apply_settings(testbed, ParamSet({"nginx.proxy_read_timeout": huge}), journal,
                       progress=lambda m: None)
    assert config_snapshot(root) == before
    assert lb_control.master_pid(t, testbed.load_balancer) == master
    assert lb_control.worker_pids(t, master) == workers  # type: ignore[arg-type]
    assert journal.changed_files() == []
    assert lb_serves(testbed)


def test_nginx_only_change_reloads_and_restarts_no_node(testbed, journal):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    outcome = apply_settings(testbed, ParamSet({"nginx.proxy_read_timeout": "30s"}), journal,
                             progress=lambda m: None)
    assert outcome.reloaded and outcome.restarted == []
    assert pids(testbed) == pids_before
    conf = (root / "nginx" / "conf" / "ei.http.conf").read_text()
    assert "proxy_read_timeout 30s;" in conf
    assert lb_serves(testbed)
    restore_cluster(testbed, journal, progress=lambda m: None)
    journal.close()
    assert config_snapshot(root) == before
    assert pids(testbed) == pids_before


def test_rolling_passthru_change_restarts_one_node_at_a_time(testbed, journal):
    root = root_of(testbed)
    before = config_snapshot(root)
    lines: list[str] = []
    outcome = apply_settings(testbed, ParamSet({"passthru.worker_pool_size_core": 50}), journal,
                             rolling=True, progress=lines.append)
    assert outcome.restarted == [n.name for n in testbed.nodes]
    restarts = [ln.split()[0] for ln in lines if " restarted " in ln]
    assert restarts == [n.name for n in testbed.nodes]
    # the second node went down only once nginx sent the first one requests again
    routed = [i for i, ln in enumerate(lines) if "through the load balancer again" in ln]
    assert routed and lines[routed[0]].startswith(testbed.nodes[0].name)
    assert routed[0] < lines.index(next(ln for ln in lines if ln.startswith(
        f"{testbed.nodes[1].name} restarted")))
    props = Path(testbed.nodes[0].passthru_properties).read_text()
    assert "worker_pool_size_core=50" in props
    assert lb_serves(testbed)
    restore_cluster(testbed, journal, progress=lambda m: None)
    journal.close()
    assert config_snapshot(root) == before


def test_dry_run_changes_nothing(testbed):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    outcome = apply_settings(
        testbed,
        ParamSet({"jvm.xmx": "768m", "nginx.lb_method": "least_conn",
                  "passthru.io_buffer_size": 8192}),
        None, dry_run=True, progress=lambda m: None)
    keys = " ".join(outcome.diffs)
    assert "integrator.sh" in keys and "passthru-http.properties" in keys and "ei.http.conf" in keys
    assert any("+" in d and "-Xmx768m" in d for d in outcome.diffs.values())
    assert outcome.restarted == [] and not outcome.reloaded
    assert config_snapshot(root) == before and pids(testbed) == pids_before


def test_same_value_changes_no_file(testbed, journal):
    pids_before = pids(testbed)
    outcome = apply_settings(testbed, ParamSet({"jvm.xmx": "1024m"}), journal,
                             progress=lambda m: None)
    assert outcome.diffs == {} and outcome.restarted == []
    assert journal.changed_files() == [] and pids(testbed) == pids_before


@pytest.mark.parametrize(
    ("name", "text", "params", "needle"),
    [
        ("ei.http.conf", "server {\n listen 80;\n}\n", {"jvm.xmx": "1g"},
         "takes only nginx.* parameters, not jvm.xmx"),
        ("notes.txt", "hello\n", {"jvm.xmx": "1g"}, "cannot tell what kind of file"),
        ("integrator.sh", "#!/bin/sh\necho hi\n", {"jvm.xmx": "1g"}, "integrator.sh"),
    ],
)
def test_edit_file_refuses_mismatches_in_one_line(name, text, params, needle):
    from eicore.errors import EiperfError

    with pytest.raises(EiperfError) as err:
        edit_file(name, text, ParamSet(params))
    assert needle in str(err.value) and "\n" not in str(err.value)
