"""`eiperf verify` against the real testbed: passing when healthy, failing with a reason."""

from __future__ import annotations

import subprocess
import sys

from eicore import node_control
from eicore.transport import LocalTransport
from loadtests.verify import format_checks, run_verify


def test_verify_passes_on_a_healthy_testbed_through_the_cli(any_testbed):
    r = subprocess.run(
        [sys.executable, "-m", "eiperf.cli", "verify", "--cluster", any_testbed.source, "-n", "60"],
        capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6/6 checks passed" in r.stdout
    assert "HTTP: 60/60 ok" in r.stdout and "HTTPS: 60/60 ok" in r.stdout
    assert "header and logs agree" in r.stdout
    assert "rejoined" in r.stdout


def test_verify_fails_with_a_clear_reason_when_a_node_is_down(testbed):
    t = LocalTransport()
    node2 = testbed.nodes[1]
    node_control.stop_node(t, node2)
    try:
        checks = run_verify(testbed, n=20, failover=False)
    finally:
        node_control.start_node(t, node2)
        node_control.wait_routed(testbed, node2)  # leave the shared testbed as it was found
    by_name = {c.name.split(" (")[0]: c for c in checks}
    up = by_name["every node is up"]
    assert not up.ok
    assert any("node2: pid not running" in d for d in up.details)
    lines = format_checks(checks)
    assert lines[0].startswith("[FAIL] 1. every node is up")
    assert "NOT healthy" in lines[-1]
    # the load balancer still served every request from the remaining node
    req = next(c for c in checks if c.name.startswith("20 requests"))
    assert req.ok
