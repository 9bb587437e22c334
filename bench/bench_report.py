"""Time to build the HTML report of a run of 1 million requests, against the time pandas needs
just to read that run's requests.parquet (target: ratio < 3).

Measured in this one process, side by side: each round reads the file with pandas, then builds
the report as `eiperf report` does; the best round of each is reported (pandas reads with
pyarrow's thread pool, so its time falls most when the machine is idle). Then each part of the
report alone, to show where the time goes. The run is synthetic (tests/analysis/results_fixture.py): 1,000,000 request rows over 10
minutes, two nodes, metrics sampled once a second (~12,000 rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from analysis import plots  # noqa: E402
from analysis.keyfigures import run_figures  # noqa: E402
from analysis.loading import load_run  # noqa: E402
from analysis.report import build_report, figure_data_uri, node_plot, time_bin_width  # noqa: E402
from tests.analysis.results_fixture import requests_table, write_run  # noqa: E402

TARGET = 3.0


def best_of(rounds: int, steps: dict) -> dict[str, float]:
    """Each step once per round, in turn; the best time (s) of each."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="request rows (1,000,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, best one kept (7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eiperf-bench-") as tmp:
        results = Path(tmp) / "results"
        run_dir = write_run(results, "bench", duration=600.0, warmup=30.0,
                            requests=requests_table(args.rows, duration=600.0, warmup=30.0))
        parquet = run_dir / "requests.parquet"
        out = Path(tmp) / "report.html"
        build_report([run_dir], out)  # warm imports and caches once, untimed
        best = best_of(args.rounds, {
            "read": lambda: pd.read_parquet(parquet),
            "report": lambda: build_report([run_dir], out),
        })
        run = load_run(run_dir)
        figures = run_figures(run)
        width = time_bin_width(run)
        parts = best_of(args.rounds, {
            "load_run": lambda: load_run(run_dir),
            "summaries": lambda: run_figures(run),
            "timeline plot": lambda: figure_data_uri(plots.run_timeline(run, bin_s=width)),
            "node plot": lambda: node_plot(figures),
        })
        metric_rows = len(run.metrics)
        size_mib = parquet.stat().st_size / 2**20
    read = best["read"]
    print(f"run: {args.rows:,} request rows ({size_mib:.1f} MiB) and "
          f"{metric_rows:,} metric rows; best of {args.rounds} rounds")
    print(f"  pandas.read_parquet(requests.parquet)  {read * 1000:7.1f} ms")
    print(f"  build_report (load, summaries, plots)   {best['report'] * 1000:7.1f} ms")
    print("  of which, each alone in this process: "
          + ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in parts.items()))
    ratio = best["report"] / read
    print(f"ratio report / read: {ratio:.2f} (target < {TARGET:g}: "
          f"{'met' if ratio < TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
