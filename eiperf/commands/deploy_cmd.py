"""`eiperf deploy`: put a proxy service on every node and print one line per node.

The proxy files are written through a change journal. When every node serves the proxy the
journal is kept ("applied"), so `eiperf tune restore` puts the folders back as they were; when a
node does not, every file written is put back at once, so the nodes never disagree on a proxy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eicore.errors import ConfigError
from eicore.results import results_dir
from eiperf.context import resolve_cluster
from tuning.deploy import deploy_proxy, load_proxy, sample_proxy
from tuning.journal import Journal


def cmd_deploy(args: argparse.Namespace) -> int:
    # The proxy is checked before the cluster is touched: a bad file changes nothing anywhere.
    if args.proxy:
        artifact = load_proxy(args.proxy)
        if args.name and args.name != artifact.name:
            raise ConfigError(f"{args.proxy}: the proxy is named {artifact.name!r}, not "
                              f"{args.name!r}; drop --name or edit the file's name attribute")
    else:
        artifact = sample_proxy(args.name or "SampleProxy", args.log_level)
    cluster = resolve_cluster(args)
    print(f"deploying proxy {artifact.name} ({artifact.source}) to {len(cluster.nodes)} "
          f"node(s) of cluster '{cluster.name}'", flush=True)
    journal = Journal.begin(results_dir(args.results), Path(cluster.source) if cluster.source else None,
                            f"deploy {artifact.file_name}")
    journal.note("files_only", True)  # restoring needs no restart: EI undeploys by itself
    try:
        results = deploy_proxy(cluster, artifact, timeout=args.timeout, journal=journal,
                               on_result=lambda r: print(r.line(), flush=True))
    except BaseException:
        journal.close()  # puts back whatever was written
        raise
    written = journal.changed_files()
    if not all(r.ok for r in results):
        journal.close()
        if written:
            print(f"put back {len(written)} file(s) written, so no node keeps a proxy the "
                  "others lack: " + ", ".join(path for _, path in written))
        return 1
    if not written:
        journal.close()
        return 0
    journal.mark_applied()
    print(f"journal {journal.id} keeps what the folders held: 'eiperf tune restore' puts it back")
    return 0
