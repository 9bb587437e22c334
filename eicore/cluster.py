"""The cluster model: one `cluster.toml` <-> one typed, immutable `Cluster` object.

Every command takes the cluster as an explicit object built here; no other module reads the
file. Validation errors name the file and the key, so a user can fix the file at once.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from eicore.credentials import secret_from_env, secret_from_file
from eicore.errors import ConfigError
from eicore.fsutil import atomic_write_text

SCHEMA_VERSION = 1
TRANSPORTS = ("local", "ssh")

# Carbon's base ports; every one is shifted by the node's port offset (DESIGN.md).
PASSTHRU_HTTP_PORT = 8280
PASSTHRU_HTTPS_PORT = 8243
CONSOLE_HTTPS_PORT = 9443
CONSOLE_HTTP_PORT = 9763
JMX_REGISTRY_PORT = 9999
JMX_SERVER_PORT = 11111


@dataclass(frozen=True)
class Node:
    """One EI node: where it lives, how to reach it, and its port offset.

    JMX credentials: `jmx_user` and where its password is read at connect time -- the
    environment variable named by `jmx_password_env` or the 0600 file `jmx_password_file`;
    the model never holds the password itself.
    """

    name: str
    host: str
    ei_home: str
    port_offset: int = 0
    transport: str = "local"
    jmx_url: str | None = None
    member_port: int | None = None
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key: str | None = None
    known_hosts: str | None = None
    jmx_user: str | None = None
    jmx_password_env: str | None = None
    jmx_password_file: str | None = None

    @property
    def http_port(self) -> int:
        return PASSTHRU_HTTP_PORT + self.port_offset

    @property
    def https_port(self) -> int:
        return PASSTHRU_HTTPS_PORT + self.port_offset

    @property
    def console_port(self) -> int:
        return CONSOLE_HTTPS_PORT + self.port_offset

    @property
    def jmx_registry_port(self) -> int:
        return JMX_REGISTRY_PORT + self.port_offset

    @property
    def jmx_server_port(self) -> int:
        return JMX_SERVER_PORT + self.port_offset

    @property
    def jmx_service_url(self) -> str:
        """The JMX URL given in the file, else Carbon's default shape for this node."""
        if self.jmx_url:
            return self.jmx_url
        h = self.host
        return (
            f"service:jmx:rmi://{h}:{self.jmx_server_port}/jndi/rmi://{h}:"
            f"{self.jmx_registry_port}/jmxrmi"
        )

    @property
    def jmx_password_source(self) -> str | None:
        """Where the JMX password comes from, for messages ("environment variable X ...")."""
        if self.jmx_password_env:
            return f"environment variable {self.jmx_password_env} (jmx_password_env)"
        if self.jmx_password_file:
            return f"file {self.jmx_password_file} (jmx_password_file)"
        return None

    def jmx_credentials(self) -> tuple[str, str] | None:
        """(user, password) for this node's JMX, read now; None when no jmx_user is set.

        A variable that is unset or empty, a missing file or one others may read: one
        ConfigError line naming the node and the variable or file (never the password).
        """
        if not self.jmx_user:
            return None
        what = f"{self.name}: JMX user {self.jmx_user!r}"
        if self.jmx_password_env:
            return self.jmx_user, secret_from_env(self.jmx_password_env, what)
        if self.jmx_password_file:
            return self.jmx_user, secret_from_file(self.jmx_password_file, what)
        raise ConfigError(f"{what} has no password source; set jmx_password_env or "
                          "jmx_password_file")

    def path(self, *parts: str) -> str:
        """A path inside this node's EI_HOME (POSIX, also for remote nodes)."""
        return "/".join([self.ei_home.rstrip("/"), *parts])

    @property
    def integrator_sh(self) -> str:
        return self.path("bin", "integrator.sh")

    @property
    def pid_file(self) -> str:
        return self.path("wso2carbon.pid")

    @property
    def log_file(self) -> str:
        return self.path("repository", "logs", "wso2carbon.log")

    @property
    def passthru_properties(self) -> str:
        return self.path("conf", "passthru-http.properties")

    @property
    def master_datasources(self) -> str:
        """conf/datasources/master-datasources.xml (EI 6.x integrator profile layout)."""
        return self.path("conf", "datasources", "master-datasources.xml")

    @property
    def registry_xml(self) -> str:
        return self.path("conf", "registry.xml")

    @property
    def proxy_services_dir(self) -> str:
        return self.path("repository", "deployment", "server", "synapse-configs", "default",
                         "proxy-services")


