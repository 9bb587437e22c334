"""Collectors while a node goes away: gaps for it, samples for the others, and the restarted
node followed under its new PID.

The node that is stopped or frozen here is a spare one-node testbed of this module's own, run
next to the shared testbed's nodes, so the shared cluster never loses a member.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from eicore.errors import EiperfError
from eicore.node_control import read_pid, start_node, stop_node
from eicore.transport import LocalTransport
from loadtests.collectors.base import Collector
from loadtests.collectors.jmx_collector import JmxCollector
from loadtests.collectors.psutil_collector import PsutilCollector
from testbed import manager
from tests.conftest import start_testbed
from tuning.integrator_sh import read_jvm_options
from tuning.params import size_to_bytes

T = LocalTransport()
SPARE = "spare"


@pytest.fixture(scope="module")
def spare(tmp_path_factory):
    """A running node of a private testbed, renamed "spare"; stopped at the end."""
    d = tmp_path_factory.mktemp("spare")
    for attempt in range(3):
        try:
            cluster = start_testbed(d, nodes=1)
            break
        except EiperfError:  # a port taken between the check and nginx's bind: plan again
            if attempt == 2:
                raise
    try:
        yield replace(cluster.nodes[0], name=SPARE)
    finally:
        manager.down(d, progress=lambda m: None)


@pytest.fixture
def pair(testbed, spare):
    """A shared testbed node and the spare node, as one cluster."""
    return testbed.with_nodes((testbed.nodes[0], spare))


def rows_by_node(collector: Collector) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in collector.sample(time.time()):
        out.setdefault(r.node, {})[r.metric] = r.value
    return out


def wait_for(collectors, node: str, timeout: float = 10.0) -> list[dict[str, float]]:
    """Sample every collector until each has rows for `node` again."""
    deadline = time.monotonic() + timeout
    while True:
        got = [rows_by_node(c).get(node) for c in collectors]
        if all(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_stopped_node_is_a_gap_and_its_restart_is_followed(pair, spare):
    first = pair.nodes[0].name
    with PsutilCollector(pair) as psu, JmxCollector(pair) as jmx:
        old_pid = read_pid(T, spare)
        for c in (psu, jmx):
            assert rows_by_node(c)[SPARE]["pid"] == old_pid
        try:
            assert stop_node(T, spare)
            for _ in range(2):
                for c in (psu, jmx):
                    got = rows_by_node(c)
                    assert SPARE not in got, f"{c.name} sampled a stopped node"
                    assert "pid" in got[first], f"{c.name} stopped sampling {first}"
                time.sleep(0.2)
            assert psu.gaps_by_node[SPARE] >= 2 and jmx.gaps_by_node[SPARE] >= 2
            assert psu.gaps_by_node[first] == jmx.gaps_by_node[first] == 0
        finally:
            new_pid = start_node(T, spare)
        assert new_pid != old_pid
        back = wait_for((psu, jmx), SPARE)
    assert all(back), "the restarted node was not sampled again"
    assert [b["pid"] for b in back] == [new_pid, new_pid]
    xmx = read_jvm_options(Path(spare.integrator_sh).read_text()).xmx
    assert back[1]["heap_max_bytes"] == size_to_bytes(xmx)  # the restarted JVM, from JMX


def test_frozen_jvm_is_a_gap_and_the_round_does_not_wait_for_it(pair, spare):
    first = pair.nodes[0].name
    pid = read_pid(T, spare)
    with JmxCollector(pair, deadline_s=0.5) as jmx:
        assert SPARE in rows_by_node(jmx)
        (frozen,) = [st for st in jmx._nodes if st.node.name == SPARE]
        os.kill(pid, signal.SIGSTOP)  # a JVM that no longer answers (like a very long GC pause)
        try:
            for _ in range(3):
                got = rows_by_node(jmx)
                assert SPARE not in got
                assert "heap_used_bytes" in got[first], "a frozen node held up the others"
                # the round returned while the frozen node's read is still waiting
                assert frozen.busy is not None and not frozen.busy.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert jmx.gaps_by_node[SPARE] >= 3
        (back,) = wait_for((jmx,), SPARE)
    assert back and back["pid"] == pid
