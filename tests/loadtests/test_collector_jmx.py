"""JmxCollector against real JVMs: heap max as configured, PIDs, and the Synapse MBeans."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import psutil
import pytest

from eicore import node_control
from eicore.cluster import Node
from eicore.node_control import read_pid
from eicore.transport import LocalTransport
from loadtests.collectors.jmx import JmxConnection, ensure_jvm
from loadtests.collectors.jmx_collector import JmxCollector, _synapse_prefix
from tests.conftest import start_testbed
from tuning.integrator_sh import apply_jvm_changes, read_jvm_options
from tuning.params import size_to_bytes

T = LocalTransport()
SIZE = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def xmx_bytes(flags: list[str]) -> int:
    """The last -Xmx among a JVM's flags, in bytes."""
    sizes = [m for f in flags if (m := re.fullmatch(r"-Xmx(\d+)([kmgKMG]?)", f))]
    assert sizes, f"no -Xmx in {flags}"
    number, unit = sizes[-1].groups()
    return int(number) * SIZE[unit.lower()]


def values(rows, node: str) -> dict[str, float]:
    return {r.metric: r.value for r in rows if r.node == node}


def xmx_in_script(node: Node) -> int:
    """The -Xmx the node's bin/integrator.sh sets (its JVM_MEM_OPTS), in bytes."""
    xmx = read_jvm_options(Path(node.integrator_sh).read_text()).xmx
    assert xmx, f"{node.integrator_sh} sets no -Xmx"
    return size_to_bytes(xmx)


def test_heap_max_is_the_xmx_the_node_runs_with(testbed):
    with JmxCollector(testbed) as collector:
        rows = collector.sample(time.time())
    for node in testbed.nodes:
        with JmxConnection(node.jmx_service_url) as conn:
            flags = conn.input_arguments()
        got = values(rows, node.name)
        assert xmx_bytes(flags) == xmx_in_script(node)  # the script's flag reached the JVM
        assert got["heap_max_bytes"] == xmx_bytes(flags)  # G1 reports -Xmx as the heap max
        assert got["heap_used_bytes"] <= got["heap_committed_bytes"] <= got["heap_max_bytes"]
        assert 0.0 <= got["process_cpu_load"] <= 1.0
        assert got["metaspace_used_bytes"] > 1e6
        # live Java threads: fewer than the OS threads of the same process (GC, JIT, ...)
        os_threads = psutil.Process(read_pid(T, node)).num_threads()
        assert 5 <= got["jvm_threads"] < os_threads


def test_heap_max_follows_a_new_xmx_in_jvm_mem_opts(fresh_testbed_dir):
    """Change JVM_MEM_OPTS in a node's integrator.sh, restart it: JMX reports the new -Xmx."""
    cluster = start_testbed(fresh_testbed_dir, nodes=1)
    node = cluster.nodes[0]
    script = Path(node.integrator_sh)
    original = script.read_bytes()
    before = xmx_in_script(node)
    xms_text = read_jvm_options(original.decode()).xms
    xms = size_to_bytes(xms_text) if xms_text else 0
    # any size the JVM accepts next to the script's -Xms (a smaller -Xmx refuses to start)
    mib = random.choice([m for m in range(256, 1537, 32)
                         if m * 2**20 != before and m * 2**20 >= xms])
    edit = apply_jvm_changes(original.decode(), {"jvm.xmx": f"{mib}m"})
    assert re.search(rf"JVM_MEM_OPTS=.*-Xmx{mib}m", edit.new_text), edit.diff
    script.write_text(edit.new_text)
    try:
        node_control.restart_node(T, node)
        with JmxCollector(cluster) as collector:
            got = values(collector.sample(time.time()), node.name)
    finally:
        script.write_bytes(original)
    assert xmx_in_script(node) == before
    assert got["heap_max_bytes"] == mib * 2**20 != before
    assert got["pid"] == read_pid(T, node)


def test_pid_is_the_one_in_the_pid_file_and_gc_counters_are_cumulative(testbed):
    with JmxCollector(testbed) as collector:
        first = collector.sample(time.time())
        time.sleep(0.2)
        second = collector.sample(time.time())
    for node in testbed.nodes:
        a, b = values(first, node.name), values(second, node.name)
        assert a["pid"] == b["pid"] == read_pid(T, node)
        gc = [m for m in a if m.startswith(("gc_count.", "gc_time_ms."))]
        assert gc and all(b[m] >= a[m] for m in gc)
        assert any(m.startswith("gc_count.G1 ") for m in gc), gc  # G1 is the JDK default


