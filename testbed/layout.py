"""Render the testbed's files: N miniature EI_HOMEs and a private nginx prefix.

Pure planning (`plan_testbed`) is separate from writing (`render_testbed`) so a plan can be
checked -- ports free, names unique -- before anything lands on disk.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from eicore.cluster import Cluster, Database, LoadBalancer, Node, save_cluster
from eicore.credentials import write_secret_file
from eicore.proxy_template import render_proxy
from testbed.certs import generate_tls
from testbed.database import (
    DESCRIPTIONS,
    JDBC_DRIVER,
    JNDI_NAMES,
    LOCAL_DATASOURCE,
    LOOKUP_DATASOURCE,
    LOOKUP_TABLE,
    POOL_DEFAULTS,
    SHARED_DATASOURCE,
    DatabasePlan,
    write_passwords,
)
from testbed.node_build import MAIN_CLASS, NODE_ARCHIVE, install_classes

TEMPLATES = Path(__file__).parent / "templates"
DOMAIN = "wso2.ei.domain"
HOST = "127.0.0.1"
HOST_NAME = "ei.wso2.com"
CONSOLE_HOST_NAME = "ui.ei.wso2.com"
UPSTREAM_HEADER = "X-Upstream-Addr"
DEFAULT_PORT_BASE = 18280
DEFAULT_OFFSET_BASE = 10
MEMBER_PORT_BASE = 4100
DELAYED_PROXY_MS = 200
DBLOOKUP_PROXY = "DbLookupProxy"
DBLOOKUP_QUERY_MS = 20  # each lookup holds its pooled connection this long
# JMX with a password (the JDK agent's files, relative to EI_HOME; the user eiperf logs in as).
JMX_PASSWORD_FILE = "conf/jmx/jmxremote.password"
JMX_ACCESS_FILE = "conf/jmx/jmxremote.access"
JMX_USER = "admin"
JMX_ACCESS = "readonly"  # eiperf only reads MBeans (attributes, names, MBeanInfo)
CLIENT_JMX_PASSWORD_FILE = "jmx.password"  # in the testbed folder; cluster.toml points at it


@dataclass(frozen=True)
class TestbedPlan:
    """Where everything goes and which ports it takes."""

    __test__ = False  # not a pytest class

    dir: Path
    nodes: int
    port_base: int
    offset_base: int
    nginx_bin: str
    jmx_auth: bool = False
    java_home: str | None = None  # the JDK the nodes run (integrator.sh's JAVA_HOME)

    @property
    def http_port(self) -> int:
        return self.port_base

    @property
    def https_port(self) -> int:
        return self.port_base + 1

    @property
    def status_port(self) -> int:
        return self.port_base + 2

    @property
    def db_port(self) -> int:
        """The central database's (MariaDB) port."""
        return self.port_base + 3

    def database_plan(self) -> DatabasePlan:
        return DatabasePlan(self.dir, self.db_port, tuple(n.name for n in self.node_list()))

    @property
    def nginx_prefix(self) -> Path:
        return self.dir / "nginx"

    @property
    def cluster_file(self) -> Path:
        return self.dir / "cluster.toml"

    @property
    def jmx_password_file(self) -> Path:
        """The client's copy of the nodes' JMX password (0600), when `jmx_auth`."""
        return self.dir / CLIENT_JMX_PASSWORD_FILE

    def node_list(self) -> tuple[Node, ...]:
        out = []
        for i in range(self.nodes):
            offset = self.offset_base + i
            out.append(Node(
                name=f"node{i + 1}", host=HOST, ei_home=str(self.dir / "nodes" / f"node{i + 1}"),
                port_offset=offset, transport="local", member_port=MEMBER_PORT_BASE + offset,
                **(dict(jmx_user=JMX_USER, jmx_password_file=str(self.jmx_password_file))
                   if self.jmx_auth else {}),
            ))
        return tuple(out)

    def ports(self) -> list[tuple[str, int]]:
        """Every TCP port the testbed listens on, with what uses it."""
        ports = [("nginx http", self.http_port), ("nginx https", self.https_port),
                 ("nginx status", self.status_port), ("database", self.db_port)]
        for n in self.node_list():
            ports += [(f"{n.name} http", n.http_port), (f"{n.name} https", n.https_port),
                      (f"{n.name} console", n.console_port),
                      (f"{n.name} jmx registry", n.jmx_registry_port),
                      (f"{n.name} jmx server", n.jmx_server_port),
                      (f"{n.name} member", n.member_port or 0)]
        return ports

    def cluster(self) -> Cluster:
        prefix = str(self.nginx_prefix)
        lb = LoadBalancer(
            http_url=f"http://{HOST}:{self.http_port}",
            https_url=f"https://{HOST}:{self.https_port}",
            console_url=f"https://{HOST}:{self.https_port}",
            host_name=HOST_NAME,
            console_host_name=CONSOLE_HOST_NAME,
            ca_file=str(self.nginx_prefix / "ssl" / "ca.crt"),
            nginx_bin=self.nginx_bin,
            prefix=prefix,
            conf="conf/nginx.conf",
            vhost_files=("conf/ei.http.conf", "conf/ei.https.conf", "conf/ui.ei.https.conf"),
            status_url=f"http://{HOST}:{self.status_port}/nginx_status",
            upstream_header=UPSTREAM_HEADER,
        )
        return Cluster(name="testbed", load_balancer=lb, nodes=self.node_list(),
                       testbed_dir=str(self.dir), source=str(self.cluster_file),
                       database=self.database_plan().database())


