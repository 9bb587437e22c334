"""Testbed start-up cost, side by side with the floor a JVM sets on this machine.

Prints, measured in one run:
- a bare `java -version` start (the least any JVM start can cost here),
- `eiperf up` of a 2-node testbed from cold to ready (nodes answering, nginx serving),
- one node's restart-to-ready through its own bin/integrator.sh (stop, PID gone, start,
  port answers and the log says started),
and the ratios of the last two to the bare JVM. Medians of a few repetitions.

    .venv/bin/python bench/bench_testbed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eicore import node_control  # noqa: E402
from eicore.transport import LocalTransport  # noqa: E402
from testbed import manager  # noqa: E402
from tests.conftest import free_testbed_ports  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each leg (default 3)")
    args = ap.parse_args()
    java = manager.find_java()
    bare, ups, restarts, stops, starts = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="eiperf-bench-") as tmp:
        for i in range(args.repeat):
            bare.append(timed(lambda: subprocess.run([java, "-version"], capture_output=True,
                                                     check=True)))
            tb_dir = Path(tmp) / f"tb{i}"
            port_base, offset_base = free_testbed_ports(2)
            try:
                cluster = None

                def up(tb_dir=tb_dir, port_base=port_base, offset_base=offset_base):
                    nonlocal cluster
                    cluster = manager.up(tb_dir, nodes=2, port_base=port_base,
                                         offset_base=offset_base, progress=lambda m: None)

                ups.append(timed(up))
                node = cluster.nodes[0]
                stops.append(timed(lambda node=node: node_control.stop_node(
                    LocalTransport(), node)))
                starts.append(timed(lambda node=node: node_control.start_node(
                    LocalTransport(), node)))
                restarts.append(stops[-1] + starts[-1])
            finally:
                manager.down(tb_dir, progress=lambda m: None)
            print(f"  round {i + 1}: java -version {bare[-1]:.2f} s, up {ups[-1]:.2f} s, "
                  f"restart {restarts[-1]:.2f} s (stop {stops[-1]:.2f} + start {starts[-1]:.2f})", file=sys.stderr)
    b, u, r, st, sp = (statistics.median(x) for x in (bare, ups, restarts, stops, starts))
    print(f"bare JVM start (java -version)       {b:6.2f} s")
    print(f"testbed up, 2 nodes, cold to ready   {u:6.2f} s   = {u / b:5.1f} x bare JVM")
    print(f"node restart to ready                {r:6.2f} s   = {r / b:5.1f} x bare JVM")
    print(f"  of which stop (PID gone)           {st:6.2f} s")
    print(f"  of which start to ready            {sp:6.2f} s   = {sp / b:5.1f} x bare JVM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
