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
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from eicore.cluster import Cluster, LoadBalancer, Node
from eicore.errors import ConfigError, EiperfError
from eicore.transport import NodeTransport, transport_for
from tuning.doctor.facts import ClusterFacts, HostFacts, gather_host
from tuning.doctor.os_checks import LIMITS_DROPIN, SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN
from tuning.doctor.row import Row, Verdict
from tuning.journal import Journal

ETC = "/etc"
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


def _apply_net(t: NodeTransport, h: HostFacts, path: str, lines: list[str]) -> str:
    """`sysctl -p` the host's net.* drop-in, then read the values back: procps' sysctl exits
    0 even when the kernel refused a key, so only the values read back say it worked."""
    argv = ["sysctl", "-p", path] if h.user == "root" else ["sudo", "-n", "sysctl", "-p", path]
    r = t.run(argv, timeout=30)
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
    role = facts.roles[0]
    if role == "lb":
        return cluster.load_balancer
    return next(n for n in cluster.nodes if n.name == role)


def refuse_local(cluster: Cluster, facts: ClusterFacts, rows: list[Row]) -> None:
    """ConfigError when a host to fix is this machine (its /etc and kernel are not eiperf's
    to change in a test): the loopback testbed's hosts are."""
    plan = plan_fixes(rows)
    local = sorted({h.host for h in facts.hosts
                    if h.label in plan and _items(cluster, h).transport == "local"})
    if local:
        raise ConfigError(
            f"doctor --fix: {', '.join(local)} is this machine (local transport): refusing to "
            "write its /etc or change its kernel; `eiperf doctor --fix-script` prints the fixes")


def apply_fixes(cluster: Cluster, facts: ClusterFacts, rows: list[Row], journal: Journal,
                etc: str = ETC,
                transport_of: Callable[[Node | LoadBalancer], NodeTransport] = transport_for
                ) -> FixOutcome:
    """Write each host's drop-ins through `journal`, then apply its net.* values."""
    refuse_local(cluster, facts, rows)
    plan = plan_fixes(rows)
    out = FixOutcome()
    for h in facts.hosts:
        if h.label not in plan:
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
            out.lines.append(_apply_net(t, h, net, files[net]))
            out.complete = out.complete and " applied " in out.lines[-1]
        if relocate(SYSCTL_GLOBAL_DROPIN, etc) in files:
            out.lines.append(f"{h.label}: kernel-wide values written, not applied (next boot)")
        if relocate(LIMITS_DROPIN, etc) in files:
            out.lines.append(f"{h.label}: open-files limits apply to new logins: restart the "
                             "nodes from a new login")
    return out
