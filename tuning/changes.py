"""What a parameter set changes in config files, worked out before anything is touched.

`plan_changes` reads a cluster's files (integrator.sh and passthru-http.properties of every
node, nginx.conf and the vhost files) and returns each rewrite the pure editors make of them;
`edit_file` does the same for one file given by hand (`eiperf tune apply --file`). Neither
writes: applying is `tuning.apply`, through the change journal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eicore.cluster import Cluster
from eicore.errors import ConfigError, EiperfError
from eicore.transport import NodeTransport
from tuning.edit import ConfigEditor, Edit, EditorError, unified_diff
from tuning.integrator_sh import IntegratorShEditor, read_jvm_options
from tuning.nginx_conf import NginxConfEditor
from tuning.params import ParamSet, Target, target_of
from tuning.passthru_properties import PassthruEditor
from tuning.transport_pool import TransportPool

NGINX = "nginx"  # the owner of the load balancer's files
#: the editor of each kind of file (the one dispatch; every editor passes one contract suite)
EDITORS: dict[Target, ConfigEditor] = {
    Target.JVM: IntegratorShEditor(), Target.NGINX: NginxConfEditor(),
    Target.PASSTHRU: PassthruEditor(),
}


class ApplyError(EiperfError):
    """A change a node or nginx refused; `node` and the JVM's own words when there are any."""

    def __init__(self, message: str, node: str | None = None, jvm_message: str | None = None):
        super().__init__(message)
        self.node = node
        self.jvm_message = jvm_message


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


# ---- a cluster ---------------------------------------------------------------------------------


def plan_changes(cluster: Cluster, params: ParamSet, transports: TransportPool) -> list[FileChange]:
    """Every file rewrite `params` asks for (unchanged files left out); changes nothing."""
    out: list[FileChange] = []
    for node in cluster.nodes:
        t = transports.node(node)
        for kind, path, shown in ((Target.JVM, node.integrator_sh, "bin/integrator.sh"),
                                  (Target.PASSTHRU, node.passthru_properties,
                                   "passthru-http.properties")):
            changes = params.for_target(kind)
            if changes:
                old = _read(t, path, node.name)
                name = f"{node.name}: {shown}"
                edit = EDITORS[kind].edit({name: old}, changes)[name]
                out.append(FileChange(node.name, path, old, edit.new_text))
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
            out.append(FileChange(NGINX, lb.conf_path(name), files[name], edit.new_text))
    return [c for c in out if c.new != c.old]


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
    return EDITORS[kind].edit({name: text}, params.for_target(kind))[name]
