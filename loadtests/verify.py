"""`eiperf verify`: the WSO2 clustering guide's "testing the cluster", automated.

Each check returns a `Check` with a line of evidence; `run_verify` runs them in the guide's
order. The failover check stops one node and starts it again through its own integrator.sh;
with `backup` members in the HTTP (or HTTPS) upstream, the active/passive check stops every
active node (the backups must take the traffic) and starts them again (they must take it back).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from eicore import node_control
from eicore.carbon_log import count_log_mediator, current_members, member_events, parse_lines
from eicore.cluster import Cluster, Node
from eicore.lbclient import LbClient, Reply
from eicore.transport import NodeTransport, transport_for
from loadtests.messages import soap_envelope

SERVICE = "/services/SampleProxy"
MEMBERSHIP_WAIT_S = 15.0
#: nginx keeps a failed server out for fail_timeout (default 10 s); wait a little longer.
ROUTED_AGAIN_WAIT_S = 20.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    evidence: str
    details: tuple[str, ...] = field(default=())
    skipped: bool = False


def format_check(i: int, c: Check) -> str:
    """One checklist line: a mark, the item's number and name, its evidence."""
    mark = "SKIP" if c.skipped else ("PASS" if c.ok else "FAIL")
    return f"[{mark}] {i}. {c.name}: {c.evidence}"


def format_checks(checks: list[Check]) -> list[str]:
    """The checklist as lines: a mark, the item, its evidence, its details."""
    lines = []
    for i, c in enumerate(checks, 1):
        lines.append(format_check(i, c))
        lines += [f"         {d}" for d in c.details]
    passed = sum(c.ok for c in checks)
    lines.append(f"{passed}/{len(checks)} checks passed" + ("" if passed == len(checks) else
                                                            " -- the cluster is NOT healthy"))
    return lines


# --------------------------------------------------------------------------- helpers


def _log_text(t: NodeTransport, node: Node, offset: int = 0) -> str:
    return t.read_from(node.log_file, offset).decode("utf-8", "replace")


def _members_of(t: NodeTransport, node: Node) -> dict[tuple[str, int], str]:
    return current_members(member_events(parse_lines(_log_text(t, node))))


def _member_addr(node: Node) -> tuple[str, int] | None:
    return (node.host, node.member_port) if node.member_port else None


def lb_methods(cluster: Cluster) -> dict[str, str]:
    """Balancing method per vhost file ('round_robin' | 'least_conn' | 'ip_hash' | 'hash')."""
    return {name: method for name, (method, _) in _upstreams(cluster).items()}


def backup_members(cluster: Cluster, vhost: str = "http") -> list[str]:
    """The nodes the `vhost` ('http'/'https') upstream holds in reserve (`server ... backup`):
    nginx sends them requests only when every other member is down."""
    ports = {"http": "http_port", "https": "https_port"}[vhost]
    by_addr = {f"{n.host}:{getattr(n, ports)}": n.name for n in cluster.nodes}
    for name, (_, backups) in _upstreams(cluster).items():
        if ("https" in name) == (vhost == "https") and not name.startswith("ui."):
            return [by_addr.get(a, a) for a in backups]
    return []


def _upstreams(cluster: Cluster) -> dict[str, tuple[str, list[str]]]:
    """Per vhost file: its upstream's balancing method and its backup servers' addresses."""
    import crossplane

    lb = cluster.load_balancer
    t = transport_for(lb)
    out: dict[str, tuple[str, list[str]]] = {}
    for name in lb.vhost_files:
        try:
            text = t.read_text(lb.conf_path(name))
        except (FileNotFoundError, OSError):
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(text)
        try:
            parsed = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
        finally:
            os.unlink(f.name)
        for d in parsed["config"][0]["parsed"] if parsed["config"] else []:
            if d["directive"] == "upstream":
                inner = {c["directive"] for c in d.get("block", [])}
                method = next((m for m in ("ip_hash", "least_conn", "hash", "random") if m in inner),
                              "round_robin")
                backups = [c["args"][0] for c in d.get("block", [])
                           if c["directive"] == "server" and "backup" in c["args"][1:]]
                out[os.path.basename(name)] = (method, backups)
    return out


def _vhost_method(methods: dict[str, str], vhost: str) -> str:
    for name, method in methods.items():
        if ("https" in name) == (vhost == "https") and not name.startswith("ui."):
            return method
    return "round_robin"


