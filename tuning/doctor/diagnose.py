"""Compose the doctor: gather a cluster's facts, judge every area, in the table's order."""

from __future__ import annotations

from collections.abc import Callable

from eicore.cluster import Cluster
from tuning.doctor.cluster_checks import check_cluster
from tuning.doctor.facts import ClusterFacts, gather
from tuning.doctor.nginx_checks import check_nginx
from tuning.doctor.os_checks import SYSCTL_KEYS, check_host, check_jvm_limit
from tuning.doctor.row import Area, Row, Verdict

_ORDER = {area: i for i, area in enumerate(Area)}


def judge(cluster: Cluster, facts: ClusterFacts) -> list[Row]:
    """Every row for `facts` (pure): OS per host (sysctls once per host; open-files limits
    of each login that runs a node; each JVM's own limit), nginx, cluster configuration."""
    rows: list[Row] = []
    seen: set[str] = set()
    users: dict[str, str] = {}
    labels: dict[str, str] = {}
    for h in facts.hosts:
        runs_node = any(role != "lb" for role in h.roles)
        if h.host in seen and not runs_node:
            continue
        host_rows = check_host(h, with_limits=runs_node)
        if h.host in seen:  # a second login on a host already read: only its own limits
            host_rows = [r for r in host_rows if r.check.startswith("nofile")]
        rows += host_rows
        seen.add(h.host)
        if runs_node and h.user:
            users.setdefault(h.host, h.user)
            labels.setdefault(h.host, h.label)
    rows += [check_jvm_limit(n, users.get(n.host, ""), labels.get(n.host, ""))
             for n in facts.nodes]
    lb = cluster.load_balancer
    if facts.nginx.error:
        rows.append(Row(Area.NGINX, f"{lb.host} (lb)", "reach load balancer",
                        f"({facts.nginx.error})", "reachable", Verdict.FAIL))
    else:
        n = facts.nginx
        rows += check_nginx(lb, cluster.nodes, n.files, n.contexts, n.included_by, n.includes)
    rows += check_cluster(cluster, facts.nodes)
    return sorted(rows, key=lambda r: _ORDER[r.area])


def diagnose(cluster: Cluster,
             gather_facts: Callable[[Cluster, tuple[str, ...]], ClusterFacts] = gather
             ) -> list[Row]:
    """Read every host of `cluster` over its transport and judge it; writes nothing."""
    return judge(cluster, gather_facts(cluster, SYSCTL_KEYS))
