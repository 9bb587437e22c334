"""Restarting nodes on new settings: a node that does not come up is an ApplyError in its JVM's
own words."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from eicore import node_control
from eicore.cluster import Node
from eicore.node_control import Progress
from eicore.transport import NodeTransport
from tuning.changes import ApplyError
from tuning.jvm_flags import parse_refusal
from tuning.transport_pool import TransportPool


def restart(node: Node, t: NodeTransport, progress: Progress) -> None:
    """Stop and start `node`, waiting until it is ready; ApplyError when it does not start."""
    try:
        pid = node_control.restart_node(t, node)
    except node_control.NodeStartError as e:
        reason = str(e).split("\n", 1)[-1].strip()
        refusal = parse_refusal(reason) or reason
        raise ApplyError(
            f"{node.name} did not start with the new settings: {' '.join(refusal.split())[:400]}",
            node=node.name,
            jvm_message=refusal,
        ) from None
    progress(f"{node.name} restarted (pid {pid})")


def restart_all(nodes: list[Node], transports: TransportPool, progress: Progress) -> None:
    """Restart `nodes` together (stop all, start all, wait for each); first failure raised."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(restart, n, transports.node(n), progress) for n in nodes]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
