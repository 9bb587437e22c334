"""A cluster's current settings, read from its files: what `tune show` prints and every run
records in its snapshot. Keys are the tuning parameter namespace (`jvm.xmx`, `nginx.*`, ...).
A datasource's password is recorded as `ds.<name>.password`: "set", "secure vault" or "not
set" -- never its value.
"""

from __future__ import annotations

from typing import Any

from eicore.cluster import Cluster, Node
from eicore.errors import EiperfError
from eicore.transport import transport_for
from tuning.datasources_xml import read_pools, read_secrets
from tuning.integrator_sh import read_jvm_options
from tuning.nginx_conf import read_nginx_settings
from tuning.passthru_properties import read_properties


def node_settings(node: Node) -> dict[str, Any]:
    """`jvm.*` from bin/integrator.sh and `passthru.*` from passthru-http.properties."""
    t = transport_for(node)
    out: dict[str, Any] = {}
    try:
        opts = read_jvm_options(t.read_text(node.integrator_sh), "integrator.sh")
        out.update(opts.as_params())
        out["jvm.options_line"] = " ".join(opts.options)
    except FileNotFoundError:
        out["jvm.error"] = f"{node.integrator_sh} not found"
    except EiperfError as e:
        out["jvm.error"] = str(e)
    try:
        props = read_properties(t.read_text(node.passthru_properties))
        out.update({f"passthru.{k}": v for k, v in props.items()})
    except FileNotFoundError:
        pass
    try:  # pool settings; of a password only whether it is set (never its value)
        text = t.read_text(node.master_datasources)
        out.update(read_pools(text))
        out.update(read_secrets(text))
    except FileNotFoundError:
        pass
    except EiperfError as e:
        out["ds.error"] = str(e)
    return out


def nginx_files(cluster: Cluster) -> dict[str, str]:
    """{file name: text} of nginx.conf and the vhost files the cluster names."""
    lb = cluster.load_balancer
    t = transport_for(lb)
    files = {}
    for name in (lb.conf, *lb.vhost_files):
        try:
            files[name] = t.read_text(lb.conf_path(name))
        except FileNotFoundError:
            continue
    return files


def cluster_settings(cluster: Cluster) -> dict[str, Any]:
    """{"nginx": {...}, "nodes": {name: {...}}} -- the cluster's settings as its files say."""
    try:
        nginx = read_nginx_settings(nginx_files(cluster))
    except EiperfError as e:
        nginx = {"error": str(e)}
    return {"nginx": nginx, "nodes": {n.name: node_settings(n) for n in cluster.nodes}}
