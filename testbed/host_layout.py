"""Render the multi-host testbed's files: each node's EI_HOME and the load balancer's /etc/nginx,
in the folders the hosts see at their real paths (`testbed.hosts`).

Nodes use the guide's defaults: port offset 0 (8280, 8243, 9443, JMX 9999/11111) on their own
address, member port 4100, `localMemberHost` their address and the other nodes as well-known
members; EI_HOME is owned by `wso2`; JMX (bound to the node's address) asks for user `admin`
and one random password, whose client copy is `<testbed>/jmx.password` (0600). The load balancer listens on 80 and 443 of its address;
its vhosts live in `sites-available/` and are enabled by `sites-enabled/` symlinks, owned by
root, as on Debian.

Each generator host `gen<j>` is a `[[generators]]` entry: SSH as `eiperf`, `master_host` the
bridge's address (where the CLI and the Locust master live), `python` one with this eiperf:
this environment's own interpreter when the gen user may run it, else a venv-shaped folder in
the host's own files (`/srv/eiperf-host/python`: this machine's system python of the same
version, over this environment's site-packages) -- a pyenv python under root's 0700 home is
not something the unprivileged user may execute.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import sys
import sysconfig
from dataclasses import replace
from pathlib import Path

from eicore.cluster import Cluster, Generator, LoadBalancer, Node, save_cluster
from eicore.credentials import write_secret_file
from testbed.certs import generate_tls
from testbed.hosts import (
    EI_HOME,
    HOST_ROOT,
    NODE_USER,
    WRITE_HELPER,
    HostError,
    client_key,
    host_files,
    known_hosts,
    user_of,
)
from testbed.layout import (
    CLIENT_JMX_PASSWORD_FILE,
    CONSOLE_HOST_NAME,
    HOST_NAME,
    JMX_USER,
    MEMBER_PORT_BASE,
    UPSTREAM_HEADER,
    new_jmx_password,
    render_node,
    template_env,
    write_file,
)
from testbed.netns import NetworkPlan
from testbed.node_build import NodeJava

NGINX_CONF = "/etc/nginx/nginx.conf"
VHOSTS = ("ei.http.conf", "ei.https.conf", "ui.ei.https.conf")
HTTP_PORT, HTTPS_PORT, STATUS_PORT = 80, 443, 8080


def host_nodes(dir: Path, net: NetworkPlan) -> tuple[Node, ...]:
    """The nodes as the cluster file names them: reached over SSH as wso2, default ports."""
    return tuple(
        Node(name=h.name, host=h.address, ei_home=EI_HOME, port_offset=0,
             member_port=MEMBER_PORT_BASE, transport="ssh", ssh_user=user_of(h.name),
             ssh_key=str(client_key(dir)), known_hosts=str(known_hosts(dir)),
             jmx_user=JMX_USER, jmx_password_file=str(Path(dir) / CLIENT_JMX_PASSWORD_FILE))
        for h in net.hosts if h.name.startswith("node"))


def _world_usable(path: str) -> bool:
    """True when any user may reach `path` (every folder on the way searchable by others) and
    read and execute it, following symlinks."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IROTH or not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    except OSError:
        return False


def check_node_java(java: NodeJava) -> None:
    """The nodes run as `wso2`: the chosen JDK must be one every user may run."""
    if not _world_usable(java.java):
        raise HostError(f"--java {java.spec}: user {NODE_USER} may not run {java.java} (it or a "
                        "folder on its way is closed to other users); give a JDK every user may run")


def generator_python(dir: Path, host: str) -> str:
    """The python a generator host's user runs workers with (a path inside the host)."""
    if _world_usable(sys.executable):
        return sys.executable
    major, minor = sys.version_info[:2]
    base = next((c for c in (f"/usr/bin/python{major}.{minor}",
                             f"/usr/local/bin/python{major}.{minor}",
                             shutil.which(f"python{major}.{minor}") or "")
                 if c and _world_usable(c)), None)
    site = sysconfig.get_paths()["purelib"]
    if base is None or not os.path.isdir(site):
        return sys.executable  # `eiperf run` says why it cannot run there
    root = host_files(dir, host).root / "python"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "lib" / f"python{major}.{minor}").mkdir(parents=True, exist_ok=True)
    for link, target in ((root / "bin" / "python", base),
                         (root / "lib" / f"python{major}.{minor}" / "site-packages", site)):
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
    (root / "pyvenv.cfg").write_text(f"home = {os.path.dirname(base)}\n"
                                     "include-system-site-packages = false\n"
                                     f"version = {major}.{minor}\n")
    for p in (root, root / "bin", root / "lib", root / "lib" / f"python{major}.{minor}"):
        os.chmod(p, 0o755)
    os.chmod(root / "pyvenv.cfg", 0o644)
    return f"{HOST_ROOT}/python/bin/python"


