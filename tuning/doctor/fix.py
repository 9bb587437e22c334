"""`eiperf doctor --fix`: write the OS fixes into drop-ins on each host, through the journal.

Each host login gets its sysctl.d / limits.d drop-ins (an existing drop-in keeps its other
lines; a key's line is replaced), written over the host's transport through a `Journal`, so
`eiperf tune restore` puts every file back byte for byte (or removes it when it was absent).
Then the per-network-namespace values (net.*, `SYSCTL_DROPIN`) are applied with
`sysctl -p <drop-in>` (through `sudo -n` when the login is not root); kernel-wide values
(fs.file-max, `SYSCTL_GLOBAL_DROPIN`) are only written, to apply at the next boot, and
open-files limits apply to new logins. eiperf never applies a kernel-wide value.

Hosts this machine reaches through the local transport are refused: that is this machine's
own /etc and kernel (the loopback testbed). `etc` puts the drop-ins under another folder
instead of /etc, for test hosts that share this machine's /etc (the multi-host testbed's
namespaces bind only /etc/nginx of their own).

The nodes' cluster files (axis2.xml, carbon.xml, catalina-server.xml) are fixed through the same
journal (`tuning.doctor.cluster_fix` computes the edits); the nodes pick them up at their next
restart. The live net.* values a host had before `sysctl -p` are noted in the journal
(`LIVE_NOTE`); `restore_live` sets them again.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from eicore.cluster import Cluster, LoadBalancer, Node
from eicore.errors import ConfigError, EiperfError
from eicore.transport import NodeTransport, transport_for
from tuning.doctor.cluster_checks import check_cluster
from tuning.doctor.cluster_fix import (
    FIXABLE,
    decode,
    edit_node_file,
    encode,
    node_file_path,
    plan_cluster_fixes,
)
from tuning.doctor.facts import ClusterFacts, HostFacts, NodeFacts, gather_host
from tuning.doctor.os_checks import LIMITS_DROPIN, SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN
from tuning.doctor.row import Row, Verdict
from tuning.journal import Journal

ETC = "/etc"
#: journal note: [{"role", "host", "values": {key: value before --fix}}] per host applied
LIVE_NOTE = "sysctl_live"
DROPINS = (SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN, LIMITS_DROPIN)


def line_key(line: str, dropin: str) -> str:
    """What makes two lines of a drop-in the same setting: the sysctl key; for limits.d the
    domain, type and item (`wso2 hard nofile`)."""
    if dropin == LIMITS_DROPIN:
        return " ".join(line.split()[:3])
    return line.split("=", 1)[0].strip()


def merge_dropin(text: str | None, lines: list[str], dropin: str) -> str:
    """`text` (None: no such file) with each of `lines` replacing the earlier line of its
    setting, new ones appended; comments and other lines stay (pure)."""
    keys = {line_key(x, dropin) for x in lines}
    head = "" if text else "# written by eiperf doctor --fix (eiperf tune restore removes it)\n"
    kept = [x for x in (text or "").splitlines(keepends=True)
            if x.lstrip().startswith("#") or not x.strip() or line_key(x, dropin) not in keys]
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    return head + "".join(kept) + "".join(x + "\n" for x in lines)


def relocate(path: str, etc: str) -> str:
    """`path` (under /etc) under `etc` instead."""
    return etc.rstrip("/") + path.removeprefix(ETC) if etc != ETC else path


def plan_fixes(rows: list[Row]) -> dict[str, dict[str, list[str]]]:
    """{host label: {drop-in: lines}} of the OS rows that warn or fail (pure)."""
    plan: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.fix and r.fix_file in DROPINS and r.verdict in (Verdict.WARN, Verdict.FAIL):
            lines = plan.setdefault(r.host, {}).setdefault(r.fix_file, [])
            if r.fix not in lines:
                lines.append(r.fix)
    return plan


def _sysctl_argv(h_user: str, *args: str) -> list[str]:
    return ["sysctl", *args] if h_user == "root" else ["sudo", "-n", "sysctl", *args]


def _apply_net(t: NodeTransport, h: HostFacts, path: str, lines: list[str]) -> str:
    """`sysctl -p` the host's net.* drop-in, then read the values back: procps' sysctl exits
    0 even when the kernel refused a key, so only the values read back say it worked."""
    r = t.run(_sysctl_argv(h.user, "-p", path), timeout=30)
    want = {k.strip(): " ".join(v.split()) for k, v in (x.split("=", 1) for x in lines)}
    now = gather_host(t, h.host, h.roles, tuple(want)).sysctl
    wrong = [k for k, v in want.items() if now.get(k) != v]
    if not wrong:
        return f"{h.label}: applied {path} ({len(want)} net.* value(s) read back)"
    why = next((x for x in reversed(r.stderr.splitlines()) if x.strip()),
               f"exit {r.returncode}")
    return (f"{h.label}: written, not applied: {', '.join(wrong)} still differ ({why}); as "
            f"root there: {shlex.join(['sysctl', '-p', path])}")


@dataclass
class FixOutcome:
    """What `--fix` did: the lines to print, the "host:path" written, and whether every fix
    was written (and its net.* values applied)."""

    lines: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    complete: bool = True


def _items(cluster: Cluster, facts: HostFacts) -> Node | LoadBalancer:
    """The cluster entry a login was read through (its first role)."""
    return _item(cluster, facts.roles[0])


def _item(cluster: Cluster, role: str) -> Node | LoadBalancer:
    if role == "lb":
        return cluster.load_balancer
    return next(n for n in cluster.nodes if n.name == role)


def local_hosts(cluster: Cluster, facts: ClusterFacts, rows: list[Row]) -> list[str]:
    """The hosts with OS fixes that this machine reaches through the local transport: this
    machine itself, whose /etc and kernel `--fix` never changes."""
    plan = plan_fixes(rows)
    return sorted({h.host for h in facts.hosts
                   if h.label in plan and _items(cluster, h).transport == "local"})


def has_fixes(cluster: Cluster, facts: ClusterFacts, rows: list[Row]) -> bool:
    """True when `--fix` has anything to write: OS drop-ins or cluster files."""
    return bool(plan_fixes(rows) or plan_cluster_fixes(cluster, facts.nodes, rows))


def refuse_local(cluster: Cluster, facts: ClusterFacts, rows: list[Row]) -> None:
    """ConfigError when the only fixes are OS fixes of this machine (local transport): its
    /etc and kernel are not eiperf's to change. With other fixes as well, `apply_fixes`
    skips this machine's OS fixes and says so."""
    local = local_hosts(cluster, facts, rows)
    remote_os = {h.label for h in facts.hosts if h.host not in local} & set(plan_fixes(rows))
    if local and not remote_os and not plan_cluster_fixes(cluster, facts.nodes, rows):
        raise ConfigError(
            f"doctor --fix: {', '.join(local)} is this machine (local transport): refusing to "
            "write its /etc or change its kernel; `eiperf doctor --fix-script` prints the fixes")


