"""`eiperf up|down|status`: the embedded testbed cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from eicore.cluster import Cluster, load_cluster
from testbed import manager


def print_urls(cluster: Cluster) -> None:
    lb = cluster.load_balancer
    print(f"  HTTP     {lb.http_url}/services/SampleProxy   (Host: {lb.host_name})")
    print(f"  HTTPS    {lb.https_url}/services/SampleProxy  (Host: {lb.host_name}, CA {lb.ca_file})")
    print(f"  console  {lb.console_url}/carbon/             (Host: {lb.console_host_name})")
    if lb.status_url:
        print(f"  nginx    {lb.status_url}")
    if cluster.database is not None:
        db = cluster.database
        print(f"  database mariadb {db.host}:{db.port} ({len(db.datasources)} datasources; "
              "passwords in the files [database] names)")
    print(f"  cluster file: {cluster.source}")


def cmd_up(args: argparse.Namespace) -> int:
    cluster = manager.up(args.testbed_dir, nodes=args.nodes, port_base=args.port_base,
                         offset_base=args.offset_base, progress=lambda m: print(m, flush=True),
                         jmx_auth=args.jmx_auth, hosts=args.hosts, generators=args.generators,
                         java=args.java)
    print("testbed is up:")
    print_urls(cluster)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    manager.down(args.testbed_dir, purge=args.purge, progress=lambda m: print(m, flush=True))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    tb_dir = Path(args.testbed_dir or manager.default_dir())
    if args.cluster:
        cluster = load_cluster(args.cluster)
    elif (tb_dir / "cluster.toml").exists():
        cluster = load_cluster(tb_dir / "cluster.toml")
    else:
        print(f"no testbed in {tb_dir} (start one with 'eiperf up')")
        return 1
    states = manager.status(cluster)
    for s in states:
        mark = "up  " if s.up else "DOWN"
        pid = f"pid {s.pid}" if s.pid else "no process"
        print(f"{mark} {s.name:<8} {pid:<12} {s.detail}")
    return 0 if all(s.up for s in states) else 1
