"""`eiperf verify`: print the checklist as it runs; exit 1 when any item fails."""

from __future__ import annotations

import argparse

from eiperf.context import resolve_cluster
from loadtests.verify import format_check, format_checks, run_verify


def cmd_verify(args: argparse.Namespace) -> int:
    cluster = resolve_cluster(args)
    print(f"verifying cluster '{cluster.name}' ({len(cluster.nodes)} nodes, "
          f"{cluster.load_balancer.http_url})", flush=True)
    done: list[object] = []

    def progress(c):
        done.append(c)
        print(format_check(len(done), c), flush=True)

    checks = run_verify(cluster, n=args.requests, failover=not args.skip_failover,
                        on_check=progress)
    print()
    for line in format_checks(checks):
        print(line)
    return 0 if all(c.ok for c in checks) else 1