def template_env() -> Environment:
    """The testbed's jinja2 templates (strict: a missing variable is an error)."""
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       keep_trailing_newline=True)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a testbed file (folders made as needed) with `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def render_integrator_sh(jmx_auth: bool = False, listen_host: str = HOST,
                         java_home: str | None = None) -> str:
    """bin/integrator.sh; with `jmx_auth` its JVM's JMX asks for the users of conf/jmx/. The
    node's listeners and JMX bind `listen_host` (loopback in the loopback testbed); with
    `java_home` the script sets JAVA_HOME (else it runs the java on PATH)."""
    return template_env().get_template("integrator.sh.j2").render(
        main_class=MAIN_CLASS, jmx_auth=jmx_auth, jmx_password_file=JMX_PASSWORD_FILE,
        jmx_access_file=JMX_ACCESS_FILE, listen_host=listen_host, java_home=java_home,
        cds_archive=NODE_ARCHIVE)


def render_jmx_auth(home: Path, user: str, password: str, owner_uid: int | None = None,
                    access: str = JMX_ACCESS) -> None:
    """Write the JDK agent's jmxremote.password and .access files into EI_HOME (mode 0600).

    The JDK refuses a password file that others may read, and replaces the password in it by
    a hash at the first login when it may write it: `owner_uid` is the user the JVM runs as.
    """
    home = Path(home)
    (home / JMX_PASSWORD_FILE).parent.mkdir(parents=True, exist_ok=True)
    write_secret_file(home / JMX_PASSWORD_FILE, f"{user} {password}", owner_uid)
    write_secret_file(home / JMX_ACCESS_FILE, f"{user} {access}", owner_uid)


def new_jmx_password() -> str:
    """A random password for a testbed's JMX (URL-safe characters, no spaces)."""
    return secrets.token_urlsafe(18)


def render_datasources(node: Node, database: Database) -> None:
    """conf/datasources/master-datasources.xml and conf/registry.xml of one node, as the
    clustering guide writes them (passwords in plain text as there: mode 0600)."""
    env = template_env()
    sources = [dict(name=ds.name, description=DESCRIPTIONS.get(ds.name, ds.name),
                    jndi=JNDI_NAMES.get(ds.name, f"jdbc/{ds.name}"), url=database.jdbc_url(ds),
                    user=ds.user, password=ds.password())
               for ds in database.for_node(node.name)]
    ctx = dict(node_name=node.name, host=database.host, port=database.port)
    write_file(Path(node.master_datasources), env.get_template("master-datasources.xml.j2").render(
        datasources=sources, driver=JDBC_DRIVER, pool=POOL_DEFAULTS, **ctx), 0o600)
    shared = next(s for s in sources if s["name"] == SHARED_DATASOURCE)
    write_file(Path(node.registry_xml), env.get_template("registry.xml.j2").render(
        local_jndi=JNDI_NAMES[LOCAL_DATASOURCE], shared_jndi=shared["jndi"],
        cache_id=f"{shared['user']}@{shared['url']}", **ctx))


def render_node(plan: TestbedPlan | None, node: Node, members: tuple[Node, ...], keystore: Path,
                keystore_password: str, jmx_password: str | None = None,
                listen_host: str = HOST, database: Database | None = None,
                java_home: str | None = None) -> None:
    """Write one miniature EI_HOME, shaped like EI 6.x's (JMX with a password when given; the
    datasources and registry mounts when a central database is given)."""
    env = template_env()
    home = Path(node.ei_home)
    write_file(home / "bin" / "integrator.sh",
           render_integrator_sh(jmx_password is not None, listen_host, java_home), 0o755)
    if jmx_password is not None:
        render_jmx_auth(home, node.jmx_user or JMX_USER, jmx_password)
    write_file(home / "bin" / "version.txt", "WSO2 Enterprise Integrator 6.6.0 (eiperf testbed node)\n")
    write_file(home / "conf" / "carbon.xml", env.get_template("carbon.xml.j2").render(
        host=node.host, offset=node.port_offset, keystore_password=keystore_password), 0o600)
    write_file(home / "conf" / "axis2" / "axis2.xml", env.get_template("axis2.xml.j2").render(
        clustering=True, domain=DOMAIN, host=node.host, member_port=node.member_port,
        members=[{"host": m.host, "port": m.member_port} for m in members]))
    write_file(home / "conf" / "passthru-http.properties",
           env.get_template("passthru-http.properties.j2").render())
    write_file(home / "conf" / "tomcat" / "catalina-server.xml",
           env.get_template("catalina-server.xml.j2").render())
    security = home / "repository" / "resources" / "security"
    security.mkdir(parents=True, exist_ok=True)
    shutil.copy2(keystore, security / "wso2carbon.p12")
    os.chmod(security / "wso2carbon.p12", 0o600)
    (home / "repository" / "logs").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    write_file(Path(node.proxy_services_dir) / "SampleProxy.xml", render_proxy("SampleProxy"))
    # A proxy whose backend answers late, for the `delayed` scenario and nginx timeout sweeps.
    write_file(Path(node.proxy_services_dir) / "DelayedProxy.xml",
           render_proxy("DelayedProxy", backend_delay_ms=DELAYED_PROXY_MS))
    install_classes(home / "lib")
    if database is not None:
        render_datasources(node, database)
        # A proxy that looks a row up through a datasource pool, for the `dblookup` scenario.
        write_file(Path(node.proxy_services_dir) / f"{DBLOOKUP_PROXY}.xml",
                   env.get_template("DbLookupProxy.xml.j2").render(
                       name=DBLOOKUP_PROXY, datasource=LOOKUP_DATASOURCE, table=LOOKUP_TABLE,
                       query_ms=DBLOOKUP_QUERY_MS))


def render_nginx(plan: TestbedPlan, nodes: tuple[Node, ...]) -> None:
    """Write nginx.conf and the guide's three vhosts into the private prefix."""
    env = template_env()
    prefix = plan.nginx_prefix
    for sub in ("conf", "logs", "temp", "ssl"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    ctx = dict(
        prefix=str(prefix), nodes=nodes, listen_host=HOST, http_port=plan.http_port,
        https_port=plan.https_port, status_port=plan.status_port, host_name=HOST_NAME,
        console_host_name=CONSOLE_HOST_NAME, console_node=nodes[0],
        upstream_header=UPSTREAM_HEADER, worker_processes=1,
    )
    for name in ("nginx.conf", "ei.http.conf", "ei.https.conf", "ui.ei.https.conf"):
        write_file(prefix / "conf" / name, env.get_template(f"{name}.j2").render(**ctx))


def render_testbed(plan: TestbedPlan) -> Cluster:
    """Write every file of the testbed (TLS, nodes, nginx) and its cluster.toml."""
    plan.dir.mkdir(parents=True, exist_ok=True)
    nodes = plan.node_list()
    tls = generate_tls(plan.nginx_prefix / "ssl", plan.dir / "wso2carbon.p12",
                       [HOST_NAME, CONSOLE_HOST_NAME], [n.name for n in nodes])
    jmx_password = new_jmx_password() if plan.jmx_auth else None
    if jmx_password is not None:
        write_secret_file(plan.jmx_password_file, jmx_password)
    cluster = plan.cluster()
    write_passwords(plan.database_plan())
    for node in nodes:
        render_node(plan, node, nodes, tls.node_keystore, tls.keystore_password, jmx_password,
                    database=cluster.database, java_home=plan.java_home)
    os.unlink(tls.node_keystore)
    render_nginx(plan, nodes)
    save_cluster(cluster, plan.cluster_file)
    return cluster
