"""Time to build the HTML report of a run of 1 million requests, against the time pandas needs
just to read that run's requests.parquet (target: ratio < 3).

Both are measured in this one process, side by side (alternating), 5 times each; the best of
each is reported (pandas reads with pyarrow's thread pool, so its time falls most when the machine
is idle). The run is synthetic (tests/analysis/results_fixture.py): 1,000,000 request
rows over 10 minutes, two nodes, metrics sampled once a second (~12,000 rows).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from analysis.keyfigures import run_figures  # noqa: E402
from analysis.loading import load_run  # noqa: E402
from analysis.report import build_report  # noqa: E402
from tests.analysis.results_fixture import requests_table, write_run  # noqa: E402

ROWS = 1_000_000
REPEAT = 5


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="eiperf-bench-") as tmp:
        results = Path(tmp) / "results"
        run_dir = write_run(results, "bench-1m", duration=600.0, warmup=30.0,
                            requests=requests_table(ROWS, duration=600.0, warmup=30.0))
        parquet = run_dir / "requests.parquet"
        metric_rows = len(pd.read_parquet(run_dir / "metrics.parquet"))
        out = Path(tmp) / "report.html"
        build_report([run_dir], out)  # warm imports and caches once, untimed
        read_times, report_times, load_times, summary_times = [], [], [], []
        for _ in range(REPEAT):
            start = time.perf_counter()
            run = load_run(run_dir)
            load_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_figures(run)
            summary_times.append(time.perf_counter() - start)
            del run
            start = time.perf_counter()
            frame = pd.read_parquet(parquet)
            read_times.append(time.perf_counter() - start)
            del frame
            start = time.perf_counter()
            build_report([run_dir], out)
            report_times.append(time.perf_counter() - start)
        read, report = min(read_times), min(report_times)
        print(f"run: {ROWS:,} request rows ({parquet.stat().st_size / 2**20:.1f} MiB), "
              f"{metric_rows:,} metric rows; best of {REPEAT}")
        print(f"pandas.read_parquet(requests.parquet): {read * 1000:8.1f} ms")
        print(f"build_report (load + summary + plots): {report * 1000:8.1f} ms "
              f"(report {out.stat().st_size / 2**10:.0f} KiB)")
        print(f"  of which load_run {min(load_times) * 1000:.1f} ms, summaries "
              f"{min(summary_times) * 1000:.1f} ms; the rest is matplotlib drawing the four "
              "plots (~45 ms per axes, 8 axes) and the template")
        print(f"ratio report / read: {report / read:.2f} (target < 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