def _distribution_ok(counts: Counter[str], nodes: list[str], n: int, method: str) -> tuple[bool, str]:
    """Does a per-node count of `n` sequential requests from one client fit the method?"""
    if method == "ip_hash" or method == "hash":
        ok = len(counts) == 1
        return ok, f"{method}: one client -> one node" + ("" if ok else " expected")
    missing = [x for x in nodes if counts.get(x, 0) == 0]
    if missing:
        return False, f"{method}: node(s) {', '.join(missing)} served nothing"
    spread = max(counts.values()) - min(counts.get(x, 0) for x in nodes)
    limit = max(2, n // (10 * len(nodes)))
    return spread <= limit, f"{method}: spread {spread} (allowed {limit})"


def _burst(client: LbClient, vhost: str, n: int) -> list[Reply]:
    body = soap_envelope(1024)
    return [client.request(vhost, "POST", SERVICE, body) for _ in range(n)]


def _summarise(replies: list[Reply]) -> tuple[int, Counter[str], str]:
    ok = [r for r in replies if r.ok and r.body.startswith(b"<?xml")]
    counts = Counter(r.node or "?" for r in ok)
    lat = sorted(r.latency_s for r in ok)
    med = f", median {lat[len(lat) // 2] * 1000:.1f} ms" if lat else ""
    return len(ok), counts, med


def _first_error(replies: list[Reply]) -> str:
    bad = next((r for r in replies if not r.ok), None)
    if bad is None:
        return ""
    return bad.error or f"HTTP {bad.status}: {bad.body[:120]!r}"


# --------------------------------------------------------------------------- checks


def check_nodes_up(cluster: Cluster) -> Check:
    details, ok = [], True
    for node in cluster.nodes:
        st = node_control.node_state(transport_for(node), node)
        good = st.alive and st.http_open and st.https_open and st.console_open
        ok &= good
        ports = " ".join(f":{p}{'' if o else ' CLOSED'}" for p, o in (
            (node.http_port, st.http_open), (node.https_port, st.https_open),
            (node.console_port, st.console_open)))
        details.append(f"{node.name}: pid {st.pid if st.alive else 'not running'}, {ports}")
    return Check("every node is up", ok, f"{len(cluster.nodes)} node(s)", tuple(details))


def check_membership(cluster: Cluster) -> Check:
    details, ok = [], True
    for node in cluster.nodes:
        members = _members_of(transport_for(node), node)
        others = [o for o in cluster.nodes if o is not node and _member_addr(o)]
        missing = [o.name for o in others if _member_addr(o) not in members]
        ok &= not missing
        seen = ", ".join(f"{h}:{p}" for h, p in sorted(members)) or "none"
        details.append(f"{node.name} log: members {seen}"
                       + (f"; NO 'Member joined' for {', '.join(missing)}" if missing else ""))
    if len(cluster.nodes) == 1:
        return Check("cluster membership", True, "one node: no other member to join",
                     tuple(details))
    return Check("cluster membership ('Member joined' for every other node)", ok,
                 "every node sees every other" if ok else "membership incomplete", tuple(details))


def check_console(client: LbClient) -> Check:
    r = client.request("console", "GET", "/carbon/")
    ok = r.status == 200 and b"Management Console" in r.body
    host = client.cluster.load_balancer.console_host_name
    ev = (f"GET https://{host}/carbon/ -> {r.status or r.error}, served by {r.node or '?'}"
          f" ({r.latency_s * 1000:.1f} ms)")
    return Check("management console through the console vhost", ok, ev)


def check_requests(cluster: Cluster, client: LbClient, n: int) -> tuple[Check, dict[str, Counter[str]]]:
    """N requests through each vhost; returns the per-node counts from the upstream header."""
    details, ok, counts = [], True, {}
    for vhost in ("http", "https"):
        replies = _burst(client, vhost, n)
        good, by_node, med = _summarise(replies)
        counts[vhost] = by_node
        ok &= good == n
        per = ", ".join(f"{k} {v}" for k, v in sorted(by_node.items()))
        err = _first_error(replies)
        details.append(f"{vhost.upper()}: {good}/{n} ok{med}; {per}"
                       + (f"; first error: {err}" if err else ""))
    return Check(f"{n} requests through each of the HTTP and HTTPS vhosts", ok,
                 "all succeeded" if ok else "some requests failed", tuple(details)), counts


def check_distribution(cluster: Cluster, header_counts: dict[str, Counter[str]],
                       log_counts: Counter[str], n: int) -> Check:
    methods = lb_methods(cluster)
    names = [x.name for x in cluster.nodes]
    total = header_counts["http"] + header_counts["https"]
    agree = all(total.get(x, 0) == log_counts.get(x, 0) for x in names)
    details = [
        "per node (upstream header / LogMediator lines): "
        + ", ".join(f"{x} {total.get(x, 0)}/{log_counts.get(x, 0)}" for x in names)
    ]
    ok = agree
    for vhost in ("http", "https"):
        method = _vhost_method(methods, vhost)
        reserve = backup_members(cluster, vhost)  # they serve only when the others are down
        actives = [x for x in names if x not in reserve] or names
        fits, why = _distribution_ok(header_counts[vhost], actives, n, method)
        if reserve:
            fits &= not any(header_counts[vhost].get(x) for x in reserve)
            served = sum(header_counts[vhost].get(x, 0) for x in reserve)
            why += f"; backup {', '.join(reserve)} served {served}"
        ok &= fits
        details.append(f"{vhost.upper()} {why}")
    ev = "header and logs agree" if agree else "header and node logs DISAGREE"
    return Check("per-node distribution matches the balancing method", ok, ev, tuple(details))


def _wait_members(cluster: Cluster, target: Node, present: bool, timeout: float) -> list[str]:
    """Wait until every other node's log shows `target` joined (present) or left; the laggards."""
    addr = _member_addr(target)
    deadline = time.monotonic() + timeout
    while True:
        lagging = [o.name for o in cluster.nodes if o is not target
                   and (addr in _members_of(transport_for(o), o)) != present]
        if not lagging or time.monotonic() > deadline:
            return lagging
        time.sleep(0.2)


def check_failover(cluster: Cluster, client: LbClient, n: int) -> Check:
    if len(cluster.nodes) < 2:
        return Check("failover", True, "one node: nothing to fail over to", skipped=True)
    reserve = backup_members(cluster)  # nginx routes to a backup only when the others are down
    victim = next((x for x in reversed(cluster.nodes) if x.name not in reserve), cluster.nodes[-1])
    t = transport_for(victim)
    details = []
    stopped_at = time.monotonic()
    node_control.stop_node(t, victim)
    details.append(f"stopped {victim.name} with integrator.sh stop "
                   f"({time.monotonic() - stopped_at:.1f} s)")
    try:
        replies = _burst(client, "http", n)
        good, by_node, _ = _summarise(replies)
        failed = n - good
        details.append(f"{good}/{n} requests ok while {victim.name} was down "
                       f"({failed} failed while nginx noticed); served by "
                       + ", ".join(f"{k} {v}" for k, v in sorted(by_node.items())))
        served_by_victim = by_node.get(victim.name, 0)
        left_lag = _wait_members(cluster, victim, present=False, timeout=MEMBERSHIP_WAIT_S)
        details.append("'Member left' logged by every other node" if not left_lag
                       else f"no 'Member left' in {', '.join(left_lag)}")
    finally:
        started = time.monotonic()
        pid = node_control.start_node(t, victim)
        details.append(f"restarted {victim.name} (pid {pid}) in {time.monotonic() - started:.1f} s")
    join_lag = _wait_members(cluster, victim, present=True, timeout=MEMBERSHIP_WAIT_S)
    details.append(f"{victim.name} rejoined: 'Member joined' in every other node's log"
                   if not join_lag else f"no new 'Member joined' in {', '.join(join_lag)}")
    try:
        back_after = node_control.wait_routed(cluster, victim, ROUTED_AGAIN_WAIT_S)
    except node_control.NodeStartError:
        back_after = None
    details.append(f"nginx routes to {victim.name} again after {back_after:.1f} s"
                   if back_after is not None else
                   f"nginx did not route to {victim.name} within {ROUTED_AGAIN_WAIT_S:.0f} s")
    ok = (good == n and served_by_victim == 0 and not left_lag and not join_lag
          and back_after is not None)
    return Check("failover (one node stopped, the load balancer keeps serving)", ok,
                 f"{failed} of {n} requests failed during failover", tuple(details))


def _wait_served_by(client: LbClient, vhost: str, node: Node, timeout: float) -> float | None:
    """Seconds until a request through `vhost` is served by `node`; None when not within
    `timeout`. nginx keeps a server that failed out of each upstream for that upstream's own
    fail_timeout, so the HTTP vhost routing to it again says nothing of the HTTPS one."""
    start = time.monotonic()
    for _ in range(int(timeout / 0.25) + 1):
        if client.request(vhost, "GET", "/services/").node == node.name:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.25)
    return None


