"""What a sweep trial costs beyond its load, measured side by side in one run.

Prints:
- a bare `java -version` start (the floor of any JVM start on this machine),
- one node's restart-to-ready through its own bin/integrator.sh, and its ratio to the bare JVM,
- one sweep trial of a 30 s load (5 s warm-up + 25 s measured): the apply step (JVM change ->
  files written through the journal, flags checked, both nodes restarted and ready), the load
  run itself, and the apply as a share of the trial's wall time; likewise for an nginx-only
  change (reload, no restart).
Medians of a few repetitions for the first two; one trial each for the last (30 s of load).

    .venv/bin/python bench/bench_sweep.py [--cluster FILE] [--repeat 3] [--seconds 30]

Without --cluster it starts a testbed of its own in a temp folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eicore import node_control  # noqa: E402
from eicore.cluster import load_cluster  # noqa: E402
from eicore.transport import LocalTransport  # noqa: E402
from loadtests.profile import LoadProfile  # noqa: E402
from loadtests.run import run_load_test  # noqa: E402
from testbed import manager  # noqa: E402
from tests.conftest import start_testbed  # noqa: E402
from tuning.apply import apply_settings  # noqa: E402
from tuning.flag_check import node_java  # noqa: E402
from tuning.journal import Journal  # noqa: E402
from tuning.params import ParamSet  # noqa: E402
from tuning.restore import restore_cluster  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def one_trial(cluster, params: ParamSet, profile: LoadProfile, results: Path) -> dict[str, float]:
    """apply -> run -> restore, timed; the restore is not part of the trial (once per sweep)."""
    journal = Journal.begin(results, Path(cluster.source), "bench")
    try:
        t0 = time.perf_counter()
        outcome = apply_settings(cluster, params, journal, progress=lambda m: None)
        t1 = time.perf_counter()
        run = run_load_test(cluster, profile, results, progress=lambda m: None, collect=True)
        t2 = time.perf_counter()
    finally:
        t3 = time.perf_counter()
        restore_cluster(cluster, journal, progress=lambda m: None)
        journal.close()
        t4 = time.perf_counter()
    assert run.record.status.value == "complete", run.record.error
    return {"apply": t1 - t0, "run": t2 - t1, "trial": t2 - t0, "restore": t4 - t3,
            "restarted": len(outcome.restarted)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cluster", help="cluster.toml to use (default: a fresh testbed)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the restart legs")
    ap.add_argument("--seconds", type=float, default=30.0, help="load per trial incl. warm-up")
    args = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="eiperf-bench-sweep-") as tmp:
        tb_dir = None
        if args.cluster:
            cluster = load_cluster(args.cluster)
        else:
            tb_dir = Path(tmp) / "tb"
            cluster = start_testbed(tb_dir)
        try:
            t = LocalTransport()
            java = node_java(t)
            node = cluster.nodes[0]
            bare, restarts = [], []
            for _ in range(args.repeat):
                bare.append(timed(lambda: subprocess.run([java, "-version"], capture_output=True,
                                                         check=True)))
                restarts.append(timed(lambda: node_control.restart_node(t, node)))
            warmup = min(5.0, args.seconds / 6)
            profile = LoadProfile(users=2, spawn_rate=2, warmup=warmup,
                                  duration=args.seconds - warmup)
            results = Path(tmp) / "results"
            jvm = one_trial(cluster, ParamSet({"jvm.xmx": "512m"}), profile, results)
            ngx = one_trial(cluster, ParamSet({"nginx.proxy_read_timeout": "61s"}), profile,
                            results)
        finally:
            if tb_dir is not None:
                manager.down(tb_dir, progress=lambda m: None)
    b, r = statistics.median(bare), statistics.median(restarts)
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after (other work on the machine skews restarts)")
    print(f"bare java -version                 {b * 1000:8.0f} ms   (median of {args.repeat})")
    print(f"node restart-to-ready (1 node)     {r * 1000:8.0f} ms   = {r / b:5.1f} x bare JVM")
    for name, m in (("JVM change (2 nodes restart)", jvm), ("nginx-only change (reload)", ngx)):
        print(f"trial with {name}: apply {m['apply']:.2f} s + load run {m['run']:.2f} s "
              f"= {m['trial']:.2f} s; apply is {m['apply'] / m['trial'] * 100:.1f} % of the "
              f"trial ({m['restarted']} restarted); restore afterwards {m['restore']:.2f} s")
    over = jvm["run"] - args.seconds
    print(f"load run beyond its {args.seconds:g} s of load (Locust start/stop, merge, summary): "
          f"{over:.2f} s = {over / jvm['trial'] * 100:.1f} % of the trial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