def apply_fixes(cluster: Cluster, facts: ClusterFacts, rows: list[Row], journal: Journal,
                etc: str = ETC,
                transport_of: Callable[[Node | LoadBalancer], NodeTransport] = transport_for
                ) -> FixOutcome:
    """Write each host's drop-ins through `journal`, then apply its net.* values (noting the
    live values they replace); then the nodes' cluster files."""
    refuse_local(cluster, facts, rows)
    plan = plan_fixes(rows)
    local = set(local_hosts(cluster, facts, rows))
    out = FixOutcome()
    live: list[dict[str, object]] = []
    for h in facts.hosts:
        if h.label not in plan:
            continue
        if h.host in local:
            out.complete = False
            out.lines.append(f"{h.label}: OS fixes not written: this machine (local transport); "
                             "`eiperf doctor --fix-script` prints them")
            continue
        t = transport_of(_items(cluster, h))
        files = {relocate(d, etc): lines for d, lines in plan[h.label].items()}
        missing = [d for d in sorted({f.rsplit("/", 1)[0] for f in files}) if not t.exists(d)]
        if missing:
            t.close()
            out.complete = False
            out.lines.append(f"{h.label}: not fixed: no folder {', '.join(missing)} there")
            continue
        try:
            for path, lines in files.items():
                try:
                    old = t.read_text(path)
                except FileNotFoundError:
                    old = None
                dropin = next(d for d in DROPINS if relocate(d, etc) == path)
                journal.write(t, path, merge_dropin(old, lines, dropin).encode("utf-8"))
                out.written.append(f"{h.host}:{path}")
                out.lines.append(f"{h.label}: wrote {path} ({len(lines)} line(s))")
        except EiperfError as e:
            out.complete = False
            out.lines.append(f"{h.label}: not fixed: {e}")
            continue
        net = relocate(SYSCTL_DROPIN, etc)
        if net in files:
            keys = [line_key(x, SYSCTL_DROPIN) for x in files[net]]
            live.append({"role": h.roles[0], "host": h.host,
                         "values": {k: h.sysctl[k] for k in keys if h.sysctl.get(k) is not None}})
            journal.note(LIVE_NOTE, live)  # before sysctl -p: a crash keeps what to set back
            out.lines.append(_apply_net(t, h, net, files[net]))
            out.complete = out.complete and " applied " in out.lines[-1]
        if relocate(SYSCTL_GLOBAL_DROPIN, etc) in files:
            out.lines.append(f"{h.label}: kernel-wide values written, not applied (next boot)")
        if relocate(LIMITS_DROPIN, etc) in files:
            out.lines.append(f"{h.label}: open-files limits apply to new logins: restart the "
                             "nodes from a new login")
    _fix_cluster_files(cluster, facts.nodes, rows, journal, transport_of, out)
    return out