def check_active_passive(cluster: Cluster, client: LbClient, n: int,
                         vhost: str = "http") -> Check:
    """With `backup` members in the `vhost` ('http'/'https') upstream: the actives take the
    traffic; once every active is stopped the backups take it; the actives, started again,
    take it back."""
    reserve = backup_members(cluster, vhost)
    actives = [x for x in cluster.nodes if x.name not in reserve]
    name = ("active/passive " + ("" if vhost == "http" else "HTTPS ")
            + "(backup members serve only while the actives are down)")
    if not actives:
        return Check(name, False,
                     f"every member of the {vhost.upper()} upstream is a backup: {reserve}")

    def burst(when: str) -> tuple[int, Counter[str]]:
        good, by_node, _ = _summarise(_burst(client, vhost, n))
        details.append(f"{when}: {good}/{n} ok, served by "
                       + (", ".join(f"{k} {v}" for k, v in sorted(by_node.items())) or "none"))
        return good, by_node

    details: list[str] = []
    good, by_node = burst("all up")
    ok = good == n and not any(by_node.get(x) for x in reserve)
    transports = {x.name: transport_for(x) for x in actives}
    try:
        for x in actives:
            node_control.stop_node(transports[x.name], x)
        good, by_node = burst(f"actives {', '.join(x.name for x in actives)} stopped")
        ok &= good == n and set(by_node) <= set(reserve)
    finally:
        for x in actives:
            node_control.start_node(transports[x.name], x)
    for x in actives:
        try:
            if vhost == "http":
                back = node_control.wait_routed(cluster, x, ROUTED_AGAIN_WAIT_S)
            else:
                back = _wait_served_by(client, vhost, x, ROUTED_AGAIN_WAIT_S)
                ok &= back is not None
        except node_control.NodeStartError:
            back, ok = None, False
        details.append(f"{x.name} restarted; nginx routes to it again"
                       + (f" after {back:.1f} s" if back is not None else ": NOT within "
                          f"{ROUTED_AGAIN_WAIT_S:.0f} s"))
    good, by_node = burst("actives back")
    ok &= good == n and not any(by_node.get(x) for x in reserve)
    return Check(name, ok, f"backup {', '.join(reserve)}: " + (
        "served only while the actives were down" if ok else "NOT as nginx's backup rule says"),
        tuple(details))


