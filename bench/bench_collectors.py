"""Collector cost: CPU of the collector process for a 2-node testbed sampled at 1 Hz.

Starts a private testbed in a temp dir (free loopback ports), runs `CollectorProcess` against
it for --duration seconds, and prints the collector process's CPU seconds per wall second as a
% of one core (target < 1 %), measured from psutil on the child's PID, plus each collector's
per-round cost in ms (from the `round_ms.<collector>` self-metrics it wrote). The testbed is
taken down at the end.

    .venv/bin/python bench/bench_collectors.py [--duration 40] [--interval 1.0] [--nodes 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_testbed  # noqa: E402

TARGET_PERCENT = 1.0
# The embedded JVM compiles its JMX client code (C1) over the first rounds; steady state is
# measured after this, the whole life (start-up included) is printed too.
WARMUP_S = 10.0


def cpu_seconds(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def measure(cluster_file: str, out: Path, duration: float, interval: float) -> dict:
    import psutil

    from loadtests.collectors.process import CollectorProcess

    cp = CollectorProcess(cluster_file, out, interval=interval)
    began = time.monotonic()
    cp.start()
    try:
        started_s = time.monotonic() - began
        proc = psutil.Process(cp.pid)
        at_ready = cpu_seconds(proc)
        time.sleep(WARMUP_S)
        t0, c0 = time.monotonic(), cpu_seconds(proc)
        time.sleep(max(0.0, duration - WARMUP_S))
        t1, c1 = time.monotonic(), cpu_seconds(proc)
        rss = proc.memory_info().rss
    finally:
        rc = cp.stop()
    return {"start_s": started_s, "cpu_at_ready": at_ready, "steady_cpu": c1 - c0,
            "steady_wall": t1 - t0, "total_cpu": c1, "total_wall": t1 - began, "rss": rss,
            "rc": rc}


def round_costs(out: Path, interval: float) -> dict[str, list[float]]:
    import pyarrow.parquet as pq

    df = pq.read_table(out).to_pandas()
    own = df[(df["node"] == "collector") & df["metric"].str.startswith("round_ms.")]
    first = sorted(df["ts"].unique())[:int(WARMUP_S / interval)]  # skip warm-up
    own = own[~own["ts"].isin(first)]
    return {m.removeprefix("round_ms."): list(g["value"]) for m, g in own.groupby("metric")}


def format_report(r: dict, costs: dict[str, list[float]], nodes: int, interval: float) -> list[str]:
    steady = r["steady_cpu"] / r["steady_wall"] * 100
    overall = r["total_cpu"] / r["total_wall"] * 100
    verdict = "OK" if steady < TARGET_PERCENT else "ABOVE TARGET"
    lines = [
        f"collector cost: {nodes} nodes, {1 / interval:g} Hz, {r['total_wall']:.1f} s "
        f"(process exit code {r['rc']})",
        f"  steady state : {r['steady_cpu']:.3f} CPU s over {r['steady_wall']:.1f} s = "
        f"{steady:.2f} % of one core   (target < {TARGET_PERCENT:g} %: {verdict})",
        f"  whole life   : {r['total_cpu']:.3f} CPU s over {r['total_wall']:.1f} s = "
        f"{overall:.2f} % of one core   (includes start-up: {r['cpu_at_ready']:.2f} CPU s, "
        f"ready after {r['start_s']:.2f} s)",
        f"  memory       : {r['rss'] / 2**20:.0f} MiB RSS (Python + embedded JVM)",
        "  per-round cost of each collector (wall ms, warm rounds):",
        f"    {'collector':<10} {'rounds':>6} {'median':>8} {'p90':>8} {'max':>8}",
    ]
    total = [sum(v) for v in zip(*costs.values(), strict=False)] if costs else []
    for name, values in [*sorted(costs.items()), ("all", total)]:
        if values:
            lines.append(f"    {name:<10} {len(values):>6} {percentile(values, 50):>8.2f} "
                         f"{percentile(values, 90):>8.2f} {max(values):>8.2f}")
    if total:
        lines.append(f"  a round takes {percentile(total, 50) / (interval * 1000):.2%} of the "
                     f"interval (median)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=40.0,
                        help=f"seconds of collection (the first {WARMUP_S:g} s are warm-up)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--nodes", type=int, default=2, help="testbed nodes")
    args = parser.parse_args()
    from testbed import manager

    with tempfile.TemporaryDirectory(prefix="eiperf-bench-collectors-") as tmp:
        tb = Path(tmp) / "testbed"
        print(f"starting a {args.nodes}-node testbed in {tb} ...", flush=True)
        cluster = start_testbed(tb, args.nodes)
        try:
            out = Path(tmp) / "metrics.parquet"
            print(f"collecting for {args.duration:g} s at {1 / args.interval:g} Hz ...",
                  flush=True)
            result = measure(cluster.source, out, args.duration, args.interval)
            costs = round_costs(out, args.interval)
        finally:
            manager.down(tb, progress=lambda m: None)
    for line in format_report(result, costs, args.nodes, args.interval):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