def host_generators(dir: Path, net: NetworkPlan) -> tuple[Generator, ...]:
    """The generator hosts as the cluster file names them: SSH as the gen user, workers dial
    the bridge's address (the CLI's side of the network)."""
    return tuple(
        Generator(name=h.name, host=h.address, transport="ssh",
                  python=generator_python(dir, h.name), ssh_user=user_of(h.name),
                  ssh_key=str(client_key(dir)), known_hosts=str(known_hosts(dir)),
                  master_host=net.gateway)
        for h in net.hosts if h.name.startswith("gen"))


def host_cluster(dir: Path, net: NetworkPlan, nodes: tuple[Node, ...]) -> Cluster:
    lb = net.host("lb")
    local = host_files(dir, "lb")
    load_balancer = LoadBalancer(
        http_url=f"http://{lb.address}:{HTTP_PORT}",
        https_url=f"https://{lb.address}:{HTTPS_PORT}",
        console_url=f"https://{lb.address}:{HTTPS_PORT}",
        host_name=HOST_NAME, console_host_name=CONSOLE_HOST_NAME,
        ca_file=str(local.local("/etc/nginx/ssl/ca.crt")),
        nginx_bin="/usr/sbin/nginx", prefix=None, conf=NGINX_CONF,
        vhost_files=tuple(f"/etc/nginx/sites-enabled/{v}" for v in VHOSTS),
        status_url=f"http://{lb.address}:{STATUS_PORT}/nginx_status",
        upstream_header=UPSTREAM_HEADER, transport="ssh", pid_file="/run/nginx.pid",
        host=lb.address, ssh_user=user_of("lb"), ssh_key=str(client_key(dir)),
        known_hosts=str(known_hosts(dir)), become="sudo", write_helper=WRITE_HELPER,
    )
    return Cluster(name="testbed-hosts", load_balancer=load_balancer, nodes=nodes,
                   testbed_dir=str(dir), source=str(Path(dir) / "cluster.toml"),
                   generators=host_generators(dir, net))


def render_hosts(dir: Path, net: NetworkPlan, nginx_workers: int = 1,
                 java_home: str | None = None) -> Cluster:
    """Write every node's EI_HOME, the LB's /etc/nginx, TLS, and the testbed's cluster.toml;
    with `java_home` each integrator.sh runs that JDK, else the java on the host's PATH."""
    dir = Path(dir)
    nodes = host_nodes(dir, net)
    lb = host_files(dir, "lb")
    etc = lb.local("/etc/nginx")
    for sub in ("sites-available", "sites-enabled", "ssl"):
        (etc / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("/var/log/nginx", "/var/lib/nginx"):
        lb.local(sub).mkdir(parents=True, exist_ok=True)
    tls = generate_tls(etc / "ssl", dir / "wso2carbon.p12", [HOST_NAME, CONSOLE_HOST_NAME],
                       [n.name for n in nodes], ip_addresses=[net.host("lb").address])
    wso2 = pwd.getpwnam(NODE_USER)
    jmx_password = new_jmx_password()  # JMX asks for it on every node, as Carbon's does
    write_secret_file(dir / CLIENT_JMX_PASSWORD_FILE, jmx_password)
    for node in nodes:
        home = host_files(dir, node.name).local(EI_HOME)
        render_node(None, replace(node, ei_home=str(home)), nodes, tls.node_keystore,
                    tls.keystore_password, jmx_password=jmx_password, listen_host=node.host,
                    java_home=java_home)
        for root, dirs, files in os.walk(home):
            for name in (root, *(os.path.join(root, f) for f in (*dirs, *files))):
                os.chown(name, wso2.pw_uid, wso2.pw_gid)
    os.unlink(tls.node_keystore)
    env = template_env()
    ctx = dict(prefix="/etc/nginx", nodes=nodes, listen_host=net.host("lb").address,
               http_port=HTTP_PORT, https_port=HTTPS_PORT, status_port=STATUS_PORT,
               host_name=HOST_NAME, console_host_name=CONSOLE_HOST_NAME, console_node=nodes[0],
               upstream_header=UPSTREAM_HEADER, worker_processes=nginx_workers,
               client_address=net.gateway)
    write_file(etc / "nginx.conf", env.get_template("nginx-host.conf.j2").render(**ctx))
    for name in VHOSTS:
        write_file(etc / "sites-available" / name, env.get_template(f"{name}.j2").render(**ctx))
        link = etc / "sites-enabled" / name
        if not link.is_symlink():
            os.symlink(f"../sites-available/{name}", link)
    cluster = host_cluster(dir, net, nodes)
    save_cluster(cluster, cluster.source)
    return cluster