@dataclass(frozen=True)
class LoadBalancer:
    """The nginx in front: its URLs, the host names it routes by, and how to manage it."""

    http_url: str
    https_url: str
    console_url: str
    host_name: str = "ei.wso2.com"
    console_host_name: str = "ui.ei.wso2.com"
    ca_file: str | None = None
    nginx_bin: str = "nginx"
    prefix: str | None = None
    conf: str = "conf/nginx.conf"
    vhost_files: tuple[str, ...] = ()
    status_url: str | None = None
    upstream_header: str = "X-Upstream-Addr"
    transport: str = "local"
    pid_file: str = "logs/nginx.pid"
    reload_command: tuple[str, ...] = ()
    #: with transport "ssh": the LB host and the (unprivileged) user eiperf logs in as
    host: str = "127.0.0.1"
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key: str | None = None
    known_hosts: str | None = None
    #: "sudo": nginx -t / reload and writes of its root-owned files go through `sudo -n`
    #: (exactly those: see eicore.transport.become); None: the user may do them itself
    become: str | None = None
    #: the root-owned helper that writes a config file from stdin (with become = "sudo")
    write_helper: str | None = None

    def nginx_argv(self, *args: str) -> list[str]:
        """The nginx command line for this instance (private prefix when one is set)."""
        argv = [self.nginx_bin]
        if self.prefix:
            argv += ["-p", self.prefix.rstrip("/") + "/"]
        return [*argv, "-c", self.conf_path(self.conf), *args]

    def conf_path(self, name: str) -> str:
        """Absolute path of an nginx file named relative to the prefix."""
        if os.path.isabs(name) or not self.prefix:
            return name
        return os.path.join(self.prefix, name)


@dataclass(frozen=True)
class Generator:
    """A load-generator host (`[[generators]]`): `eiperf run` starts Locust workers there.

    `python` is the interpreter of an environment with eiperf (and so Locust) installed on
    that host, e.g. a venv's `bin/python`; its versions must match this machine's. `workers`
    overrides `--workers` for this host. `master_host` is the address the host's workers dial
    to reach the Locust master on this machine (default: `--master-host`, else the address
    this machine's SSH session to the host comes from). `work_dir` holds the run's files
    there (default `~/.eiperf/runs`).
    """

    name: str
    host: str
    transport: str = "ssh"
    python: str | None = None
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key: str | None = None
    known_hosts: str | None = None
    workers: int | None = None
    master_host: str | None = None
    work_dir: str | None = None


@dataclass(frozen=True)
class Datasource:
    """One datasource of the central database (`[[database.datasources]]`): its name in
    master-datasources.xml, the database and user it logs in with, and the 0600 file holding
    that user's password (read when needed; the model never holds the password itself).
    `node`: the one node that uses it (a local registry), None when every node does."""

    name: str
    database: str
    user: str
    password_file: str
    node: str | None = None

    def password(self) -> str:
        """The password, read now from `password_file`; one ConfigError line when it cannot be."""
        return secret_from_file(self.password_file, f"datasource {self.name} ({self.user})")


@dataclass(frozen=True)
class Database:
    """The cluster's central database (`[database]`): where it listens and its datasources."""

    host: str
    port: int
    datasources: tuple[Datasource, ...] = ()

    def for_node(self, node: str) -> tuple[Datasource, ...]:
        """The datasources `node` declares: the shared ones and its own."""
        return tuple(d for d in self.datasources if d.node in (None, node))

    def jdbc_url(self, ds: Datasource) -> str:
        return f"jdbc:mysql://{self.host}:{self.port}/{ds.database}"


@dataclass(frozen=True)
class Cluster:
    """A cluster: a load balancer and its nodes, and the hosts that generate its load.
    Built from cluster.toml by `load_cluster`."""

    name: str
    load_balancer: LoadBalancer
    nodes: tuple[Node, ...]
    testbed_dir: str | None = None
    source: str | None = field(default=None, compare=False)
    generators: tuple[Generator, ...] = ()
    database: Database | None = None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        names = ", ".join(n.name for n in self.nodes)
        raise ConfigError(f"no node named {name!r} in the cluster (nodes: {names})")

    def node_for_upstream(self, addr: str | None) -> str | None:
        """Map nginx's `$upstream_addr` ("127.0.0.1:8290") to a node name.

        With retries nginx lists several addresses ("a:1, b:2"); the last one served.
        """
        if not addr:
            return None
        last = addr.split(",")[-1].strip()
        host, _, port = last.rpartition(":")
        for n in self.nodes:
            if n.host == host and port.isdigit() and int(port) in (
                n.http_port, n.https_port, n.console_port,
            ):
                return n.name
        return last

    def with_nodes(self, nodes: tuple[Node, ...]) -> Cluster:
        return replace(self, nodes=nodes)


