"""Apply tuning parameters to a cluster, safely, and put the originals back.

`apply_settings` composes the pure editors per target (integrator.sh and passthru-http.properties
of every node, nginx.conf and the vhost files), and only then touches anything, in this order:

1. JVM flags are checked with each node's own java (`java <flags> -version` through the node's
   transport; the java integrator.sh would pick: $JAVACMD, $JAVA_HOME/bin/java, else PATH).
   A refusal stops everything before a single file changes, with the known legacy fix.
2. nginx files are written through the journal, `nginx -t` checks them, and nginx reloads.
   A failed check or reload puts the nginx files back at once; nginx keeps serving the old one.
3. node files are written and the nodes whose files changed restart (all at once, or rolling:
   one node at a time, each ready before the next, so the load balancer keeps serving).
   Nodes that were not running are left stopped.

Every write goes through a `Journal`; `restore_cluster` puts the files back and restarts or
reloads what they changed. Facts recovery needs (which nodes were restarted, which were down)
are noted in the journal before they happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from eicore import lb_control, node_control
from eicore.cluster import Cluster, Node, load_cluster
from eicore.errors import ConfigError, EiperfError
from eicore.transport import NodeTransport, transport_for
from tuning.edit import Edit, EditorError, unified_diff
from tuning.integrator_sh import (
    apply_jvm_changes,
    legacy_flag_fixes,
    parse_java_version_output,
    parse_refusal,
    read_jvm_options,
    validate_flags_command,
)
from tuning.journal import Journal, JournalState, unfinished_journals
from tuning.nginx_conf import apply_nginx_changes
from tuning.params import ParamSet, Target, format_value, target_of
from tuning.passthru_properties import apply_passthru_changes

Progress = Callable[[str], None]
NGINX = "nginx"
# The java integrator.sh would run (its own lookup order).
_FIND_JAVA = (
    'if [ -n "$JAVACMD" ]; then echo "$JAVACMD"; '
    'elif [ -n "$JAVA_HOME" ]; then echo "$JAVA_HOME/bin/java"; '
    "else command -v java; fi"
)
_SHELL_TEXT = re.compile(r"[$\"'`\\]")


class ApplyError(EiperfError):
    """A change a node or nginx refused; `node` and the JVM's own words when there are any."""

    def __init__(self, message: str, node: str | None = None, jvm_message: str | None = None):
        super().__init__(message)
        self.node = node
        self.jvm_message = jvm_message


@dataclass
class ApplyOutcome:
    """What an apply did: the diff of every file (by "owner:path"), who restarted, reloads."""

    diffs: dict[str, str]
    restarted: list[str] = field(default_factory=list)
    reloaded: bool = False


@dataclass(frozen=True)
class FileChange:
    """One file's planned rewrite; `owner` is a node name or "nginx"."""

    owner: str
    path: str
    old: str
    new: str

    @property
    def key(self) -> str:
        return f"{self.owner}:{self.path}"

    @property
    def diff(self) -> str:
        return unified_diff(self.old, self.new, self.key)


class _Transports:
    """One transport per node (and one for nginx) for the length of an apply."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._by: dict[str, NodeTransport] = {}

    def node(self, node: Node) -> NodeTransport:
        if node.name not in self._by:
            self._by[node.name] = transport_for(node)
        return self._by[node.name]

    def lb(self) -> NodeTransport:
        if NGINX not in self._by:
            self._by[NGINX] = transport_for(self.cluster.load_balancer)
        return self._by[NGINX]

    def close(self) -> None:
        for t in self._by.values():
            t.close()


def _read(t: NodeTransport, path: str, what: str) -> str:
    try:
        data = t.read_bytes(path)
    except FileNotFoundError:
        raise EiperfError(f"{what}: {path} not found on {t.host}; check the cluster file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EiperfError(f"{what}: {path} is not UTF-8 text; eiperf edits only text files") from None


# ---- planning (reads only) ---------------------------------------------------------------------


def plan_changes(cluster: Cluster, params: ParamSet, transports: _Transports) -> list[FileChange]:
    """Every file rewrite `params` asks for (unchanged files left out); changes nothing."""
    out: list[FileChange] = []
    for node in cluster.nodes:
        t = transports.node(node)
        if params.jvm:
            old = _read(t, node.integrator_sh, node.name)
            edit = apply_jvm_changes(old, params.jvm, f"{node.name}: bin/integrator.sh")
            out.append(FileChange(node.name, node.integrator_sh, old, edit.new_text))
        if params.passthru:
            old = _read(t, node.passthru_properties, node.name)
            edit = apply_passthru_changes(old, params.passthru, f"{node.name}: passthru-http.properties")
            out.append(FileChange(node.name, node.passthru_properties, old, edit.new_text))
    if params.nginx:
        lb = cluster.load_balancer
        t = transports.lb()
        files = {}
        for name in (lb.conf, *lb.vhost_files):
            try:
                files[name] = t.read_bytes(lb.conf_path(name)).decode("utf-8")
            except FileNotFoundError:
                continue
        if not files:
            raise EiperfError(f"nginx: none of {lb.conf}, {', '.join(lb.vhost_files)} found")
        for name, edit in apply_nginx_changes(files, params.nginx).items():
            out.append(FileChange(NGINX, lb.conf_path(name), files[name], edit.new_text))
    return [c for c in out if c.new != c.old]


# ---- JVM flag check (before any restart) --------------------------------------------------------


def literal_jvm_flags(script_text: str) -> list[str]:
    """The -X flags a start-up script passes that need no shell to expand (what we can check)."""
    opts = read_jvm_options(script_text)
    return [
        tok for tok in (*opts.options, *opts.command_flags)
        if tok.startswith("-X") and not _SHELL_TEXT.search(tok)
    ]


def node_java(t: NodeTransport) -> str:
    """The java a node's integrator.sh runs: $JAVACMD, $JAVA_HOME/bin/java, or the one on PATH."""
    r = t.run(["sh", "-c", _FIND_JAVA], timeout=30)
    java = r.stdout.strip()
    if not r.ok or not java:
        raise EiperfError(f"no java found on {t.host}: set JAVA_HOME for the node or put java on PATH")
    return java