def _fix_cluster_files(cluster: Cluster, facts: tuple[NodeFacts, ...], rows: list[Row],
                       journal: Journal,
                       transport_of: Callable[[Node | LoadBalancer], NodeTransport],
                       out: FixOutcome) -> None:
    """Edit each node file a cluster fix needs (read again as bytes, so every other byte stays),
    judge the edited files again, and write through `journal` only those that now pass."""
    plan = plan_cluster_fixes(cluster, facts, rows)
    if not plan:
        return
    nodes = {n.name: n for n in cluster.nodes}
    transports: dict[str, NodeTransport] = {}
    edited: dict[tuple[str, str], bytes] = {}
    wrote: set[str] = set()
    texts = {f.name: dict(f.files) for f in facts}
    for (name, short), edits in plan.items():
        node = nodes[name]
        t = transports.setdefault(name, transport_of(node))
        path = node_file_path(node, short)
        try:
            new = encode(edit_node_file(decode(t.read_bytes(path)), edits))
            ET.fromstring(new)
        except (EiperfError, OSError, ValueError, ET.ParseError) as e:
            out.complete = False
            out.lines.append(f"{name}: {path} not fixed: {e}")
            continue
        edited[(name, short)] = new
        texts[name][short] = new.decode("utf-8", "replace")
    after = check_cluster(cluster, tuple(
        NodeFacts(f.name, f.host, f.port_offset, f.pid, f.jvm_limits, texts[f.name], f.proxies,
                  f.error) for f in facts))
    still = {(r.host, r.check) for r in after
             if r.check in FIXABLE and r.verdict in (Verdict.WARN, Verdict.FAIL)}
    for (name, short), data in edited.items():
        node = nodes[name]
        label, path = f"{node.name} ({node.host})", node_file_path(node, short)
        left = sorted(c for h, c in still if h == label and _file_of(c) == short)
        if left:
            out.complete = False
            out.lines.append(f"{name}: {path} not fixed: {', '.join(left)} would still not "
                             "pass; edit it by hand")
            continue
        try:
            journal.write(transports[name], path, data)
        except EiperfError as e:
            out.complete = False
            out.lines.append(f"{name}: {path} not fixed: {e}")
            continue
        out.written.append(f"{node.host}:{path}")
        out.lines.append(f"{name}: wrote {path}: "
                         + "; ".join(e.describe() for e in plan[(name, short)]))
        wrote.add(name)
    for name, t in transports.items():
        if name not in wrote:  # the journal keeps (and closes) those it wrote through
            t.close()
    if wrote:
        out.lines.append("cluster files take effect when the nodes restart "
                         "(bin/integrator.sh restart, one node at a time)")


def _file_of(check: str) -> str:
    if check.startswith("carbon.xml"):
        return "carbon.xml"
    if check.startswith("proxyPort"):
        return "catalina-server.xml"
    return "axis2.xml"


def restore_live(cluster: Cluster, note: list[dict[str, object]],
                 transport_of: Callable[[Node | LoadBalancer], NodeTransport] = transport_for
                 ) -> list[str]:
    """Set each host's net.* values back to what they were before `--fix` (the journal's
    `LIVE_NOTE`), with `sysctl -w` (sudo -n when not root), and read them back; one line per
    host. Call after the drop-ins are restored (`eiperf tune restore`)."""
    out = []
    for entry in note:
        role, values = str(entry["role"]), dict(entry["values"])  # type: ignore[call-overload]
        try:
            item = _item(cluster, role)
        except StopIteration:
            out.append(f"{entry['host']}: live values not set back: no {role} in the cluster file")
            continue
        t = transport_of(item)
        try:
            user = gather_host(t, item.host, (role,), ()).user
            r = t.run(_sysctl_argv(user, "-q", "-w", *(f"{k}={v}" for k, v in values.items())),
                      timeout=30)
            now = gather_host(t, item.host, (role,), tuple(values)).sysctl
        finally:
            t.close()
        wrong = [k for k, v in values.items() if now.get(k) != v]
        if wrong:
            why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            out.append(f"{entry['host']} ({role}): live values NOT set back: "
                       f"{', '.join(wrong)} ({why})")
        else:
            out.append(f"{entry['host']} ({role}): {len(values)} live net.* value(s) set back")
    return out
