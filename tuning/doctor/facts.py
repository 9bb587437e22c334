"""The facts `eiperf doctor` judges, read from every host over its own transport.

One shell round trip per host login reads the kernel, the login's open-files limits and the
sysctl files (`/proc` files are read by `cat`-like commands, not SFTP: they report size 0).
Per node: its JVM's limits from `/proc/<pid>/limits` and its configuration files; for the load
balancer: nginx.conf and the vhost files the cluster file names (symlinks followed). Nothing
is written; a host that cannot be reached becomes a fact (`error`), not an exception.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from eicore.cluster import Cluster, LoadBalancer, Node
from eicore.errors import EiperfError
from eicore.node_control import read_pid
from eicore.transport import NodeTransport, transport_for
from tuning.nginx_source import includes

# Prints "kernel ...", "user ...", "nofile SOFT HARD", then "sysctl PATH=VALUE" for each
# readable path given ("sysctl PATH" alone when the file does not exist), and "readonly PATH"
# for a file not even root may write (a kernel-wide value mirrored into a network namespace).
_HOST_SCRIPT = r"""
echo "kernel $(uname -r)"
echo "user $(id -un)"
echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
for p in "$@"; do
  if [ -r "$p" ]; then printf 'sysctl %s=%s\n' "$p" "$(tr -s '\t\n ' '   ' < "$p")"
    case "$(stat -c %A "$p")" in ??w*) ;; *) printf 'readonly %s\n' "$p";; esac
  else printf 'sysctl %s\n' "$p"; fi