def _fix_advice(flags: list[str], java_output: str) -> str:
    try:
        major = parse_java_version_output(java_output)
    except EditorError:
        return ""
    fixes = legacy_flag_fixes(flags, major)
    if not fixes:
        return ""
    parts = [f"{f.flag} -> {f.replacement or '(drop it)'} ({f.reason})" for f in fixes]
    args = []
    for fix in fixes:
        for name, value in fix.changes.items():
            args.append(f"--unset {name}" if value is None else f"--set {name}={format_value(value)}")
    return "; fix: " + "; ".join(parts) + "; e.g. eiperf tune apply " + " ".join(dict.fromkeys(args))


def check_jvm_flags(
    cluster: Cluster, changes: Iterable[FileChange], transports: _Transports
) -> None:
    """Run `java <new flags> -version` on each node whose script changes; ApplyError if refused."""
    seen: dict[tuple[str, str, tuple[str, ...]], None] = {}
    for change in changes:
        node = next((n for n in cluster.nodes if n.name == change.owner), None)
        if node is None or change.path != node.integrator_sh:
            continue
        t = transports.node(node)
        flags = literal_jvm_flags(change.new)
        java = node_java(t)
        key = (t.host, java, tuple(flags))
        if key in seen:
            continue
        r = t.run(validate_flags_command(java, flags), timeout=60)
        output = r.stderr + r.stdout
        if r.ok:
            seen[key] = None
            continue
        refusal = parse_refusal(output)
        if not refusal:
            lines = output.strip().splitlines()
            refusal = lines[-1] if lines else f"exit {r.returncode}"
        plain = t.run([java, "-version"], timeout=60)
        advice = _fix_advice(flags, plain.stderr + plain.stdout)
        raise ApplyError(
            f"{node.name}: its JVM refuses the new flags ({refusal}){advice}; nothing was changed",
            node=node.name,
            jvm_message=refusal,
        )


# ---- applying ----------------------------------------------------------------------------------


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
    transports = _Transports(cluster)
    try:
        changes = plan_changes(cluster, params, transports)
        outcome = ApplyOutcome({c.key: c.diff for c in changes})
        check_jvm_flags(cluster, changes, transports)
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
    finally:
        transports.close()