# --------------------------------------------------------------------------- loading


_KIND_NAMES = {int: "an integer", str: "a string", list: "a list", bool: "true or false"}


def _need(table: dict[str, Any], key: str, kind: type, where: str, path: str) -> Any:
    if key not in table:
        raise ConfigError(f"{path}: {where}.{key} is missing; add it (see README 'cluster.toml')")
    return _typed(table[key], kind, f"{where}.{key}", path)


def _typed(value: Any, kind: type, key: str, path: str) -> Any:
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{path}: {key} must be an integer, not {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(
            f"{path}: {key} must be {_KIND_NAMES.get(kind, kind.__name__)}, not {value!r}"
        )
    return value


def _opt(table: dict[str, Any], key: str, kind: type, where: str, path: str, default: Any) -> Any:
    if key not in table:
        return default
    return _typed(table[key], kind, f"{where}.{key}", path)


def _check_unknown(table: dict[str, Any], known: set[str], where: str, path: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(sorted(known))}"
        raise ConfigError(f"{path}: unknown key {where}.{unknown[0]}{tip}")


def _node_from(table: dict[str, Any], i: int, path: str) -> Node:
    where = f"nodes[{i}]"
    if "jmx_password" in table:
        raise ConfigError(
            f"{path}: {where}.jmx_password: cluster.toml does not hold passwords; name an "
            "environment variable with jmx_password_env or a 0600 file with jmx_password_file")
    _check_unknown(table, set(Node.__dataclass_fields__), where, path)
    transport = _opt(table, "transport", str, where, path, "local")
    if transport not in TRANSPORTS:
        raise ConfigError(
            f"{path}: {where}.transport is {transport!r}; use one of {', '.join(TRANSPORTS)}"
        )
    offset = _opt(table, "port_offset", int, where, path, 0)
    if not 0 <= offset < 50000:
        raise ConfigError(f"{path}: {where}.port_offset {offset} is out of range (0..49999)")
    node = Node(
        name=_need(table, "name", str, where, path),
        host=_need(table, "host", str, where, path),
        ei_home=_need(table, "ei_home", str, where, path),
        port_offset=offset,
        transport=transport,
        jmx_url=_opt(table, "jmx_url", str, where, path, None),
        member_port=_opt(table, "member_port", int, where, path, None),
        ssh_user=_opt(table, "ssh_user", str, where, path, None),
        ssh_port=_opt(table, "ssh_port", int, where, path, 22),
        ssh_key=_opt(table, "ssh_key", str, where, path, None),
        known_hosts=_opt(table, "known_hosts", str, where, path, None),
        jmx_user=_opt(table, "jmx_user", str, where, path, None) or None,
        jmx_password_env=_opt(table, "jmx_password_env", str, where, path, None) or None,
        jmx_password_file=_opt(table, "jmx_password_file", str, where, path, None) or None,
    )
    if transport == "ssh" and not node.ssh_user:
        raise ConfigError(f"{path}: {where}.ssh_user is needed with transport = \"ssh\"")
    _check_jmx_keys(node, where, path)
    return node


def _check_jmx_keys(node: Node, where: str, path: str) -> None:
    """jmx_user and exactly one password source go together; the file path is absolute."""
    if node.jmx_password_env and node.jmx_password_file:
        raise ConfigError(f"{path}: {where} sets both jmx_password_env and jmx_password_file; "
                          "keep one")
    has_source = bool(node.jmx_password_env or node.jmx_password_file)
    if node.jmx_user and not has_source:
        raise ConfigError(f"{path}: {where}.jmx_user needs a password source: add "
                          "jmx_password_env (a variable name) or jmx_password_file (a 0600 file)")
    if has_source and not node.jmx_user:
        raise ConfigError(f"{path}: {where} names a JMX password but no jmx_user; add jmx_user")
    pw_file = node.jmx_password_file
    if pw_file and not os.path.isabs(os.path.expanduser(pw_file)):
        raise ConfigError(f"{path}: {where}.jmx_password_file {pw_file!r} must be an absolute "
                          "path (or start with ~/)")


def _generator_from(table: dict[str, Any], i: int, path: str) -> Generator:
    where = f"generators[{i}]"
    _check_unknown(table, set(Generator.__dataclass_fields__), where, path)
    host = _need(table, "host", str, where, path)
    transport = _opt(table, "transport", str, where, path, "ssh")
    if transport not in TRANSPORTS:
        raise ConfigError(
            f"{path}: {where}.transport is {transport!r}; use one of {', '.join(TRANSPORTS)}")
    gen = Generator(
        name=_opt(table, "name", str, where, path, host),
        host=host,
        transport=transport,
        python=_opt(table, "python", str, where, path, None),
        ssh_user=_opt(table, "ssh_user", str, where, path, None),
        ssh_port=_opt(table, "ssh_port", int, where, path, 22),
        ssh_key=_opt(table, "ssh_key", str, where, path, None),
        known_hosts=_opt(table, "known_hosts", str, where, path, None),
        workers=_opt(table, "workers", int, where, path, None),
        master_host=_opt(table, "master_host", str, where, path, None) or None,
        work_dir=_opt(table, "work_dir", str, where, path, None) or None,
    )
    if transport == "ssh" and not gen.ssh_user:
        raise ConfigError(f"{path}: {where}.ssh_user is needed with transport = \"ssh\"")
    if transport == "ssh" and not gen.python:
        raise ConfigError(f"{path}: {where}.python is needed with transport = \"ssh\": the "
                          "path of a python with eiperf installed on that host, e.g. "
                          "\"/opt/eiperf/.venv/bin/python\"")
    for key in ("python", "work_dir"):
        value = getattr(gen, key)
        if value and not value.startswith("/"):
            raise ConfigError(f"{path}: {where}.{key} {value!r} must be an absolute path")
    if gen.workers is not None and gen.workers < 1:
        raise ConfigError(f"{path}: {where}.workers {gen.workers}: give 1 or more (or leave it "
                          "out: one per core)")
    return gen


def _database_from(table: Any, path: str, nodes: tuple[Node, ...]) -> Database:
    where = "database"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: database must be a [database] table")
    _check_unknown(table, set(Database.__dataclass_fields__), where, path)
    port = _need(table, "port", int, where, path)
    if not 0 < port < 65536:
        raise ConfigError(f"{path}: {where}.port {port} is out of range (1..65535)")
    raw = _opt(table, "datasources", list, where, path, [])
    names = {n.name for n in nodes}
    out = []
    for i, d in enumerate(raw):
        w = f"{where}.datasources[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: {w} must be a [[database.datasources]] table")
        if "password" in d:
            raise ConfigError(f"{path}: {w}.password: cluster.toml does not hold passwords; "
                              "name a 0600 file with password_file")
        _check_unknown(d, set(Datasource.__dataclass_fields__), w, path)
        ds = Datasource(name=_need(d, "name", str, w, path),
                        database=_need(d, "database", str, w, path),
                        user=_need(d, "user", str, w, path),
                        password_file=_need(d, "password_file", str, w, path),
                        node=_opt(d, "node", str, w, path, None) or None)
        if not os.path.isabs(os.path.expanduser(ds.password_file)):
            raise ConfigError(f"{path}: {w}.password_file {ds.password_file!r} must be an "
                              "absolute path (or start with ~/)")
        if ds.node is not None and ds.node not in names:
            raise ConfigError(f"{path}: {w}.node {ds.node!r} is no node of the cluster "
                              f"(nodes: {', '.join(sorted(names))})")
        out.append(ds)
    return Database(host=_need(table, "host", str, where, path), port=port,
                    datasources=tuple(out))


