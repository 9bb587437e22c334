"""`eiperf deploy`: put a proxy service on every node and print one line per node."""

from __future__ import annotations

import argparse

from eiperf.context import resolve_cluster


def cmd_deploy(args: argparse.Namespace) -> int:
    from tuning.deploy import deploy_proxy, load_proxy, sample_proxy

    # The proxy is checked before the cluster is touched: a bad file changes nothing anywhere.
    if args.proxy:
        artifact = load_proxy(args.proxy)
        if args.name and args.name != artifact.name:
            from eiperf.errors import ConfigError

            raise ConfigError(f"{args.proxy}: the proxy is named {artifact.name!r}, not "
                              f"{args.name!r}; drop --name or edit the file's name attribute")
    else:
        artifact = sample_proxy(args.name or "SampleProxy", args.log_level)
    cluster = resolve_cluster(args)
    print(f"deploying proxy {artifact.name} ({artifact.source}) to {len(cluster.nodes)} "
          f"node(s) of cluster '{cluster.name}'", flush=True)
    results = deploy_proxy(cluster, artifact, timeout=args.timeout,
                           on_result=lambda r: print(r.line(), flush=True))
    return 0 if all(r.ok for r in results) else 1
