"""`eiperf demo` (what `make demo` runs): testbed up, verify, a short load run, a report.

Each step prints as it goes; the demo ends by saying where its files are and what to try next.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eicore.results import results_dir
from eiperf.commands.testbed_cmds import print_urls
from loadtests.verify import format_checks, run_verify
from testbed import manager

#: The demo's load: every vhost (HTTP, HTTPS, console), a short warm-up, a few seconds measured.
DEMO_WEIGHTS = "soap_http=4,soap_https=2,json=2,console=1"
STEPS = 4


def _step(n: int, title: str) -> None:
    print(f"\n== eiperf demo: {n}/{STEPS} {title}", flush=True)


def _run_args(cluster_file: str, args: argparse.Namespace) -> argparse.Namespace:
    from eiperf.cli import build_parser

    return build_parser().parse_args([
        "run", "--cluster", cluster_file, "--weights", DEMO_WEIGHTS, "-u", str(args.users),
        "-t", args.duration, "--warmup", "3s", "--results", str(results_dir(args.results))])


def cmd_demo(args: argparse.Namespace) -> int:
    from eiperf.commands.run_cmd import execute_run

    _step(1, "testbed")
    cluster = manager.up(args.testbed_dir, progress=lambda m: print(m, flush=True))
    print_urls(cluster)
    _step(2, "verify (the clustering guide's checklist)")
    checks = run_verify(cluster, n=200)
    for line in format_checks(checks):
        print(line)
    if not all(c.ok for c in checks):
        print("\nverify failed: fix the cluster before loading it (see the lines above)")
        return 1
    _step(3, f"load run ({args.users} users, {args.duration} after a 3 s warm-up)")
    code, run_dir = execute_run(_run_args(str(cluster.source), args))
    if code not in (0, 1):
        return code
    _step(4, "report")
    report = _write_report(run_dir)
    print("\nWhere to look next:")
    if report is not None:
        print(f"  {report}")
        print("      the report: summary, cluster snapshot, plots (open it in a browser)")
    print(f"  {run_dir}")
    print("      the run: run.json, requests.parquet (one row per request), metrics.parquet")
    print("  eiperf run -u 20 -t 30s       a longer run  (eiperf run --help for shapes, SLOs)")
    print("  eiperf tune show              the cluster's JVM, nginx and pass-through settings")
    print("  eiperf status / eiperf down   the testbed's processes / stop it, none left behind")
    return code


def _write_report(run_dir: Path) -> Path | None:
    try:
        from analysis.report import write_report
    except ImportError:
        print("  (reports are not available in this build)")
        return None
    out = run_dir / "report.html"
    write_report([run_dir], out)
    print(f"  report written: {out}", flush=True)
    return out
