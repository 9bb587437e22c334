"""`eiperf demo` (what `make demo` runs): bring the testbed up, verify it, say what is next."""

from __future__ import annotations

import argparse

from eiperf.commands.testbed_cmds import print_urls
from eiperf.verify import format_checks, run_verify
from testbed import manager


def cmd_demo(args: argparse.Namespace) -> int:
    print("== eiperf demo: 1/2 testbed", flush=True)
    cluster = manager.up(args.dir, progress=lambda m: print(m, flush=True))
    print_urls(cluster)
    print("\n== eiperf demo: 2/2 verify (the clustering guide's checklist)", flush=True)
    checks = run_verify(cluster, n=200)
    for line in format_checks(checks):
        print(line)
    ok = all(c.ok for c in checks)
    print("\nWhere to look next:")
    print("  eiperf status                 nginx and node PIDs")
    print("  eiperf verify                 run the checklist again")
    print(f"  node logs                     {cluster.nodes[0].log_file}")
    print("  eiperf down                   stop the testbed (leaves no process behind)")
    return 0 if ok else 1