def _lb_from(table: dict[str, Any], path: str) -> LoadBalancer:
    where = "load_balancer"
    _check_unknown(table, set(LoadBalancer.__dataclass_fields__), where, path)
    for key in ("http_url", "https_url", "console_url"):
        url = _need(table, key, str, where, path)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: {where}.{key} {url!r} must start with http:// or https://")
    vhosts = _opt(table, "vhost_files", list, where, path, [])
    transport = _opt(table, "transport", str, where, path, "local")
    if transport not in TRANSPORTS:
        raise ConfigError(
            f"{path}: {where}.transport is {transport!r}; use one of {', '.join(TRANSPORTS)}")
    become = _opt(table, "become", str, where, path, None)
    if become not in (None, "sudo"):
        raise ConfigError(f"{path}: {where}.become is {become!r}; the only way eiperf knows is "
                          "\"sudo\" (or leave it out)")
    if transport == "ssh" and not table.get("ssh_user"):
        raise ConfigError(f"{path}: {where}.ssh_user is needed with transport = \"ssh\" "
                          "(and host, the load balancer's address)")
    return LoadBalancer(
        http_url=table["http_url"].rstrip("/"),
        https_url=table["https_url"].rstrip("/"),
        console_url=table["console_url"].rstrip("/"),
        host_name=_opt(table, "host_name", str, where, path, "ei.wso2.com"),
        console_host_name=_opt(table, "console_host_name", str, where, path, "ui.ei.wso2.com"),
        ca_file=_opt(table, "ca_file", str, where, path, None),
        nginx_bin=_opt(table, "nginx_bin", str, where, path, "nginx"),
        prefix=_opt(table, "prefix", str, where, path, None),
        conf=_opt(table, "conf", str, where, path, "conf/nginx.conf"),
        vhost_files=tuple(str(v) for v in vhosts),
        status_url=_opt(table, "status_url", str, where, path, None),
        upstream_header=_opt(table, "upstream_header", str, where, path, "X-Upstream-Addr"),
        transport=transport,
        pid_file=_opt(table, "pid_file", str, where, path, "logs/nginx.pid"),
        reload_command=tuple(_opt(table, "reload_command", list, where, path, [])),
        host=_opt(table, "host", str, where, path, "127.0.0.1"),
        ssh_user=_opt(table, "ssh_user", str, where, path, None),
        ssh_port=_opt(table, "ssh_port", int, where, path, 22),
        ssh_key=_opt(table, "ssh_key", str, where, path, None),
        known_hosts=_opt(table, "known_hosts", str, where, path, None),
        become=become,
        write_helper=_opt(table, "write_helper", str, where, path, None),
    )


