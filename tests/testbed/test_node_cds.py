"""The nodes' class-data archive (testbed.node_cds): recorded from a real start, built once per
JDK and jars, used by every node from its next start, and harmless when it does not fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eicore import node_control
from eicore.transport import LocalTransport
from testbed import manager
from testbed.node_build import NODE_ARCHIVE, NODE_JAR
from tests.conftest import free_testbed_ports

T = LocalTransport()


def archive_mapped(node) -> bool:
    """The running JVM has the node's own archive mapped (the kernel lists the path it opened)."""
    pid = node_control.read_pid(T, node)
    return str(Path(node.ei_home) / "lib" / NODE_ARCHIVE) in Path(f"/proc/{pid}/maps").read_text()


def main_class_source(node, tmp_path: Path) -> str:
    """Restart the node with the JVM's class-loading log; where its main class came from."""
    log = tmp_path / f"classes-{node.name}.log"
    node_control.restart_node(T, node, env={"JAVA_OPTS": f"-Xlog:class+load=info:file={log}"})
    line = next(x for x in log.read_text().splitlines() if " EiNode source: " in x)
    return line.split(" source: ", 1)[1]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty eiperf cache: the node compiles, records and builds its archive anew."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EIPERF_CACHE", str(cache))
    return cache


def test_recorded_at_the_first_up_used_from_the_next_start_and_skipped_when_jars_differ(
        own_cache, fresh_testbed_dir, tmp_path):
    said: list[str] = []
    port_base, offset_base = free_testbed_ports(2)
    cluster = manager.up(fresh_testbed_dir, nodes=2, port_base=port_base,
                         offset_base=offset_base, progress=said.append)
    assert any("class-data archive" in line for line in said), said
    cds = own_cache / "cds"
    archives = list(cds.glob("*.jsa"))
    assert len(archives) == 1 and not list(cds.glob("*classlist*")), sorted(cds.iterdir())
    node1, node2 = cluster.nodes
    for node in cluster.nodes:  # one archive, linked into each EI_HOME
        assert (Path(node.ei_home) / "lib" / NODE_ARCHIVE).stat().st_ino == archives[0].stat().st_ino
        assert not archive_mapped(node)  # both started before it existed

    node_control.restart_node(T, node2)
    assert archive_mapped(node2)
    assert "-XX:SharedArchiveFile=lib/eiperf-node.jsa" in Path(node2.log_file).read_text()

    assert main_class_source(node2, tmp_path) == "shared objects file"

    # A jar that is not the one the archive was built from: the node starts, its classes are
    # read from the jar again (the JVM checks each jar's size and time).
    jar = Path(node2.ei_home) / "lib" / NODE_JAR
    st = jar.stat()
    os.utime(jar, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    assert main_class_source(node2, tmp_path) == f"file:{jar}"
    os.utime(jar, ns=(st.st_atime_ns, st.st_mtime_ns))

    # The next up finds the archive: nothing recorded or built, every node shares from its start.
    manager.down(fresh_testbed_dir, progress=lambda m: None)
    said.clear()
    cluster = manager.up(fresh_testbed_dir, progress=said.append)
    assert not any("class-data archive" in line for line in said), said
    assert all(archive_mapped(n) for n in cluster.nodes)
    assert list(cds.iterdir()) == archives


@pytest.mark.parametrize("fixture", ["testbed", "testbed17"])
def test_the_session_testbeds_nodes_share_classes_on_both_jdks(fixture, request):
    node = request.getfixturevalue(fixture).nodes[0]
    node_control.restart_node(T, node)
    assert archive_mapped(node)
