"""Resolve the one cluster a command works on: --cluster FILE, else the testbed."""

from __future__ import annotations

import argparse
from pathlib import Path

from eicore.cluster import Cluster, load_cluster
from eicore.errors import EiperfError
from testbed import manager


def resolve_cluster(args: argparse.Namespace, start_testbed: bool = True) -> Cluster:
    """The cluster file given, else the testbed's (brought up when `start_testbed`)."""
    if getattr(args, "cluster", None):
        return load_cluster(args.cluster)
    tb_dir = Path(getattr(args, "testbed_dir", None) or manager.default_dir())
    if start_testbed:
        return manager.up(tb_dir, progress=lambda m: print(m, flush=True))
    if not (tb_dir / "cluster.toml").exists():
        raise EiperfError(f"no testbed in {tb_dir}; run 'eiperf up' or pass --cluster FILE")
    return load_cluster(tb_dir / "cluster.toml")