def cluster_from_dict(data: dict[str, Any], path: str = "<cluster>") -> Cluster:
    """Build and validate a Cluster from parsed TOML."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema_version {version!r} is not supported (this eiperf reads "
            f"{SCHEMA_VERSION}); upgrade eiperf or rewrite the file"
        )
    _check_unknown(data, {"schema_version", "name", "testbed_dir", "load_balancer", "nodes",
                          "generators", "database"}, "<top>", path)
    lb = data.get("load_balancer")
    if not isinstance(lb, dict):
        raise ConfigError(f"{path}: the [load_balancer] table is missing")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ConfigError(f"{path}: no [[nodes]] given; a cluster needs at least one node")
    built = tuple(_node_from(n, i, path) for i, n in enumerate(nodes))
    seen: set[str] = set()
    for n in built:
        if n.name in seen:
            raise ConfigError(f"{path}: two nodes are named {n.name!r}; node names must be unique")
        seen.add(n.name)
    gens = data.get("generators", [])
    if not isinstance(gens, list) or not all(isinstance(g, dict) for g in gens):
        raise ConfigError(f"{path}: generators must be [[generators]] tables")
    generators = tuple(_generator_from(g, i, path) for i, g in enumerate(gens))
    names = [g.name for g in generators]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: two generators are named {name!r}; give each a "
                              "unique name")
    return Cluster(
        name=_opt(data, "name", str, "<top>", path, "cluster"),
        load_balancer=_lb_from(lb, path),
        nodes=built,
        testbed_dir=_opt(data, "testbed_dir", str, "<top>", path, None),
        source=path,
        generators=generators,
        database=_database_from(data["database"], path, built) if "database" in data else None,
    )


def load_cluster(path: str | os.PathLike[str]) -> Cluster:
    """Read and validate a cluster.toml; every problem is one ConfigError line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: cluster file not found; pass --cluster FILE or run 'eiperf up'") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read cluster file ({e.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return cluster_from_dict(data, str(p))


def cluster_to_dict(cluster: Cluster) -> dict[str, Any]:
    """The TOML-ready form of a cluster (None values dropped)."""

    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}

    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": cluster.name}
    if cluster.testbed_dir:
        out["testbed_dir"] = cluster.testbed_dir
    out["load_balancer"] = clean(asdict(cluster.load_balancer))
    out["nodes"] = [clean(asdict(n)) for n in cluster.nodes]
    if cluster.generators:
        out["generators"] = [clean(asdict(g)) for g in cluster.generators]
    if cluster.database is not None:
        db = cluster.database
        out["database"] = {"host": db.host, "port": db.port,
                           "datasources": [clean(asdict(d)) for d in db.datasources]}
    return out


def dump_cluster(cluster: Cluster) -> str:
    return tomli_w.dumps(cluster_to_dict(cluster))


def save_cluster(cluster: Cluster, path: str | os.PathLike[str]) -> None:
    """Write cluster.toml atomically."""
    atomic_write_text(Path(path), dump_cluster(cluster))
