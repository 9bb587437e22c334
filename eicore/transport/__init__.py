"""How eiperf reaches a host: the transport contract, its implementations, and the one place
that picks the implementation a cluster file names (`transport_for`)."""

from __future__ import annotations

from eicore.cluster import TRANSPORTS, Cluster
from eicore.errors import ConfigError
from eicore.transport.base import CommandResult, NodeTransport, TransportError
from eicore.transport.become import DEFAULT_WRITE_HELPER, BecomeTransport
from eicore.transport.local import LocalTransport, local_pid_alive
from eicore.transport.ssh import SSHTransport

__all__ = [
    "BecomeTransport", "CommandResult", "LocalTransport", "NodeTransport", "SSHTransport", "TransportError",
    "local_pid_alive", "transport_for", "transport_for_host",
]


def transport_for(node_or_lb: object) -> NodeTransport:
    """The transport a cluster file names for a node (or the load balancer): the one place
    that maps `transport = "..."` (eicore.cluster.TRANSPORTS) to an implementation."""
    kind = getattr(node_or_lb, "transport", "local")
    if kind == "ssh":
        inner = SSHTransport.for_node(node_or_lb)
        if getattr(node_or_lb, "become", None) == "sudo":  # a load balancer owned by root
            return BecomeTransport(inner, (node_or_lb.nginx_bin,),
                                   node_or_lb.write_helper or DEFAULT_WRITE_HELPER)
        return inner
    if kind == "local":
        return LocalTransport(getattr(node_or_lb, "host", "127.0.0.1"))
    raise ConfigError(f"transport {kind!r} is not one of {', '.join(TRANSPORTS)}")


def transport_for_host(cluster: Cluster | None, host: str, kind: str) -> NodeTransport:
    """The transport to `host` as `cluster` reaches it (a change journal knows only host and
    kind): local needs no cluster; a remote host must be a node or the LB of `cluster`."""
    if kind == "local":
        return LocalTransport(host)
    if cluster is None:
        raise ConfigError(f"{host} is reached over {kind}, and no cluster file says how; "
                          "pass --cluster FILE")
    for item in (*cluster.nodes, cluster.load_balancer):
        if getattr(item, "host", "127.0.0.1") == host and getattr(item, "transport", "") == kind:
            return transport_for(item)
    raise ConfigError(f"{cluster.source or 'the cluster file'} names no {kind} host {host}")
