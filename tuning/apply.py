"""Apply tuning parameters to a cluster, safely: plan, check, then change and restart.

`apply_settings` plans every file rewrite first (`tuning.changes`: integrator.sh and
passthru-http.properties of every node, nginx.conf and the vhost files; an editor refuses a
change that leaves related settings in a state the product refuses, judged on the file as it
would be), and only then touches anything, in this order:

1. JVM flags are checked with each node's own java (`tuning.flag_check`). A refusal stops
   everything before a single file changes, with the known legacy fix; what that JDK only
   warns about becomes a note.
2. nginx files are written through the journal, `nginx -t` checks them, and nginx reloads.
   A failed check or reload puts the nginx files back at once; nginx keeps serving the old one.
3. node files are written and the nodes whose files changed restart (all at once, or rolling:
   one node at a time, each ready before the next, so the load balancer keeps serving).
   Nodes that were not running are left stopped.

Every write goes through a `Journal`; `tuning.restore` puts the files back and restarts or
reloads what they changed. Facts recovery needs (which nodes were restarted, which were down)
are noted in the journal before they happen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from eicore import lb_control, node_control
from eicore.cluster import Cluster, Node
from eicore.node_control import Progress
from tuning.changes import NGINX, ApplyError, FileChange, plan_changes
from tuning.flag_check import check_jvm_flags
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restarts import restart, restart_all
from tuning.transport_pool import TransportPool


@dataclass
class ApplyOutcome:
    """What an apply did: the diff of every file (by "owner:path"), who restarted, reloads,
    and the notes on what was left alone or only warned about (also given to `progress`)."""

    diffs: dict[str, str]
    restarted: list[str] = field(default_factory=list)
    reloaded: bool = False
    notes: list[str] = field(default_factory=list)


def apply_settings(
    cluster: Cluster,
    params: ParamSet,
    journal: Journal | None,
    *,
    dry_run: bool = False,
    rolling: bool = False,
    progress: Progress = print,
) -> ApplyOutcome:
    """Edit every affected file, check, then reload nginx / restart the nodes that need it.

    With `dry_run` only the diffs are computed (and JVM flags checked): nothing changes and no
    journal is needed. Raises ApplyError when nginx or a node refuses the change; nginx files
    are already back then, node files stay journaled for the caller to restore.
    """
    with TransportPool(cluster) as transports:
        plan = plan_changes(cluster, params, transports)
        changes = plan.changes
        outcome = ApplyOutcome({c.key: c.diff for c in changes})
        outcome.notes = plan.notes + check_jvm_flags(cluster, plan.files, transports, params.jvm)
        for note in outcome.notes:
            progress(f"note: {note}")
        if dry_run or not changes:
            return outcome
        if journal is None:
            raise ValueError("apply_settings writes only through a Journal (or dry_run=True)")
        nginx_changes = [c for c in changes if c.owner == NGINX]
        if nginx_changes:
            outcome.reloaded = _apply_nginx(cluster, nginx_changes, journal, transports, progress)
        node_changes = [c for c in changes if c.owner != NGINX]
        if node_changes:
            outcome.restarted = _apply_nodes(
                cluster, node_changes, journal, transports, rolling, progress
            )
        return outcome


def _apply_nginx(
    cluster: Cluster,
    changes: list[FileChange],
    journal: Journal,
    transports: TransportPool,
    progress: Progress,
) -> bool:
    lb = cluster.load_balancer
    t = transports.lb()
    for c in changes:
        journal.write(t, c.path, c.new.encode("utf-8"))
    keys = [(t.host, c.path) for c in changes]
    checked = lb_control.test_config(t, lb)
    if not checked.ok:
        journal.restore(only=keys)
        why = re.sub(r"^.*?\[emerg\] \d+#\d+: ", "", lb_control.first_error(checked))
        raise ApplyError(f"nginx -t refused the change ({why}); nginx files restored, "
                         "nginx keeps serving the old config")
    if lb_control.master_pid(t, lb) is None:
        progress("nginx is not running: its new config applies when it starts")
        return False
    journal.note("nginx_reloaded", True)
    try:
        lb_control.reload(t, lb)
    except lb_control.NginxError as e:
        journal.restore(only=keys)
        try:
            lb_control.reload(t, lb)
        except lb_control.NginxError:
            pass
        raise ApplyError(f"{e}; nginx files restored and reloaded") from None
    progress(f"nginx reloaded ({len(changes)} file(s) changed)")
    return True


def _apply_nodes(
    cluster: Cluster,
    changes: list[FileChange],
    journal: Journal,
    transports: TransportPool,
    rolling: bool,
    progress: Progress,
) -> list[str]:
    nodes = [n for n in cluster.nodes if any(c.owner == n.name for c in changes)]
    running = {n.name for n in nodes if node_control.node_state(transports.node(n), n).alive}
    down = sorted(set(journal.notes.get("down_before", [])) | {n.name for n in nodes} - running)
    journal.note("down_before", down)
    for n in nodes:
        if n.name not in running:
            progress(f"{n.name} is not running: its new settings apply when it starts")

    def write(node: Node) -> None:
        for c in changes:
            if c.owner == node.name:
                journal.write(transports.node(node), c.path, c.new.encode("utf-8"))

    def note_restart(names: list[str]) -> None:
        journal.note("restarted", sorted(set(journal.notes.get("restarted", [])) | set(names)))

    to_restart = [n for n in nodes if n.name in running]
    if rolling:
        for node in nodes:
            write(node)
            if node.name in running:
                note_restart([node.name])
                restart(node, transports.node(node), progress)
                if node is not to_restart[-1]:
                    # the next node goes down only once nginx sends this one requests again
                    back = node_control.wait_routed(cluster, node)
                    if back is not None:
                        progress(f"{node.name} gets requests through the load balancer again "
                                 f"after {back:.1f} s")
        return [n.name for n in to_restart]
    for node in nodes:
        write(node)
    note_restart([n.name for n in to_restart])
    restart_all(to_restart, transports, progress)
    return [n.name for n in to_restart]
