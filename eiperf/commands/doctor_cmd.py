"""`eiperf doctor`: print the OS, nginx and cluster-configuration checks of every host; exit 1
when any check fails. Reads only: `--fix` prints a script, it changes nothing."""

from __future__ import annotations

import argparse
import json

from eiperf.context import resolve_cluster
from tuning.doctor.diagnose import diagnose
from tuning.doctor.row import failed
from tuning.doctor.table import as_document, fix_script, format_table


def cmd_doctor(args: argparse.Namespace) -> int:
    # The doctor only reads: it does not start the testbed (a stopped node is reported).
    cluster = resolve_cluster(args, start_testbed=False)
    rows = diagnose(cluster)
    if args.json:
        print(json.dumps(as_document(rows, cluster.name), indent=2, ensure_ascii=False))
    elif args.fix:
        print("\n".join(fix_script(rows)))
    else:
        print(f"doctor: cluster '{cluster.name}' ({len(cluster.nodes)} nodes, load balancer "
              f"{cluster.load_balancer.host})")
        print("\n".join(format_table(rows)))
    return 1 if failed(rows) else 0
