"""What a parameter set changes in config files, worked out before anything is touched.

`plan_changes` reads a cluster's files (integrator.sh and passthru-http.properties of every
node, nginx.conf and the vhost files) and returns each rewrite the pure editors make of them,
with their notes; `edit_file` does the same for one file given by hand (`eiperf tune apply
--file`), and checks a start-up script against the JDK it will meet (`tuning.jdk_checks`), as
cluster mode does with each node's own java (`tuning.flag_check`); `file_settings` reads one
file's settings (`eiperf tune show --file`). None writes: applying is `tuning.apply`, through
the change journal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eicore.cluster import Cluster
from eicore.errors import ConfigError, EiperfError
from eicore.transport import NodeTransport
from tuning.datasources_xml import DatasourcesEditor, read_pools
from tuning.edit import ConfigEditor, Edit, EditorError, unified_diff
from tuning.integrator_sh import IntegratorShEditor, read_jvm_options
from tuning.jdk_checks import check_script, conditional_notes
from tuning.nginx_conf import NginxConfEditor, find_nginx_settings, stream_notes
from tuning.node_java import java_major, node_java
from tuning.params import ParamSet, Target, format_assignment, format_value, target_of
from tuning.passthru_properties import PassthruEditor, read_properties
from tuning.transport_pool import TransportPool

NGINX = "nginx"  # the owner of the load balancer's files
#: the editor of each kind of file (the one dispatch; every editor passes one contract suite)
EDITORS: dict[Target, ConfigEditor] = {
    Target.JVM: IntegratorShEditor(), Target.NGINX: NginxConfEditor(),
    Target.PASSTHRU: PassthruEditor(), Target.DATASOURCES: DatasourcesEditor(),
}


class ApplyError(EiperfError):
    """A change a node or nginx refused; `node` and the JVM's own words when there are any."""

    def __init__(self, message: str, node: str | None = None, jvm_message: str | None = None):
        super().__init__(message)
        self.node = node
        self.jvm_message = jvm_message


@dataclass(frozen=True)
class FileChange:
    """One file's planned rewrite (maybe none: `changed`); `owner` is a node name or "nginx";
    `name` is how diffs and notes call it; `notes` what the editor left alone and why."""

    owner: str
    path: str
    old: str
    new: str
    name: str = ""
    kind: Target | None = None
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.owner}:{self.path}"

    @property
    def changed(self) -> bool:
        return self.new != self.old

    @property
    def diff(self) -> str:
        return unified_diff(self.old, self.new, self.key)


@dataclass(frozen=True)
class Plan:
    """Every file a parameter set concerns, read and rewritten in memory (nothing written)."""

    files: list[FileChange]

    @property
    def changes(self) -> list[FileChange]:
        """The files that would change, in plan order."""
        return [c for c in self.files if c.changed]

    @property
    def notes(self) -> list[str]:
        """The editors' notes on every file, changed or not."""
        return [note for c in self.files for note in c.notes]


# ---- a cluster ---------------------------------------------------------------------------------


def plan_changes(cluster: Cluster, params: ParamSet, transports: TransportPool) -> Plan:
    """Every file rewrite `params` asks for, with the editors' notes; changes nothing."""
    out: list[FileChange] = []
    for node in cluster.nodes:
        t = transports.node(node)
        for kind, path, shown in ((Target.JVM, node.integrator_sh, "bin/integrator.sh"),
                                  (Target.PASSTHRU, node.passthru_properties,
                                   "passthru-http.properties"),
                                  (Target.DATASOURCES, node.master_datasources,
                                   "conf/datasources/master-datasources.xml")):
            changes = params.for_target(kind)
            if changes:
                old = _read(t, path, node.name)
                name = f"{node.name}: {shown}"
                edit = _editor(kind, changes, t).edit({name: old}, changes)[name]
                out.append(FileChange(node.name, path, old, edit.new_text, name, kind, edit.notes))
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
        for name, edit in EDITORS[Target.NGINX].edit(files, params.nginx).items():
            out.append(FileChange(NGINX, lb.conf_path(name), files[name], edit.new_text, name,
                                  Target.NGINX, edit.notes))
    return Plan(out)


def _editor(kind: Target, changes: dict[str, Any], t: NodeTransport) -> ConfigEditor:
    """The editor of `kind` for one node: flags whose syntax depends on the JDK (a GC log's)
    are written for the node's own java, asked over its transport."""
    if kind is Target.JVM and IntegratorShEditor.needs_java_major(changes):
        return IntegratorShEditor(java_major=java_major(t, node_java(t)))
    return EDITORS[kind]


