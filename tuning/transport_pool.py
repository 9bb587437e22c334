"""One open transport per node, and one for nginx, for the length of an apply or a restore."""

from __future__ import annotations

from eicore.cluster import Cluster, Node
from eicore.transport import NodeTransport, transport_for


class TransportPool:
    """Opens each node's (and the load balancer's) transport on first use; `close` ends them."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._nodes: dict[str, NodeTransport] = {}
        self._lb: NodeTransport | None = None

    def node(self, node: Node) -> NodeTransport:
        if node.name not in self._nodes:
            self._nodes[node.name] = transport_for(node)
        return self._nodes[node.name]

    def lb(self) -> NodeTransport:
        if self._lb is None:
            self._lb = transport_for(self.cluster.load_balancer)
        return self._lb

    def close(self) -> None:
        for t in self._nodes.values():
            t.close()
        if self._lb is not None:
            self._lb.close()

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
