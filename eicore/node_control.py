"""Node control: start, stop and restart an EI node with its own bin/integrator.sh.

Works through a `NodeTransport`, so the same code drives the testbed's local nodes and a real
cluster's nodes over SSH. Readiness is polled (PID alive, pass-through port answers, the log
says `WSO2 Carbon started` after our start), never slept for.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from eicore.cluster import Cluster, Node
from eicore.errors import EiperfError
from eicore.lbclient import LbClient
from eicore.transport import NodeTransport, transport_for

STARTED_RE = re.compile(rb"WSO2 Carbon started in ([0-9.]+) sec")
# What a JVM prints when it refuses its flags or cannot come up (JDK 8..21).
JVM_FAILURE_MARKERS = (
    b"Could not create the Java Virtual Machine",
    b"Error occurred during initialization of VM",
    b"Unrecognized VM option",
    b"Invalid maximum heap size",
    b"Invalid initial heap size",
)
POLL_S = 0.02  # readiness is seen within 20 ms; a poll reads two small files and tries a port
SETTLE_S = 0.1  # a dying JVM's output has settled when it did not grow for this long


class NodeStartError(EiperfError):
    """A node did not come up; the message carries the last lines of its logs."""


@dataclass(frozen=True)
class NodeState:
    """What can be seen of a node from outside: its PID and whether its ports answer."""

    name: str
    pid: int | None
    alive: bool
    http_open: bool
    https_open: bool
    console_open: bool

    @property
    def up(self) -> bool:
        return self.alive and self.http_open


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(transport: NodeTransport, node: Node) -> int | None:
    """The PID in wso2carbon.pid, or None when there is none."""
    try:
        text = transport.read_text(node.pid_file).strip()
    except (FileNotFoundError, OSError):
        return None
    return int(text) if text.isdigit() else None


def node_state(transport: NodeTransport, node: Node) -> NodeState:
    pid = read_pid(transport, node)
    alive = bool(pid) and transport.pid_alive(pid)  # type: ignore[arg-type]
    return NodeState(
        name=node.name,
        pid=pid,
        alive=alive,
        http_open=port_open(node.host, node.http_port),
        https_open=port_open(node.host, node.https_port),
        console_open=port_open(node.host, node.console_port),
    )


def tail(transport: NodeTransport, path: str, lines: int = 15) -> str:
    """The last `lines` lines of a file on the node ('' when it is missing)."""
    size = transport.size(path)
    data = transport.read_from(path, max(0, size - 64 * 1024))
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _stdout_log(node: Node) -> str:
    return node.path("repository", "logs", "stdout.log")


def _settled(transport: NodeTransport, path: str, limit_s: float = 1.0) -> bytes:
    """The file's content once it stopped growing (a dying JVM writes stdout and stderr)."""
    data = transport.read_from(path, 0)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        again = transport.read_from(path, 0)
        if again == data:
            break
        data = again
    return data


def _failure_reason(transport: NodeTransport, node: Node, log_offset: int) -> str | None:
    out = transport.read_from(_stdout_log(node), 0)
    if any(m in out for m in JVM_FAILURE_MARKERS):
        out = _settled(transport, _stdout_log(node))
        lines = [
            ln
            for ln in out.decode("utf-8", "replace").splitlines()
            if not ln.startswith(("JAVA_HOME", "CARBON_HOME", "Using Java memory"))
        ]
        return "\n".join(lines).strip()
    new_log = transport.read_from(node.log_file, log_offset)
    if b"Halting JVM" in new_log and not STARTED_RE.search(new_log):
        lines = new_log.decode("utf-8", "replace").splitlines()
        errors = [ln for ln in lines if " ERROR {" in ln]  # the node's own reason, when it gave one
        return "\n".join(errors[-3:] or lines[-10:])
    return None


def start_node(
    transport: NodeTransport, node: Node, timeout: float = 60.0, env: dict[str, str] | None = None
) -> int:
    """Start a node with `integrator.sh start` and wait until it serves; returns its PID.

    A node that already runs is left alone. A JVM that refuses its flags, or a node that
    exits or does not become ready in `timeout`, raises NodeStartError with its last log lines.
    """
    state = node_state(transport, node)
    if state.alive:
        return state.pid  # type: ignore[return-value]
    log_offset = transport.size(node.log_file)
    transport.remove(_stdout_log(node))
    r = transport.run(["sh", node.integrator_sh, "start"], env=env, timeout=30)
    if not r.ok:
        raise NodeStartError(
            f"{node.name}: integrator.sh start failed (exit {r.returncode}): "
            f"{(r.stderr or r.stdout).strip()[-500:]}"
        )
    return wait_ready(transport, node, log_offset, timeout)