def _read(t: NodeTransport, path: str, what: str) -> str:
    try:
        data = t.read_bytes(path)
    except FileNotFoundError:
        raise EiperfError(f"{what}: {path} not found on {t.host}; check the cluster file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EiperfError(f"{what}: {path} is not UTF-8 text; eiperf edits only text files") from None


# ---- one file (`tune apply --file`) ------------------------------------------------------------

KIND_NAMES = {
    Target.JVM: "a JVM start-up script",
    Target.NGINX: "an nginx config file",
    Target.PASSTHRU: "a pass-through properties file",
    Target.DATASOURCES: "a master-datasources.xml file",
}


def file_kind(name: str, text: str) -> Target:
    """Which editor a file needs, from its name (.sh, .conf, .properties), else its content."""
    if name.endswith(".sh"):
        return Target.JVM
    if name.endswith(".conf"):
        return Target.NGINX
    if name.endswith(".properties"):
        return Target.PASSTHRU
    if name.endswith(".xml") and "<datasource" in text:
        return Target.DATASOURCES
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
        "wso2server.sh, nginx .conf files, passthru-http.properties and "
        "master-datasources.xml"
    )


@dataclass(frozen=True)
class FileEdit:
    """The rewrite of one file given by hand: its kind, the edit, and the notes to show (the
    editor's, and for a start-up script what the chosen JDK would warn about)."""

    kind: Target
    edit: Edit
    notes: tuple[str, ...] = ()
    java_major: int | None = None


def edit_file(
    name: str, text: str, params: ParamSet, java_major: int | None = None, command: str = ""
) -> FileEdit:
    """The rewrite of one config file (kind detected) that `params` asks for; pure.

    A start-up script is then checked against JDK `java_major` (required for one), as it would
    be after the change (`tuning.jdk_checks`): where that JDK would not start, ConfigError with
    the fix (`command` starts the `eiperf tune apply ...` line it suggests); where it only warns,
    the warning and its fix are notes."""
    kind = file_kind(name, text)
    wrong = [k for k in params if target_of(k) is not kind]
    if wrong:
        raise ConfigError(
            f"{name} is {KIND_NAMES[kind]}: it takes only {kind.value}.* parameters, "
            f"not {wrong[0]}"
        )
    changes = params.for_target(kind)
    editor = IntegratorShEditor(java_major) if kind is Target.JVM else EDITORS[kind]
    edit = editor.edit({name: text}, changes)[name]
    if kind is not Target.JVM:
        return FileEdit(kind, edit, edit.notes)
    if java_major is None:
        raise ValueError("a start-up script is checked against a JDK: give java_major")
    report = check_script(edit.new_text, name, java_major)
    if report.refusals:
        given = [f"--set {format_assignment(k, v)}" if v is not None else f"--unset {k}"
                 for k, v in changes.items()]
        raise ConfigError(report.refusal_line(name, given, command))
    notes = (*edit.notes, *conditional_notes(text, name, changes, java_major), *report.warnings)
    return FileEdit(kind, edit, notes, java_major)


def file_settings(name: str, text: str) -> tuple[Target, dict[str, object], list[str]]:
    """One file's settings in the parameter namespace (`eiperf tune show --file`): its kind,
    {parameter: value} (nginx: "value (file:line)" per place, "default" where none is set),
    and notes on what was not read."""
    kind = file_kind(name, text)
    if kind is Target.JVM:
        opts = read_jvm_options(text, name)
        settings: dict[str, object] = dict(opts.as_params())
        settings["jvm.options_line"] = f"{' '.join(opts.options)} ({name}:{opts.lines[0]})"
        notes = [
            f"{name}:{line}: {' '.join(opts.conditional)} only for Java older than 1.8"
            for line in opts.conditional_lines[:1]
        ]
        return kind, settings, notes
    if kind is Target.PASSTHRU:
        return kind, {f"passthru.{k}": v for k, v in read_properties(text).items()}, []
    if kind is Target.DATASOURCES:
        return kind, dict(read_pools(text, name)), []
    settings = {}
    for place in find_nginx_settings({name: text}):
        default = "default, " if place.default else ""
        shown = f"{format_value(place.value)} ({default}{name}:{place.line})"
        settings.setdefault(place.param, [])
        if shown not in settings[place.param]:  # type: ignore[operator]
            settings[place.param].append(shown)  # type: ignore[union-attr]
    notes = stream_notes({name: text})
    return kind, settings, notes