def _apply_nginx(
    cluster: Cluster,
    changes: list[FileChange],
    journal: Journal,
    transports: _Transports,
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
        why = re.sub(r"^.*?\[emerg\] \d+#\d+: ", "", lb_control._first_error(checked))
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
    transports: _Transports,
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
                _restart(node, transports.node(node), progress)
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
    _restart_all(to_restart, transports, progress)
    return [n.name for n in to_restart]


def _restart(node: Node, t: NodeTransport, progress: Progress) -> None:
    try:
        pid = node_control.restart_node(t, node)
    except node_control.NodeStartError as e:
        reason = str(e).split("\n", 1)[-1].strip()
        refusal = parse_refusal(reason) or reason
        raise ApplyError(
            f"{node.name} did not start with the new settings: {' '.join(refusal.split())[:400]}",
            node=node.name,
            jvm_message=refusal,
        ) from None
    progress(f"{node.name} restarted (pid {pid})")


def _restart_all(nodes: list[Node], transports: _Transports, progress: Progress) -> None:
    """Restart `nodes` together (stop all, start all, wait for each); first failure raised."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(_restart, n, transports.node(n), progress) for n in nodes]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


# ---- one file (`tune apply --file`) ------------------------------------------------------------

_KIND_NAMES = {
    Target.JVM: "a JVM start-up script",
    Target.NGINX: "an nginx config file",
    Target.PASSTHRU: "a pass-through properties file",
}


def file_kind(name: str, text: str) -> Target:
    """Which editor a file needs, from its name (.sh, .conf, .properties), else its content."""
    if name.endswith(".sh"):
        return Target.JVM
    if name.endswith(".conf"):
        return Target.NGINX
    if name.endswith(".properties"):
        return Target.PASSTHRU
    try:
        read_jvm_options(text, name)
        return Target.JVM
    except EditorError:
        pass
    if re.search(r"^\s*(server|upstream|http|events|location)\b[^\n]*\{", text, re.M):
        return Target.NGINX
    if re.search(r"^\s*(worker_pool_size_\w+|http\.socket\.timeout|io_\w+)\s*[=:]", text, re.M):
        return Target.PASSTHRU
    raise ConfigError(
        f"{name}: cannot tell what kind of file this is; eiperf edits integrator.sh / "
        "wso2server.sh, nginx .conf files and passthru-http.properties"
    )


def edit_file(name: str, text: str, params: ParamSet) -> Edit:
    """The rewrite of one config file (kind detected) that `params` asks for; pure."""
    kind = file_kind(name, text)
    wrong = [k for k in params if target_of(k) is not kind]
    if wrong:
        raise ConfigError(
            f"{name} is {_KIND_NAMES[kind]}: it takes only {kind.value}.* parameters, "
            f"not {wrong[0]}"
        )
    if kind is Target.JVM:
        return apply_jvm_changes(text, params.jvm, name)
    if kind is Target.PASSTHRU:
        return apply_passthru_changes(text, params.passthru, name)
    return apply_nginx_changes({name: text}, params.nginx)[name]


# ---- restoring ---------------------------------------------------------------------------------


def restore_cluster(cluster: Cluster | None, journal: Journal, *, progress: Progress = print) -> list[str]:
    """Put the journal's files back, then restart the nodes / reload nginx that ran them.

    A node restarts when the journal says it was restarted with the new files, or when it is
    down though it ran before; nginx reloads when its files changed and it runs. Returns the
    "host:path" of each file restored. Without a cluster, or for a journal noted "files_only"
    (`eiperf deploy`: EI picks up its proxy files by itself), only the files come back.
    """
    changed = journal.changed_files()
    restored = journal.restore(cluster=cluster)
    for item in restored:
        progress(f"restored {item}")
    if cluster is None or not changed or journal.notes.get("files_only"):
        return restored
    notes = journal.notes
    transports = _Transports(cluster)
    try:
        paths = {p for _, p in changed}
        lb = cluster.load_balancer
        nginx_paths = {lb.conf_path(n) for n in (lb.conf, *lb.vhost_files)}
        if paths & nginx_paths:
            t = transports.lb()
            if lb_control.master_pid(t, lb) is not None:
                lb_control.reload(t, lb)
                progress("nginx reloaded with the restored config")
        again = []
        for node in cluster.nodes:
            if not any(p.startswith(node.ei_home.rstrip("/") + "/") for p in paths):
                continue
            alive = node_control.node_state(transports.node(node), node).alive
            if node.name in notes.get("restarted", []):
                again.append(node)
            elif not alive and node.name not in notes.get("down_before", []):
                again.append(node)
        _restart_all(again, transports, progress)
    finally:
        transports.close()
    return restored


def cluster_of(journal: Journal) -> Cluster | None:
    """The cluster a journal was written for (None when it has none or the file is gone)."""
    if journal.cluster_file is None or not Path(journal.cluster_file).exists():
        return None
    return load_cluster(journal.cluster_file)


def restore_journals(journals: list[Journal], progress: Progress = print) -> int:
    """Restore and remove each journal (newest first); returns how many were restored.

    A journal whose files could not all be put back stays on disk (and raises); one whose
    files are back is removed even when a restart then fails (the error is raised after).
    """
    errors: list[EiperfError] = []
    count = 0
    for journal in journals:
        try:
            restore_cluster(cluster_of(journal), journal, progress=progress)
        except EiperfError as e:
            errors.append(e)
        finally:
            if journal.state is JournalState.RESTORED:
                journal.close()
                count += 1
            else:
                journal.release()
    if errors:
        raise errors[0]
    return count


def recover(results_dir: Path, progress: Progress = print) -> int:
    """Restore every journal a crashed eiperf left open under `results_dir` (cheap when none)."""
    journals = unfinished_journals(results_dir)
    if not journals:
        return 0
    progress(f"eiperf: restoring {len(journals)} unfinished change journal(s) left by an "
             "interrupted eiperf")
    return restore_journals(journals, progress)
