"""`eiperf demo` (what `make demo` runs): testbed up, verify, a short load run, a report.

Each step prints as it goes; the demo ends by saying where its files are and what to try next.
"""

from __future__ import annotations

import argparse

from analysis.report import write_report
from eicore.results import results_dir
from eiperf.commands.run_cmd import execute_run
from eiperf.commands.testbed_cmds import print_urls
from loadtests.profile import LoadProfile, parse_duration
from loadtests.verify import format_checks, run_verify
from testbed import manager

#: The demo's load: every vhost (HTTP, HTTPS, console), warmed up until throughput is stable
#: (fresh JVMs serve at about half speed; a fixed few seconds left the demo's own window
#: rising from ~380 to ~1,000 req/s), at most DEMO_WARMUP_MAX_S, then a few seconds measured.
DEMO_WEIGHTS = "soap_http=4,soap_https=2,json=2,console=1"
DEMO_WARMUP_MAX_S = 30.0
STEPS = 4


def _step(n: int, title: str) -> None:
    print(f"\n== eiperf demo: {n}/{STEPS} {title}", flush=True)


def demo_profile(args: argparse.Namespace) -> LoadProfile:
    """The demo run's load: DEMO_WEIGHTS, `args.users` started at once, `args.duration`."""
    return LoadProfile.from_text(
        weights=DEMO_WEIGHTS, users=args.users, spawn_rate=float(args.users),
        duration=parse_duration(args.duration, "--duration"), warmup=0.0, warmup_auto=True,
        warmup_max=DEMO_WARMUP_MAX_S)


def cmd_demo(args: argparse.Namespace) -> int:
    profile = demo_profile(args)  # bad input fails here, before the testbed starts
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
    _step(3, f"load run ({args.users} users, {args.duration} after a warm-up until "
             f"throughput is stable, at most {DEMO_WARMUP_MAX_S:g} s)")
    code, run_dir = execute_run(cluster, profile, results_dir(args.results))
    if code not in (0, 1):
        return code
    _step(4, "report")
    report = run_dir / "report.html"
    write_report([run_dir], report)
    print(f"  report written: {report}", flush=True)
    print("\nWhere to look next:")
    print(f"  {report}")
    print("      the report: summary, cluster snapshot, plots (open it in a browser)")
    print(f"  {run_dir}")
    print("      the run: run.json, requests.parquet (one row per request), metrics.parquet")
    print("  eiperf run -u 20 -t 30s       a longer run  (eiperf run --help for shapes, SLOs)")
    print("  eiperf tune show              the cluster's JVM, nginx and pass-through settings")
    print("  eiperf status / eiperf down   the testbed's processes / stop it, none left behind")
    return code
