"""The Collector contract (loadtests.collectors.base), checked for every implementation.

Each implementation is described once in IMPLEMENTATIONS: how to build it for a cluster, which
series (node -> metric names) it must give for the testbed, which node it reports for an
unreachable target, and which testbed it samples (the loopback one, or for the collector of
SSH hosts the multi-host one). Every test here runs for all of them against a real testbed.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from eicore.cluster import Cluster, Node
from loadtests.collectors.base import Collector, Sample
from loadtests.collectors.jmx_collector import JmxCollector
from loadtests.collectors.nginx_collector import NginxCollector
from loadtests.collectors.proc_collector import ProcCollector
from loadtests.collectors.psutil_collector import PsutilCollector

NODE_PSUTIL = {"cpu_percent", "rss_bytes", "threads", "open_files", "tcp_connections", "pid"}
HOST_PSUTIL = {"cpu_percent", "cpus", "load1", "mem_used_bytes", "mem_total_bytes",
               "net_sent_bytes_per_s", "net_recv_bytes_per_s"}
GENERATOR_PSUTIL = {"cpu_percent", "cpu_percent_max", "generator_cores"}
NODE_JMX = {"heap_used_bytes", "heap_committed_bytes", "heap_max_bytes", "metaspace_used_bytes",
            "jvm_threads", "process_cpu_load", "pid"}
NODE_JMX_PREFIXES = ("gc_count.", "gc_time_ms.")
NGINX = {"active", "accepts", "handled", "requests", "reading", "writing", "waiting"}
#: every round (tcp_connections and the socket-table counts come every n-th round only)
NODE_PROC = (NODE_PSUTIL - {"tcp_connections"}) | {f"host.{m}" for m in HOST_PSUTIL}
LB_PROC = {"cpu_percent", "rss_bytes", "processes", "pid"} | {f"host.{m}" for m in HOST_PSUTIL}


@dataclass(frozen=True)
class Impl:
    """One Collector implementation as the shared suite sees it."""

    make: Callable[[Cluster], Collector]
    series: Callable[[Cluster], dict[str, set[str]]]  # node -> metrics it must report
    #: The node that is unreachable in `broken` (its rows must be missing).
    broken_node: str
    #: The fixture of the cluster it samples.
    cluster_fixture: str = "testbed"
    #: The cluster with an unreachable target (`broken_cluster` below when None).
    broken: Callable[[Cluster, Path], Cluster] | None = None


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broken_cluster(cluster: Cluster, tmp_path) -> Cluster:
    """The testbed with a third node that does not run, and nginx status on a dead port."""
    ghost_home = tmp_path / "ghost"
    ghost_home.mkdir(exist_ok=True)
    port = closed_port()
    ghost = Node(name="ghost", host="127.0.0.1", ei_home=str(ghost_home),
                 jmx_url=f"service:jmx:rmi:///jndi/rmi://127.0.0.1:{port}/jmxrmi")
    lb = replace(cluster.load_balancer, status_url=f"http://127.0.0.1:{port}/nginx_status")
    return replace(cluster, nodes=(*cluster.nodes, ghost), load_balancer=lb)


def broken_ssh_cluster(cluster: Cluster, tmp_path: Path) -> Cluster:
    """The multi-host testbed with a third node whose host refuses SSH."""
    ghost = replace(cluster.nodes[0], name="ghost", host="127.0.0.1", ssh_port=closed_port())
    return replace(cluster, nodes=(*cluster.nodes, ghost))


IMPLEMENTATIONS = {
    "psutil": Impl(
        make=lambda c: PsutilCollector(c, generator_pids=[os.getpid()]),
        series=lambda c: {**{n.name: NODE_PSUTIL for n in c.nodes}, "host": HOST_PSUTIL,
                          "generator": GENERATOR_PSUTIL},
        broken_node="ghost",
    ),
    "jmx": Impl(
        make=lambda c: JmxCollector(c),
        series=lambda c: {n.name: NODE_JMX for n in c.nodes},
        broken_node="ghost",
    ),
    "nginx": Impl(
        make=lambda c: NginxCollector(c),
        series=lambda c: {"lb": NGINX},
        broken_node="lb",
    ),
    "proc": Impl(
        make=lambda c: ProcCollector(c),
        series=lambda c: {**{n.name: NODE_PROC for n in c.nodes}, "lb": LB_PROC},
        broken_node="ghost",
        cluster_fixture="hosts_testbed",
        broken=broken_ssh_cluster,
    ),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request) -> Impl:
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def cluster(impl: Impl, request) -> Cluster:
    """The running cluster `impl` samples."""
    return request.getfixturevalue(impl.cluster_fixture)


def by_series(rows: list[Sample]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.node, set()).add(r.metric)
    return out


def two_rounds(collector: Collector) -> tuple[list[Sample], list[Sample]]:
    first_ts = time.time()
    first = collector.sample(first_ts)
    time.sleep(0.3)
    return first, collector.sample(first_ts + 0.3)


def test_rows_follow_the_schema(impl: Impl, cluster):
    with impl.make(cluster) as collector:
        first, second = two_rounds(collector)
    for rows in (first, second):
        assert rows
        assert len({r.ts for r in rows}) == 1, "all rows of a round share the round's ts"
        for r in rows:
            assert isinstance(r, Sample)
            assert r.source == collector.name
            assert isinstance(r.node, str) and r.node
            assert isinstance(r.metric, str) and r.metric
            assert isinstance(r.value, float) and math.isfinite(r.value)
    assert second[0].ts > first[0].ts
    assert collector.gaps == 0


def test_gives_the_expected_series_for_every_node(impl: Impl, cluster):
    with impl.make(cluster) as collector:
        _, rows = two_rounds(collector)
    got = by_series(rows)
    for node, metrics in impl.series(cluster).items():
        assert node in got, f"{collector.name}: no rows for {node}"
        assert metrics <= got[node], f"{collector.name}/{node}: missing {metrics - got[node]}"
    if collector.name == "jmx":
        for node in cluster.nodes:
            for prefix in NODE_JMX_PREFIXES:
                assert any(m.startswith(prefix) for m in got[node.name]), (node.name, prefix)


def test_unreachable_target_is_a_gap_and_collection_goes_on(impl: Impl, cluster, tmp_path):
    broken = (impl.broken or broken_cluster)(cluster, tmp_path)
    with impl.make(broken) as collector:
        _, rows = two_rounds(collector)
    got = by_series(rows)
    assert impl.broken_node not in got
    assert collector.gaps >= 2 and collector.gaps_by_node[impl.broken_node] >= 2
    assert set(collector.gaps_by_node) == {impl.broken_node}
    for node in impl.series(cluster):
        if node != impl.broken_node:
            assert node in got, f"{collector.name}: {node} was not sampled next to a dead node"


def test_close_is_idempotent(impl: Impl, cluster):
    collector = impl.make(cluster)
    collector.start()
    assert collector.sample(time.time())
    collector.close()
    collector.close()
