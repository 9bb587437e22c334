"""The multi-host testbed's cost, side by side with the loopback testbed's, in one run.

Prints medians of a few rounds:
- `up` of a 2-node loopback testbed and `up --hosts` of a 2-node multi-host testbed (network
  namespaces, an sshd per host, nodes started over SSH), cold to ready, and their ratio;
- one tuning trial's apply of an nginx change (plan, write through the journal, nginx -t,
  reload) and its restore: local files against SSH with sudo on the multi-host load balancer,
  and the ratio.

    .venv/bin/python bench/bench_hosts.py [--repeat 3]        (as root)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed import host_manager, manager  # noqa: E402
from tests.conftest import free_testbed_ports  # noqa: E402
from tuning.apply import apply_settings  # noqa: E402
from tuning.journal import Journal  # noqa: E402
from tuning.params import ParamSet  # noqa: E402
from tuning.restore import restore_cluster  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def nginx_trial(cluster, results: Path, value: str) -> float:
    """Apply and restore one nginx change through a journal; seconds for both."""
    def trial():
        journal = Journal.begin(results, Path(cluster.source), "bench")
        try:
            apply_settings(cluster, ParamSet({"nginx.proxy_read_timeout": value}), journal,
                           progress=lambda m: None)
        finally:
            restore_cluster(cluster, journal, progress=lambda m: None)
            journal.close()

    return timed(trial)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    args = ap.parse_args()
    loop_up, hosts_up, loop_apply, hosts_apply = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="eiperf-bench-") as tmp:
        for i in range(args.repeat):
            loop_dir, hosts_dir = Path(tmp) / f"loop{i}", Path(tmp) / f"hosts{i}"
            port_base, offset_base = free_testbed_ports(2)
            try:
                s, loop = timed(lambda d=loop_dir, p=port_base, o=offset_base: manager.up(
                    d, nodes=2, port_base=p, offset_base=o, progress=lambda m: None))
                loop_up.append(s)
                s, hosts = timed(lambda d=hosts_dir: host_manager.up_hosts(
                    d, nodes=2, generators=0, progress=lambda m: None))
                hosts_up.append(s)
                loop_apply.append(nginx_trial(loop, Path(tmp) / f"r{i}", f"{30 + i}s"))
                hosts_apply.append(nginx_trial(hosts, Path(tmp) / f"r{i}", f"{30 + i}s"))
            finally:
                manager.down(loop_dir, progress=lambda m: None)
                host_manager.down_hosts(hosts_dir, progress=lambda m: None)
            print(f"  round {i + 1}: up {loop_up[-1]:.2f} / --hosts {hosts_up[-1]:.2f} s, "
                  f"nginx trial {loop_apply[-1]:.2f} / over SSH {hosts_apply[-1]:.2f} s",
                  file=sys.stderr)
    lu, hu, la, ha = (statistics.median(x) for x in (loop_up, hosts_up, loop_apply, hosts_apply))
    print(f"up, 2 nodes, loopback                  {lu:6.2f} s")
    print(f"up --hosts, 2 nodes, namespaces + SSH  {hu:6.2f} s   = {hu / lu:5.2f} x loopback")
    print(f"nginx trial apply+restore, local       {la:6.2f} s")
    print(f"nginx trial apply+restore, SSH + sudo  {ha:6.2f} s   = {ha / la:5.2f} x local")
    return 0


if __name__ == "__main__":
    sys.exit(main())