@pytest.fixture
def synapse_node(tmp_path):
    """A node whose JMX is this test process's own JVM, carrying fake Synapse MBeans."""
    ensure_jvm()
    import jpype
    from jpype import JImplements, JOverride

    @JImplements("javax.management.DynamicMBean")
    class FakeMBean:
        def __init__(self, attrs: dict[str, object]) -> None:
            self.attrs = attrs

        def _java(self, name):
            v = self.attrs[str(name)]
            if isinstance(v, str):
                return jpype.JString(v)
            return jpype.JLong(v) if isinstance(v, int) else jpype.JDouble(v)

        @JOverride
        def getAttribute(self, name):
            return self._java(name)

        @JOverride
        def getAttributes(self, names):
            out = jpype.JClass("javax.management.AttributeList")()
            Attribute = jpype.JClass("javax.management.Attribute")
            for n in names:
                if str(n) in self.attrs:
                    out.add(Attribute(n, self._java(n)))
            return out

        @JOverride
        def setAttribute(self, attribute):
            raise jpype.JClass("javax.management.AttributeNotFoundException")(str(attribute))

        @JOverride
        def setAttributes(self, attributes):
            return jpype.JClass("javax.management.AttributeList")()

        @JOverride
        def invoke(self, action, params, signature):
            return None

        @JOverride
        def getMBeanInfo(self):
            Info = jpype.JClass("javax.management.MBeanAttributeInfo")
            kinds = {str: "java.lang.String", int: "long", float: "double"}
            infos = [Info(k, kinds[type(v)], k, True, False, False) for k, v in self.attrs.items()]
            return jpype.JClass("javax.management.MBeanInfo")(
                "FakeSynapse", "fake", jpype.JArray(Info)(infos), None, None, None)

    server = jpype.JClass("java.lang.management.ManagementFactory").getPlatformMBeanServer()
    ObjectName = jpype.JClass("javax.management.ObjectName")
    beans = {
        "org.apache.synapse:Type=PassThroughConnections,Name=http-listener":
            {"ActiveConnections": 3, "LastMinuteConnections": 7, "Label": "x"},
        "org.apache.synapse:Type=Transport,Name=passthru-http-receiver":
            {"ActiveThreadCount": 4, "QueueSize": 0},
        "org.apache.synapse:Type=PassthroughLatencyView,Name=nio-http-http":
            {"AllTimeAvgLatency": 1.5},
    }
    for name, attrs in beans.items():
        server.registerMBean(FakeMBean(attrs), ObjectName(name))
    Url = jpype.JClass("javax.management.remote.JMXServiceURL")
    Factory = jpype.JClass("javax.management.remote.JMXConnectorServerFactory")
    connector = Factory.newJMXConnectorServer(Url("service:jmx:rmi://127.0.0.1"), None, server)
    connector.start()
    try:
        yield Node(name="synapse", host="127.0.0.1", ei_home=str(tmp_path),
                   jmx_url=str(connector.getAddress()))
    finally:
        connector.stop()
        for name in beans:
            server.unregisterMBean(ObjectName(name))


def test_synapse_passthrough_mbeans_are_recorded_when_present(testbed, synapse_node):
    cluster = testbed.with_nodes((synapse_node,))
    with JmxCollector(cluster) as collector:
        got = values(collector.sample(time.time()), "synapse")
    assert got["synapse.PassThroughConnections.http-listener.ActiveConnections"] == 3
    assert got["synapse.PassThroughConnections.http-listener.LastMinuteConnections"] == 7
    assert got["synapse.Transport.passthru-http-receiver.ActiveThreadCount"] == 4
    assert got["synapse.PassthroughLatencyView.nio-http-http.AllTimeAvgLatency"] == 1.5
    assert not any(m.endswith(".Label") for m in got), "non-numeric attributes are skipped"
    assert "heap_max_bytes" in got  # the standard beans of the same JVM next to them


def test_testbed_nodes_give_the_pass_through_series(testbed):
    """The node's transport registers the MBeans a real node's pass-through transport does."""
    with JmxCollector(testbed) as collector:
        rows = collector.sample(time.time())
    names = {(r.node, r.metric) for r in rows}
    for node in ("node1", "node2"):
        for metric in ("synapse.Transport.passthru-http-receiver.ActiveThreadCount",
                       "synapse.Transport.passthru-http-receiver.QueueSize"):
            assert (node, metric) in names, sorted(m for n, m in names if n == node)
    assert collector.gaps == 0


def test_synapse_metric_prefix():
    assert (_synapse_prefix("org.apache.synapse:Type=Transport,Name=passthru-http-receiver")
            == "synapse.Transport.passthru-http-receiver")
    assert (_synapse_prefix("org.apache.synapse:Name=a,Type=PassThroughConnections")
            == "synapse.PassThroughConnections.a")
