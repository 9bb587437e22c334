"""Bring the multi-host testbed up and down (`eiperf up --hosts`, `eiperf down`).

Up: network (`testbed.netns`), hosts with their sshd (`testbed.hosts`), files
(`testbed.host_layout`), the load balancer's sudo rights, nginx as root on the LB host, then
the nodes -- started over SSH as `wso2` through their own `bin/integrator.sh`, exactly as eiperf
starts a user's nodes. Whatever fails, what this call made is taken down again.

Down: every process in the testbed's namespaces (found with `ip netns pids`, stopped by PID),
the namespaces, veths and bridge, the sudoers rule; `--purge` also removes the files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eicore import node_control
from eicore.cluster import Cluster, load_cluster
from eicore.errors import EiperfError
from eicore.transport import transport_for
from testbed.host_layout import NGINX_CONF, check_node_java, render_hosts
from testbed.hosts import (
    SSHD,
    WRITE_HELPER,
    HostError,
    anchor_pid,
    host_files,
    in_host,
    prepare_client,
    prepare_host,
    start_host,
    stop_host,
    terminate,
    user_of,
    write_known_hosts,
)
from testbed.netns import NetworkPlan, check_can_build, create_network, destroy_network, namespaces
from testbed.netns import plan_network as _plan_network
from testbed.node_build import (
    NodeJava,
    compiled_classes,
    find_javac,
    load_node_java,
    resolve_node_java,
    save_node_java,
)

Progress = Callable[[str], None]
STATE = "hosts.json"
KILL_AFTER_S = 10.0  # a JVM stopping cleanly on TERM takes a few seconds
SUDOERS_DIR = Path("/etc/sudoers.d")


def _state_file(dir: Path) -> Path:
    return Path(dir) / STATE


def saved_network(dir: Path) -> NetworkPlan | None:
    """The network a testbed folder was built with (hosts.json), or None."""
    try:
        data = json.loads(_state_file(dir).read_text())
    except FileNotFoundError:
        return None
    return _plan_network(dir, data["nodes"], data["generators"], data["subnet"])


def is_hosts_testbed(dir: Path) -> bool:
    return _state_file(dir).exists()


def sudoers_file(net: NetworkPlan) -> Path:
    return SUDOERS_DIR / f"eiperf-{net.tag}"


def _write_helper_script() -> str:
    return """\
