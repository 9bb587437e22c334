"""Hosts as network namespaces: one namespace per host on a bridge, addresses from 198.18.0.0/15.

The multi-host testbed (`eiperf up --hosts`) gives every host -- `lb`, `node1..N`, `gen1..K` --
its own network namespace with one veth into a bridge in the root namespace. The bridge has an
address too, so the CLI and Locust (in the root namespace) reach the load balancer like a client
on the network. Addresses come only from 198.18.0.0/15, the range reserved for benchmark
networks (RFC 2544); each testbed takes a free /24 of it.

`plan_network` is pure; `create_network` runs `ip` and undoes what it made when a step fails;
`destroy_network` removes namespaces and the bridge (veths go with their namespace) and is
harmless to run twice.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eicore.errors import EiperfError

#: The benchmark range (RFC 2544): never any other address.
BENCH_NET = ipaddress.ip_network("198.18.0.0/15")
IP = "ip"


class NetnsError(EiperfError):
    """Namespaces, veths or the bridge could not be made or removed."""


@dataclass(frozen=True)
class HostAddr:
    """One host: its role name, namespace, address and the veth pair that joins it."""

    name: str          # lb, node1, gen1
    namespace: str     # eip-3f2a-node1
    address: str       # 198.18.7.11
    veth_root: str     # eip3f2a-h2 (root namespace side, on the bridge)
    veth_peer: str     # eip3f2a-p2 (moved into the namespace, renamed eth0)


@dataclass(frozen=True)
class NetworkPlan:
    """The testbed's network: its tag, bridge, /24 and hosts."""

    tag: str
    bridge: str
    subnet: str        # 198.18.7.0/24
    gateway: str       # the bridge's own address, .1
    hosts: tuple[HostAddr, ...]

    def host(self, name: str) -> HostAddr:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


def testbed_tag(dir: Path) -> str:
    """Four hex digits naming a testbed's namespaces and links (interface names are short)."""
    return hashlib.sha256(str(Path(dir).absolute()).encode()).hexdigest()[:4]


def _subnets_in_use() -> set[str]:
    """The /24 of every IPv4 address this machine's root namespace has."""
    r = subprocess.run([IP, "-o", "-4", "addr", "show"], capture_output=True, text=True)
    used = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            ip = ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip
            used.add(str(ipaddress.ip_network(f"{ip}/24", strict=False)))
    return used


def pick_subnet(tag: str, used: set[str]) -> str:
    """A /24 of 198.18.0.0/15 no interface of this machine uses, chosen from the tag."""
    subnets = list(BENCH_NET.subnets(new_prefix=24))
    start = int(tag, 16) % len(subnets)
    for i in range(len(subnets)):
        candidate = subnets[(start + i) % len(subnets)]
        if candidate.network_address.packed[2] == 0 and candidate.network_address.packed[1] == 18:
            continue  # keep 198.18.0.0/24 free: people use it by hand
        if str(candidate) not in used:
            return str(candidate)
    raise NetnsError("no free /24 in 198.18.0.0/15 for the testbed network")


def plan_network(dir: Path, nodes: int, generators: int, subnet: str | None = None) -> NetworkPlan:
    """Names and addresses: bridge .1, lb .2, node i .10+i, gen j .100+j."""
    tag = testbed_tag(dir)
    subnet = subnet or pick_subnet(tag, _subnets_in_use())
    net = ipaddress.ip_network(subnet)
    base = net.network_address
    roles = [("lb", 2)] + [(f"node{i}", 10 + i) for i in range(1, nodes + 1)] + \
        [(f"gen{j}", 100 + j) for j in range(1, generators + 1)]
    hosts = tuple(HostAddr(name, f"eip-{tag}-{name}", str(base + last), f"eip{tag}h{i}",
                           f"eip{tag}p{i}") for i, (name, last) in enumerate(roles))
    for h in hosts:
        if ipaddress.ip_address(h.address) not in BENCH_NET:
            raise NetnsError(f"{h.address} is outside {BENCH_NET}")
    return NetworkPlan(tag, f"eipbr-{tag}", subnet, str(base + 1), hosts)


def check_can_build() -> None:
    """One clear line when this machine cannot make namespaces: not root, or no `ip`."""
    if os.geteuid() != 0:
        raise NetnsError("'eiperf up --hosts' makes network namespaces, a bridge and users: run "
                         "it as root (or use the loopback testbed: 'eiperf up')")
    if shutil.which(IP) is None:
        raise NetnsError("'ip' not found: install iproute2 (apt-get install iproute2)")


def _ip(*args: str, ns: str | None = None) -> None:
    argv = [IP, *(("-n", ns) if ns else ()), *args]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {r.stderr.strip() or f'exit {r.returncode}'}")


def namespaces() -> set[str]:
    r = subprocess.run([IP, "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def links() -> set[str]:
    r = subprocess.run([IP, "-o", "link", "show"], capture_output=True, text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()
            if line.count(":") >= 2}


def create_network(plan: NetworkPlan) -> None:
    """Make the bridge, the namespaces and their veths; undo everything on the first failure."""
    check_can_build()
    taken = [h.namespace for h in plan.hosts if h.namespace in namespaces()]
    if taken or plan.bridge in links():
        raise NetnsError(f"{(taken or [plan.bridge])[0]} already exists: a testbed of this "
                         "folder is up or was left half built; run 'eiperf down' for it first")
    try:
        _ip("link", "add", plan.bridge, "type", "bridge")
        _ip("addr", "add", f"{plan.gateway}/{plan.prefixlen}", "dev", plan.bridge)
        _ip("link", "set", plan.bridge, "up")
        for h in plan.hosts:
            _ip("netns", "add", h.namespace)
            _ip("link", "add", h.veth_root, "type", "veth", "peer", "name", h.veth_peer)
            _ip("link", "set", h.veth_root, "master", plan.bridge)
            _ip("link", "set", h.veth_root, "up")
            _ip("link", "set", h.veth_peer, "netns", h.namespace)
            _ip("link", "set", h.veth_peer, "name", "eth0", ns=h.namespace)
            _ip("addr", "add", f"{h.address}/{plan.prefixlen}", "dev", "eth0", ns=h.namespace)
            _ip("link", "set", "eth0", "up", ns=h.namespace)
            _ip("link", "set", "lo", "up", ns=h.namespace)
    except BaseException:
        destroy_network(plan)
        raise


def destroy_network(plan: NetworkPlan) -> list[str]:
    """Remove the namespaces and the bridge (what exists of them); returns what was removed."""
    removed = []
    present = namespaces()
    for h in plan.hosts:
        if h.namespace in present:
            subprocess.run([IP, "netns", "del", h.namespace], capture_output=True)
            removed.append(h.namespace)
    existing = links()
    for name in [h.veth_root for h in plan.hosts] + [plan.bridge]:
        if name in existing:
            subprocess.run([IP, "link", "del", name], capture_output=True)
            removed.append(name)
    return removed