def wait_ready(transport: NodeTransport, node: Node, log_offset: int, timeout: float) -> int:
    """Poll until the node logged `WSO2 Carbon started` after `log_offset` and its port answers."""
    deadline = time.monotonic() + timeout
    while True:
        new_log = transport.read_from(node.log_file, log_offset)
        if STARTED_RE.search(new_log):
            pid = read_pid(transport, node)
            if pid and transport.pid_alive(pid) and port_open(node.host, node.http_port):
                return pid
        reason = _failure_reason(transport, node, log_offset)
        if reason:
            raise NodeStartError(f"{node.name} failed to start:\n{_indent(reason)}")
        if time.monotonic() > deadline:
            last = tail(transport, node.log_file) or tail(transport, _stdout_log(node))
            raise NodeStartError(
                f"{node.name} was not ready after {timeout:.0f} s; last log lines:\n{_indent(last)}"
            )
        time.sleep(POLL_S)


def stop_node(transport: NodeTransport, node: Node, timeout: float = 30.0) -> bool:
    """Stop a node with `integrator.sh stop` and wait until its PID is gone.

    Returns True when a running node was stopped. A node that ignores TERM for `timeout`
    seconds is killed (SIGKILL) by its PID.
    """
    pid = read_pid(transport, node)
    if not pid or not transport.pid_alive(pid):
        return False
    transport.run(["sh", node.integrator_sh, "stop"], timeout=30)
    deadline = time.monotonic() + timeout
    while transport.pid_alive(pid):
        if time.monotonic() > deadline:
            transport.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(POLL_S)
    # A zombie still counts for `ps -p`, and integrator.sh start would then say "Process is
    # already running" and not start: wait (bounded) until its parent has reaped it.
    reaped_by = time.monotonic() + 5
    while transport.run(["ps", "-p", str(pid)], timeout=10).ok and time.monotonic() < reaped_by:
        time.sleep(POLL_S)
    return True


def restart_node(
    transport: NodeTransport, node: Node, timeout: float = 60.0, env: dict[str, str] | None = None
) -> int:
    """Stop (waiting for the old PID to exit), then start and wait until ready."""
    stop_node(transport, node)
    return start_node(transport, node, timeout=timeout, env=env)


Progress = Callable[[str], None]
ROUTE_PROBE_S = 0.2
ROUTED_TIMEOUT_S = 60.0  # nginx keeps a failed server out for fail_timeout (10 s by default)


def restart_nodes(
    cluster: Cluster,
    names: list[str] | None = None,
    *,
    rolling: bool,
    progress: Progress = lambda m: None,
    timeout: float = 60.0,
    routed_timeout: float = ROUTED_TIMEOUT_S,
) -> dict[str, int]:
    """Restart nodes (default: all) through their transports; returns each node's new PID.

    All at once: every node stops and starts in parallel (the cluster is down meanwhile).
    Rolling: one node at a time; the next starts only once this one is ready AND the load
    balancer sends it requests again, so the cluster keeps serving throughout.
    """
    nodes = [cluster.node(n) for n in names] if names is not None else list(cluster.nodes)
    transports = {n.name: transport_for(n) for n in nodes}
    pids: dict[str, int] = {}
    try:
        if rolling:
            for node in nodes:
                began = time.monotonic()
                pids[node.name] = restart_node(transports[node.name], node, timeout=timeout)
                ready = time.monotonic() - began
                routed = wait_routed(cluster, node, routed_timeout)
                if routed is None:
                    progress(f"{node.name} restarted (pid {pids[node.name]}) and ready in "
                             f"{ready:.1f} s; the load balancer does not say which node serves "
                             f"(no {cluster.load_balancer.upstream_header} header)")
                else:
                    progress(f"{node.name} restarted (pid {pids[node.name]}), ready in "
                             f"{ready:.1f} s, served through the load balancer after "
                             f"{ready + routed:.1f} s")
            return pids
        with ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
            futures = {n.name: pool.submit(restart_node, transports[n.name], n, timeout)
                       for n in nodes}
            errors = []
            for name, f in futures.items():
                try:
                    pids[name] = f.result()
                    progress(f"{name} restarted (pid {pids[name]})")
                except EiperfError as e:
                    errors.append(e)
        if errors:
            raise errors[0]
        return pids
    finally:
        for t in transports.values():
            t.close()


def wait_routed(cluster: Cluster, node: Node, timeout: float = ROUTED_TIMEOUT_S) -> float | None:
    """Seconds until a request through the LB's HTTP vhost is served by `node`.

    Probes are idempotent GETs (nginx retries them on another node if one fails), a few per
    round, a round every ROUTE_PROBE_S, bounded by `timeout`. Returns None when the load
    balancer does not name the serving node; raises NodeStartError when it never routes there.
    """
    start = time.monotonic()
    rounds = int(timeout / ROUTE_PROBE_S) + 1
    answered = with_header = 0
    with LbClient(cluster, timeout=10) as client:
        for _ in range(rounds):
            for _ in range(2 * len(cluster.nodes)):
                r = client.request("http", "GET", "/services/")
                answered += r.error is None
                with_header += r.upstream is not None
                if r.node == node.name:
                    return time.monotonic() - start
            if answered >= 10 and not with_header:
                return None
            if time.monotonic() - start > timeout:
                break
            time.sleep(ROUTE_PROBE_S)
    raise NodeStartError(
        f"{node.name} is up but the load balancer sent it no request within {timeout:.0f} s; "
        "check its server line in the nginx upstream (down? max_fails/fail_timeout?)"
    )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