#!/bin/sh
# eiperf-conf-write DEST: replace DEST (through a symlink: its target) with standard input,
# atomically, keeping DEST's mode and owner. Only files under /etc/nginx. Run through sudo by
# eiperf's load balancer user; the content comes from that user, never from a file it names.
set -eu
[ $# -eq 1 ] || { echo "usage: eiperf-conf-write DEST < content" >&2; exit 2; }
dest=$(readlink -f -- "$1")
case "$dest" in
    /etc/nginx/*) ;;
    *) echo "eiperf-conf-write: $1 is not a file under /etc/nginx" >&2; exit 2 ;;
esac
dir=$(dirname -- "$dest")
tmp=$(mktemp "$dir/.eiperf-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -e "$dest" ]; then
    chmod --reference="$dest" -- "$tmp"
    chown --reference="$dest" -- "$tmp"
else
    chmod 644 -- "$tmp"
fi
sync -- "$tmp" 2>/dev/null || true
mv -f -- "$tmp" "$dest"
trap - EXIT
"""


def grant_lb_rights(dir: Path, net: NetworkPlan) -> Path:
    """The LB user may run, as root and without a password, exactly: `nginx -t`, a reload, and
    the write helper (content on stdin, only under /etc/nginx). Nothing else."""
    if shutil.which("sudo") is None:
        raise HostError("sudo not found: install it (apt-get install sudo); the load balancer "
                        "host's user needs it for nginx -t and reload")
    helper = host_files(dir, "lb").root / "bin" / "eiperf-conf-write"
    helper.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(helper.parent, 0o755)
    helper.write_text(_write_helper_script())
    os.chmod(helper, 0o755)
    nginx = f"/usr/sbin/nginx -c {NGINX_CONF}"
    rule = (f"# eiperf multi-host testbed {dir}: the load balancer user's rights\n"
            f"{user_of('lb')} ALL=(root) NOPASSWD: {nginx} -t -q, {nginx} -t, "
            f"{nginx} -s reload, {WRITE_HELPER}\n")
    path = sudoers_file(net)
    SUDOERS_DIR.mkdir(mode=0o750, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(rule)
    os.chmod(tmp, 0o440)
    check = subprocess.run(["visudo", "-c", "-q", "-f", str(tmp)], capture_output=True, text=True)
    if check.returncode != 0:
        tmp.unlink()
        raise HostError(f"sudoers rule refused by visudo: {check.stderr.strip()}")
    os.replace(tmp, path)
    return path


def _start_nginx(dir: Path) -> None:
    lb = host_files(dir, "lb")
    r = in_host(lb, ["/usr/sbin/nginx", "-c", NGINX_CONF], capture_output=True, text=True)
    if r.returncode != 0:
        raise HostError(f"nginx on the lb host did not start: {r.stderr.strip()}")


def _start_nodes(cluster: Cluster, progress: Progress) -> None:
    def start(node):
        t = transport_for(node)
        try:
            return node_control.start_node(t, node)
        finally:
            t.close()

    with ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
        futures = {n.name: pool.submit(start, n) for n in cluster.nodes}
        for node in cluster.nodes:
            pid = futures[node.name].result()
            progress(f"  {node.name} ready on {node.host} (pid {pid}, as {node.ssh_user}, "
                     f"http :{node.http_port})")


def _node_java(dir: Path, java: str | None) -> NodeJava | None:
    """The JDK `--java` asks the nodes to run (None: each host's java on PATH); a testbed
    already built keeps the JDK it was built with and refuses another."""
    if not (dir / "cluster.toml").exists():
        chosen = resolve_node_java(java) if java is not None else None
        if chosen is not None:
            check_node_java(chosen)
        return chosen
    recorded = load_node_java(dir)
    if java is not None and (recorded is None or resolve_node_java(java).home != recorded.home):
        runs = f"Java {recorded.version} ({recorded.home})" if recorded else "its hosts' java"
        raise EiperfError(f"the multi-host testbed in {dir} runs {runs}; run 'eiperf down "
                          "--purge' first to build it with another --java, or pass another --dir")
    return recorded


def up_hosts(dir: Path, nodes: int = 2, generators: int = 1,
             progress: Progress = print, java: str | None = None) -> Cluster:
    """Build (first time) and start the multi-host testbed in `dir`; its cluster.

    `java`: the nodes' JDK ("11", "17" or a JAVA_HOME, as the loopback testbed's), written
    into each integrator.sh; None: each host's java on PATH. Kept by a testbed once built."""
    dir = Path(dir).absolute()
    check_can_build()
    for tool in (SSHD, "/usr/bin/nsenter"):
        if not os.access(tool, os.X_OK):
            raise HostError(f"{tool} not found: install openssh-server and util-linux")
    find_javac()
    if not 1 <= nodes <= 16 or not 0 <= generators <= 8:
        raise EiperfError("--hosts takes 1 to 16 nodes and 0 to 8 generators")
    node_java = _node_java(dir, java)
    net = saved_network(dir)
    if net is not None:
        cluster = load_cluster(dir / "cluster.toml")
        if all(anchor_pid(host_files(dir, h.name)) for h in net.hosts):
            progress(f"multi-host testbed in {dir} is already up")
            return cluster
        down_hosts(dir, progress=lambda m: None)  # what is left of it; files are kept
    else:
        net = _plan_network(dir, nodes, generators)
    dir.mkdir(parents=True, exist_ok=True)
    _state_file(dir).write_text(json.dumps({"subnet": net.subnet, "nodes": nodes,
                                            "generators": generators}) + "\n")
    try:
        progress(f"network {net.subnet}: " + ", ".join(f"{h.name} {h.address}" for h in net.hosts))
        create_network(net)
        prepare_client(dir, net)
        for h in net.hosts:
            prepare_host(dir, h)
        if not (dir / "cluster.toml").exists():
            progress("compiling the node program (cached after the first time) ...")
            compiled_classes()
            progress(f"writing {nodes} node(s) and the load balancer's /etc/nginx"
                     + (f" (nodes on Java {node_java.version}, {node_java.home})" if node_java
                        else "") + " ...")
            cluster = render_hosts(dir, net, java_home=node_java.home if node_java else None)
            if node_java is not None:
                save_node_java(dir, node_java)
        else:
            cluster = load_cluster(dir / "cluster.toml")
        write_known_hosts(dir, net)
        grant_lb_rights(dir, net)
        progress("starting each host's sshd in its namespace ...")
        for h in net.hosts:
            start_host(h, host_files(dir, h.name))
        progress("starting nginx on the lb host (as root, :80 and :443) ...")
        _start_nginx(dir)
        progress(f"starting {nodes} node(s) over SSH through bin/integrator.sh ...")
        _start_nodes(cluster, progress)
    except BaseException:
        down_hosts(dir, progress=lambda m: None)
        raise
    return cluster


def namespace_pids(net: NetworkPlan) -> list[int]:
    """Every process living in one of the testbed's network namespaces."""
    present = namespaces()
    pids: list[int] = []
    for h in net.hosts:
        if h.namespace in present:
            r = subprocess.run(["ip", "netns", "pids", h.namespace], capture_output=True,
                               text=True)
            pids += [int(p) for p in r.stdout.split() if p.isdigit()]
    return pids


def down_hosts(dir: Path, purge: bool = False, progress: Progress = print) -> bool:
    """Stop every process of the multi-host testbed, remove its network and sudoers rule."""
    dir = Path(dir).absolute()
    net = saved_network(dir)
    if net is None:
        progress(f"no multi-host testbed in {dir}")
        return False
    for h in net.hosts:  # nodes first (TERM: integrator.sh's JVM stops cleanly), then the rest
        pid_file = host_files(dir, h.name).root / "wso2ei-6.6.0" / "wso2carbon.pid"
        try:
            terminate([int(pid_file.read_text().strip())], KILL_AFTER_S)
            progress(f"{h.name} stopped")
        except (FileNotFoundError, ValueError):
            pass
    leftovers = namespace_pids(net)
    terminate(leftovers, KILL_AFTER_S)
    for h in net.hosts:
        stop_host(host_files(dir, h.name))
    removed = destroy_network(net)
    sudoers_file(net).unlink(missing_ok=True)
    progress(f"network {net.subnet} removed ({len(removed)} namespaces and links)")
    if purge:
        shutil.rmtree(dir)
        progress(f"removed {dir}")
    return True
