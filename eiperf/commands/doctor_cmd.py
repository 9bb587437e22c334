"""`eiperf doctor`: print the OS, nginx and cluster-configuration checks of every host; exit 1
when any check fails. Reads only, unless `--fix`: then the OS fixes are written into drop-ins
and the fixable cluster-configuration findings into the nodes' files, through the change
journal (`eiperf tune restore` puts them back), and net.* values applied; `--fix-script`
prints the OS fixes as a script instead."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eicore.cluster import Cluster
from eicore.errors import ConfigError
from eicore.results import results_dir
from eiperf.context import resolve_cluster
from tuning.doctor.diagnose import judge
from tuning.doctor.facts import ClusterFacts, gather
from tuning.doctor.fix import ETC, apply_fixes, has_fixes, refuse_local
from tuning.doctor.os_checks import SYSCTL_KEYS
from tuning.doctor.row import Row, failed
from tuning.doctor.table import as_document, fix_script, format_table
from tuning.journal import Journal


def cmd_doctor(args: argparse.Namespace) -> int:
    etc = args.etc or ETC
    if args.etc is not None and (not args.fix or not args.etc.startswith("/")):
        raise ConfigError(f"--etc {args.etc}: give an absolute folder, together with --fix")
    # The doctor only reads: it does not start the testbed (a stopped node is reported).
    cluster = resolve_cluster(args, start_testbed=False)
    facts = gather(cluster, SYSCTL_KEYS)
    rows = judge(cluster, facts)
    if args.fix:
        return _fix(args, cluster, facts, rows, etc)
    if args.json:
        print(json.dumps(as_document(rows, cluster.name), indent=2, ensure_ascii=False))
    elif args.fix_script:
        print("\n".join(fix_script(rows)))
    else:
        print(f"doctor: cluster '{cluster.name}' ({len(cluster.nodes)} nodes, load balancer "
              f"{cluster.load_balancer.host})")
        print("\n".join(format_table(rows)))
    return 1 if failed(rows) else 0


def _fix(args: argparse.Namespace, cluster: Cluster, facts: ClusterFacts, rows: list[Row],
         etc: str) -> int:
    """Write and apply the OS fixes through a journal kept "applied" for `tune restore`;
    0 when every fix was written and applied, 1 when one was not."""
    refuse_local(cluster, facts, rows)  # before a journal exists: nothing on disk changes
    if not has_fixes(cluster, facts, rows):
        print("doctor --fix: no fixable check warns or fails: nothing to fix")
        return 0
    journal = Journal.begin(results_dir(args.results), Path(cluster.source or ""),
                            "doctor --fix")
    try:
        outcome = apply_fixes(cluster, facts, rows, journal, etc)
    except BaseException:
        journal.close()  # puts back whatever was written
        raise
    for line in outcome.lines:
        print(line)
    if not journal.changed_files():
        journal.close()
    else:
        journal.note("files_only", True)  # restore: the files only, nothing restarts
        journal.mark_applied()
        print(f"journal {journal.id} keeps the originals: 'eiperf tune restore' puts them back")
    return 0 if outcome.complete else 1