done
"""

#: the node files the cluster checks read, by short name -> path parts under EI_HOME
NODE_FILES = {
    "carbon.xml": ("conf", "carbon.xml"),
    "axis2.xml": ("conf", "axis2", "axis2.xml"),
    "catalina-server.xml": ("conf", "tomcat", "catalina-server.xml"),
    "passthru-http.properties": ("conf", "passthru-http.properties"),
    "integrator.sh": ("bin", "integrator.sh"),
    "master-datasources.xml": ("conf", "datasources", "master-datasources.xml"),
    "registry.xml": ("conf", "registry.xml"),
}


def sysctl_path(key: str) -> str:
    """`net.ipv4.tcp_fin_timeout` -> `/proc/sys/net/ipv4/tcp_fin_timeout`."""
    return "/proc/sys/" + key.replace(".", "/")


@dataclass(frozen=True)
class HostFacts:
    """One host as one login sees it. `sysctl` maps a key to its value (whitespace collapsed
    to single spaces), None when the kernel has no such file; `readonly`: the keys whose file
    is read-only there (kernel-wide values a network namespace only shows)."""

    host: str
    roles: tuple[str, ...]
    user: str = ""
    kernel: str = ""
    sysctl: dict[str, str | None] = field(default_factory=dict)
    nofile_soft: str = ""
    nofile_hard: str = ""
    error: str | None = None
    readonly: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.host} ({', '.join(self.roles)})"


@dataclass(frozen=True)
class NodeFacts:
    """One node: its JVM's `/proc/<pid>/limits` (None when not running) and its files
    (None for a missing one); `proxies` maps each deployed proxy file to its text."""

    name: str
    host: str
    port_offset: int
    pid: int | None = None
    jvm_limits: str | None = None
    files: dict[str, str | None] = field(default_factory=dict)
    proxies: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class NginxFacts:
    """The load balancer's nginx files: the main nginx.conf, every file its `include`s name
    (globs expanded, symlinks followed) and the vhost files the cluster file names -- {name:
    text or None}, a name relative to the nginx prefix when under it; `contexts`: the nginx
    context each included file stands in (e.g. ("http",) for sites-enabled/*)."""

    host: str
    files: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    contexts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: an included file -> (the file, the line) of the `include` that named it first
    included_by: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: (file, line) of each `include` -> the files it names
    includes: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterFacts:
    """Everything one `doctor` run judges."""

    hosts: tuple[HostFacts, ...]
    nodes: tuple[NodeFacts, ...]
    nginx: NginxFacts
    load_balancer: LoadBalancer


def parse_host_output(host: str, roles: tuple[str, ...], text: str,
                      keys: Iterable[str]) -> HostFacts:
    """HostFacts from what `_HOST_SCRIPT` printed (pure, for tests)."""
    by_path = {sysctl_path(k): k for k in keys}
    values: dict[str, str | None] = {k: None for k in by_path.values()}
    kernel = user = soft = hard = ""
    readonly: set[str] = set()
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "kernel":
            kernel = rest.strip()
        elif word == "user":
            user = rest.strip()
        elif word == "nofile":
            soft, _, hard = rest.strip().partition(" ")
        elif word == "sysctl":
            path, eq, value = rest.partition("=")
            if path in by_path and eq:
                values[by_path[path]] = " ".join(value.split())
        elif word == "readonly" and rest.strip() in by_path:
            readonly.add(by_path[rest.strip()])
    return HostFacts(host, roles, user, kernel, values, soft, hard.strip(),
                     readonly=frozenset(readonly))


def gather_host(transport: NodeTransport, host: str, roles: tuple[str, ...],
                keys: tuple[str, ...]) -> HostFacts:
    """Kernel, login limits and sysctl values of one host, in one command."""
    argv = ["sh", "-c", _HOST_SCRIPT, "sh", *(sysctl_path(k) for k in keys)]
    try:
        r = transport.run(argv, timeout=30)
    except EiperfError as e:
        return HostFacts(host, roles, error=str(e))
    if not r.ok:
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return HostFacts(host, roles, error=f"reading the OS settings failed: {why}")
    return parse_host_output(host, roles, r.stdout, keys)


def _read(transport: NodeTransport, path: str) -> str | None:
    """A file's text (None when absent); bytes that are not UTF-8 (an ISO-8859-1 file, as
    catalina-server.xml declares itself) read as U+FFFD instead of stopping the doctor."""
    try:
        return transport.read_bytes(path).decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def gather_node(transport: NodeTransport, node: Node) -> NodeFacts:
    """A node's JVM limits and configuration files."""
    try:
        files = {name: _read(transport, node.path(*parts)) for name, parts in NODE_FILES.items()}
        proxies: dict[str, str] = {}
        if transport.exists(node.proxy_services_dir):
            for name in transport.listdir(node.proxy_services_dir):
                if name.endswith(".xml"):
                    proxies[name] = _read(transport, f"{node.proxy_services_dir}/{name}") or ""
        pid = read_pid(transport, node)
        limits = None
        if pid and transport.pid_alive(pid):
            r = transport.run(["cat", f"/proc/{pid}/limits"], timeout=30)
            limits = r.stdout if r.ok else None
    except EiperfError as e:
        return NodeFacts(node.name, node.host, node.port_offset, error=str(e))
    return NodeFacts(node.name, node.host, node.port_offset, pid, limits, files, proxies)


#: at most this many nginx files are read (an include loop or a huge conf.d stops here)
MAX_NGINX_FILES = 256


def _expand(transport: NodeTransport, pattern: str) -> list[str]:
    """The paths an nginx `include` pattern names, as nginx's glob() would: sorted, dot files
    only for a pattern that starts with a dot, any path part may hold a glob."""
    if not any(c in pattern for c in "*?["):
        return [pattern]
    paths = ["/" if pattern.startswith("/") else ""]
    for part in [x for x in pattern.split("/") if x]:
        nxt = []
        for base in paths:
            if not any(c in part for c in "*?["):
                nxt.append(posixpath.join(base, part))
                continue
            try:
                names = transport.listdir(base or ".")
            except (EiperfError, OSError):
                continue
            nxt += [posixpath.join(base, n) for n in sorted(names)
                    if fnmatch.fnmatchcase(n, part) and (part.startswith(".")
                                                         or not n.startswith("."))]
        paths = nxt
    return paths


def gather_nginx(transport: NodeTransport, lb: LoadBalancer) -> NginxFacts:
    """nginx.conf, the files its `include`s name (relative ones from nginx.conf's folder, as
    nginx resolves them), and the vhost files of the cluster file (a symlink read as its
    target)."""
    main = lb.conf_path(lb.conf)
    base = posixpath.dirname(main)
    prefix = (lb.prefix or "").rstrip("/")

    def name_of(path: str) -> str:
        return path[len(prefix) + 1:] if prefix and path.startswith(prefix + "/") else path

    files: dict[str, str | None] = {}
    contexts: dict[str, tuple[str, ...]] = {}
    included_by: dict[str, tuple[str, int]] = {}
    named_at: dict[tuple[str, int], tuple[str, ...]] = {}
    todo: list[tuple[str, tuple[str, ...] | None, tuple[str, int] | None]] = [(main, None, None)]
    named = [(lb.conf_path(v), None, None) for v in lb.vhost_files]  # after nginx.conf's own
    try:
        while (todo or named) and len(files) < MAX_NGINX_FILES:
            path, ctx, by = todo.pop(0) if todo else named.pop(0)
            name = name_of(path)
            if name in files:
                continue
            if by is not None:
                included_by[name] = by
            try:
                text = _read(transport, path)
            except OSError:  # a folder an include's glob named: nginx refuses it too
                text = None
            files[name] = text
            if ctx is not None:
                contexts[name] = ctx
            if text is None:
                continue
            for pattern, inner, line in includes(name, text, ctx):
                full = pattern if pattern.startswith("/") else posixpath.join(base, pattern)
                found = _expand(transport, full)
                named_at[(name, line)] = tuple(name_of(x) for x in found)
                todo += [(x, inner, (name, line)) for x in found]
    except EiperfError as e:
        return NginxFacts(lb.host, error=str(e))
    return NginxFacts(lb.host, files, contexts=contexts, included_by=included_by,
                      includes=named_at)


def gather(cluster: Cluster, keys: tuple[str, ...],
           transport_of: Callable[[Node | LoadBalancer], NodeTransport] = transport_for
           ) -> ClusterFacts:
    """Every fact of `cluster`: each distinct login (transport, host, user) once, then each
    node and the load balancer; hosts are read in parallel."""
    lb = cluster.load_balancer
    logins: dict[tuple[str, str, str | None], tuple[Node | LoadBalancer, list[str]]] = {}
    items: list[tuple[Node | LoadBalancer, str]] = [(lb, "lb"), *((n, n.name) for n in cluster.nodes)]
    for item, role in items:
        key = (item.transport, item.host, item.ssh_user)
        logins.setdefault(key, (item, []))[1].append(role)
    transports: dict[int, NodeTransport] = {}

    def transport(item: Node | LoadBalancer) -> NodeTransport:
        if id(item) not in transports:
            transports[id(item)] = transport_of(item)
        return transports[id(item)]

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            hosts = [pool.submit(gather_host, transport(item), item.host, tuple(roles), keys)
                     for item, roles in logins.values()]
            nodes = [pool.submit(gather_node, transport(n), n) for n in cluster.nodes]
            nginx = pool.submit(gather_nginx, transport(lb), lb)
            return ClusterFacts(tuple(f.result() for f in hosts),
                                tuple(f.result() for f in nodes), nginx.result(), lb)
    finally:
        for t in transports.values():
            t.close()
