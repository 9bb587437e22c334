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
from tuning.edit import Edit, EditorError, unified_diff
from tuning.integrator_sh import apply_jvm_changes, read_jvm_options
from tuning.nginx_conf import apply_nginx_changes
from tuning.params import ParamSet, Target, target_of
from tuning.passthru_properties import apply_passthru_changes
from tuning.transport_pool import TransportPool

NGINX = "nginx"  # the owner of the load balancer's files


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
    if kind is Target.JVM:
        return apply_jvm_changes(text, params.jvm, name)
    if kind is Target.PASSTHRU:
        return apply_passthru_changes(text, params.passthru, name)
    return apply_nginx_changes({name: text}, params.nginx)[name]