def run_verify(cluster: Cluster, n: int = 200, failover: bool = True,
               on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Run the checklist in the guide's order; `on_check` sees each result as it comes."""
    checks: list[Check] = []

    def add(c: Check) -> None:
        checks.append(c)
        if on_check:
            on_check(c)

    add(check_nodes_up(cluster))
    add(check_membership(cluster))
    with LbClient(cluster) as client:
        add(check_console(client))
        offsets = {x.name: transport_for(x).size(x.log_file) for x in cluster.nodes}
        req_check, header_counts = check_requests(cluster, client, n)
        add(req_check)
        log_counts = _settled_log_counts(cluster, offsets, sum(header_counts["http"].values())
                                         + sum(header_counts["https"].values()))
        add(check_distribution(cluster, header_counts, log_counts, n))
        if failover:
            add(check_failover(cluster, client, n))
            for vhost in ("http", "https"):
                if backup_members(cluster, vhost):
                    add(check_active_passive(cluster, client, n, vhost))
    return checks


def _settled_log_counts(cluster: Cluster, offsets: dict[str, int], expected: int) -> Counter[str]:
    """Count new LogMediator lines per node, waiting briefly for the last lines to be written."""
    deadline = time.monotonic() + 3
    while True:
        counts = Counter({
            x.name: count_log_mediator(parse_lines(_log_text(transport_for(x), x, offsets[x.name])),
                                       SERVICE)
            for x in cluster.nodes})
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)
