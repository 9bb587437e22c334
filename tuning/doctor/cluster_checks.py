"""The cluster-configuration area: the clustering guide's steps, compared across nodes.

Pure functions over each node's carbon.xml, axis2.xml, catalina-server.xml,
passthru-http.properties and deployed proxy files (`NodeFacts.files`). Wrong clustering
(off, not wka, another domain, a wka list missing a member, a loopback member host across
hosts, a member port or port offset taken twice on one host, an offset that differs from
cluster.toml's) fails: nodes do not form one cluster, or eiperf talks to the wrong ports.
Host names, proxyPort, plain-text passwords and drift between nodes (pass-through settings,
JVM flags of bin/integrator.sh as the JVM would see them, deployed proxies) warn, the
differences listed. The central database (master-datasources.xml, registry.xml): registry mounts
that do not reach one shared database from every node, or local registries two nodes share,
fail; pool settings that differ and plain-text datasource passwords warn. A password's value is
never shown.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass

from eicore.cluster import Cluster, LoadBalancer, Node
from eicore.errors import EiperfError
from tuning.datasources_xml import read_pools, read_secrets
from tuning.doctor.facts import NODE_FILES, NodeFacts
from tuning.doctor.row import Area, Row, Verdict
from tuning.integrator_sh import read_jvm_options
from tuning.passthru_properties import read_properties

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the console connectors of catalina-server.xml (unshifted ports) and the proxyPort each needs
PROXY_PORTS = {"9763": "80", "9443": "443"}
_PASSWORD_TAGS = ("Password", "KeyPassword")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _kids(el: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element | None, *path: str) -> str | None:
    for name in path:
        found = _kids(el, name)
        el = found[0] if found else None
    return None if el is None or el.text is None else el.text.strip()


@dataclass(frozen=True)
class NodeConfig:
    """What the checks need of one node's files (None: the file or element is absent)."""

    node: Node
    clustering: str | None = None  # the enable attribute
    scheme: str | None = None
    domain: str | None = None
    member_host: str | None = None
    member_port: str | None = None
    members: tuple[tuple[str, str], ...] = ()
    host_name: str | None = None
    mgt_host_name: str | None = None
    offset: str | None = None
    plain_passwords: tuple[str, ...] = ()
    proxy_ports: tuple[tuple[str, str | None], ...] = ()  # (connector port, proxyPort)


def read_node_config(node: Node, files: dict[str, str | None]) -> NodeConfig:
    """Parse a node's files; ET.ParseError for a file that is not XML."""
    fields: dict[str, object] = {}
    axis2 = files.get("axis2.xml")
    if axis2 is not None:
        clustering = next(iter(_kids(ET.fromstring(axis2), "clustering")), None)
        if clustering is not None:
            params = {p.get("name"): (p.text or "").strip() for p in _kids(clustering, "parameter")}
            fields.update(
                clustering=clustering.get("enable"), scheme=params.get("membershipScheme"),
                domain=params.get("domain"), member_host=params.get("localMemberHost"),
                member_port=params.get("localMemberPort"),
                members=tuple((_text(m, "hostName") or "", _text(m, "port") or "")
                              for m in _kids(next(iter(_kids(clustering, "members")), None),
                                             "member")))
    carbon = files.get("carbon.xml")
    if carbon is not None:
        root = ET.fromstring(carbon)
        plain = tuple(
            f"{_local(parent.tag)}/{_local(el.tag)}"
            for parent in root.iter() for el in parent
            if _local(el.tag) in _PASSWORD_TAGS and (el.text or "").strip()
            and not any(k.endswith("secretAlias") for k in el.attrib))
        fields.update(host_name=_text(root, "HostName"), mgt_host_name=_text(root, "MgtHostName"),
                      offset=_text(root, "Ports", "Offset"), plain_passwords=plain)
    catalina = files.get("catalina-server.xml")
    if catalina is not None:
        fields["proxy_ports"] = tuple((c.get("port", ""), c.get("proxyPort"))
                                      for c in ET.fromstring(catalina).iter()
                                      if _local(c.tag) == "Connector")
    return NodeConfig(node, **fields)  # type: ignore[arg-type]


def _row(host: str, check: str, current: str, recommended: str, verdict: Verdict,
         fix: str = "", fix_file: str = "") -> Row:
    if verdict in (Verdict.OK, Verdict.NA):
        fix, fix_file = "", ""
    return Row(Area.CLUSTER, host, check, current, recommended, verdict, fix, fix_file)


def _label(node: Node) -> str:
    return f"{node.name} ({node.host})"


def _file(node: Node, name: str) -> str:
    return node.path(*NODE_FILES[name])


def _clustering_rows(c: NodeConfig, configs: list[NodeConfig], domain: str | None) -> list[Row]:
    n, axis2 = c.node, _file(c.node, "axis2.xml")
    host = _label(n)
    rows = [
        _row(host, "clustering enabled", c.clustering or "(no <clustering>)", "true",
             Verdict.OK if c.clustering == "true" else Verdict.FAIL,
             '<clustering class="...HazelcastClusteringAgent" enable="true">', axis2),
        _row(host, "membershipScheme", c.scheme or "(unset)", "wka",
             Verdict.OK if c.scheme == "wka" else Verdict.FAIL,
             '<parameter name="membershipScheme">wka</parameter>', axis2),
        _row(host, "domain", c.domain or "(unset)", domain or "one domain on all nodes",
             Verdict.OK if c.domain and c.domain == domain else Verdict.FAIL,
             f'<parameter name="domain">{domain}</parameter>', axis2),
    ]
    others = [(o.member_host or "?", o.member_port or "?") for o in configs if o is not c]
    missing = [m for m in others if m not in c.members]
    listed = ", ".join(f"{h}:{p}" for h, p in c.members) or "(none)"
    rows.append(_row(
        host, "wka members", listed + (f"; missing {', '.join(f'{h}:{p}' for h, p in missing)}"
                                       if missing else ""),
        "every other node's localMemberHost:localMemberPort",
        Verdict.FAIL if missing else Verdict.OK,
        " ".join(f"<member><hostName>{h}</hostName><port>{p}</port></member>" for h, p in missing),
        axis2))
    multi_host = len({o.node.host for o in configs}) > 1
    mh = c.member_host or ""
    verdict = (Verdict.FAIL if not mh or (multi_host and mh in LOOPBACK)
               else Verdict.OK if mh == n.host else Verdict.WARN)
    rows.append(_row(host, "localMemberHost", mh or "(unset)", f"{n.host} (the node's address)",
                     verdict, f'<parameter name="localMemberHost">{n.host}</parameter>', axis2))
    return rows


def _unique_rows(configs: list[NodeConfig]) -> list[Row]:
    """localMemberPort and the port offset: one per host; the offset as cluster.toml says."""
    rows = []
    for check, attr in (("localMemberPort", "member_port"), ("port offset", "offset")):
        taken = Counter((c.node.host, getattr(c, attr)) for c in configs)
        for c in configs:
            value = getattr(c, attr)
            name = "axis2.xml" if attr == "member_port" else "carbon.xml"
            clash = value is not None and taken[(c.node.host, value)] > 1
            verdict = Verdict.FAIL if value is None or clash else Verdict.OK
            note = f" (also on another node of {c.node.host})" if clash else ""
            recommended = "unique on the host"
            if attr == "offset" and value is not None and value != str(c.node.port_offset):
                verdict, note = Verdict.FAIL, f" (cluster.toml says {c.node.port_offset})"
                recommended = f"{c.node.port_offset}, unique on the host"
            fix = ('<parameter name="localMemberPort">a free port</parameter>'
                   if attr == "member_port" else "<Ports><Offset>a free offset</Offset> "
                   "(and port_offset in cluster.toml)")
            rows.append(_row(_label(c.node), check, (value or "(unset)") + note, recommended,
                             verdict, fix, _file(c.node, name)))
    return rows


def _carbon_rows(c: NodeConfig, lb: LoadBalancer) -> list[Row]:
    host, carbon = _label(c.node), _file(c.node, "carbon.xml")
    rows = [
        _row(host, "carbon.xml HostName", c.host_name or "(unset)", lb.host_name,
             Verdict.OK if c.host_name == lb.host_name else Verdict.WARN,
             f"<HostName>{lb.host_name}</HostName>", carbon),
        _row(host, "carbon.xml MgtHostName", c.mgt_host_name or "(unset)", lb.console_host_name,
             Verdict.OK if c.mgt_host_name == lb.console_host_name else Verdict.WARN,
             f"<MgtHostName>{lb.console_host_name}</MgtHostName>", carbon),
        _row(host, "plain-text passwords", ", ".join(c.plain_passwords) or "none",
             "none (Secure Vault)", Verdict.WARN if c.plain_passwords else Verdict.OK,
             "encrypt them with Secure Vault (bin/ciphertool.sh -Dconfigure)", carbon),
    ]
    catalina = _file(c.node, "catalina-server.xml")
    for port, want in PROXY_PORTS.items():
        given = [pp for p, pp in c.proxy_ports if p == port]
        current = (given[0] or "(unset)") if given else "(no connector)"
        rows.append(_row(host, f"proxyPort of the {port} connector", current, want,
                         Verdict.OK if given and given[0] == want else Verdict.WARN,
                         f'<Connector port="{port}" proxyPort="{want}" .../>', catalina))
    return rows


def jvm_params(text: str | None) -> dict[str, object] | str:
    """The `jvm.*` settings a node's integrator.sh gives its JVM, or why they cannot be read."""
    if text is None:
        return "bin/integrator.sh missing"
    try:
        return dict(read_jvm_options(text).as_params())
    except EiperfError as e:
        return str(e)


def _jvm_row(facts: list[NodeFacts]) -> Row:
    """JVM flags alike: each setting that differs, with every node's value ("-": not set)."""
    params = {f.name: jvm_params(f.files.get("integrator.sh")) for f in facts}
    unread = [f"{name}: {why}" for name, why in params.items() if isinstance(why, str)]
    read = {name: p for name, p in params.items() if isinstance(p, dict)}
    keys = sorted({k for p in read.values() for k in p})
    shown = {n: {k: str(p.get(k, "-")) for k in keys} for n, p in read.items()}
    differ = [f"{k} ({', '.join(f'{n} {v[k]}' for n, v in shown.items())})"
              for k in keys if len({v[k] for v in shown.values()}) > 1]
    current = "; ".join([*(["differ: " + "; ".join(differ)] if differ else []),
                         *(f"unreadable: {u}" for u in unread)])
    current = current or f"identical ({len(keys)} settings)"
    return _row("all nodes", "JVM flags alike (bin/integrator.sh)", current, "identical",
                Verdict.WARN if differ or unread else Verdict.OK,
                "eiperf tune apply --set jvm.<name>=<value> (sets every node)",
                "bin/integrator.sh")


def _drift_rows(facts: list[NodeFacts]) -> list[Row]:
    """Pass-through settings, JVM flags and deployed proxy files identical on every node."""
    if len(facts) < 2:
        return []
    rows = [_jvm_row(facts)]
    props = {f.name: read_properties(f.files.get("passthru-http.properties") or "") for f in facts}
    keys = sorted({k for p in props.values() for k in p})
    differ = [k for k in keys if len({p.get(k) for p in props.values()}) > 1]
    rows.append(_row("all nodes", "passthru-http.properties alike",
                     "differ: " + ", ".join(differ) if differ else "identical", "identical",
                     Verdict.WARN if differ else Verdict.OK,
                     "eiperf tune apply --set passthru.<key>=<value> (sets every node)",
                     "conf/passthru-http.properties"))
    names = sorted({p for f in facts for p in f.proxies})
    odd = [p for p in names if len({f.proxies.get(p) for f in facts}) > 1]
    rows.append(_row("all nodes", "deployed proxy services alike",
                     "differ: " + ", ".join(odd) if odd else f"identical ({len(names)} files)",
                     "identical (deployment synchronisation)",
                     Verdict.WARN if odd else Verdict.OK,
                     "eiperf deploy --proxy FILE (writes every node)",
                     "repository/deployment/server/synapse-configs/default/proxy-services"))
    return rows


def _jndi_urls(text: str) -> dict[str, str]:
    """{JNDI name: JDBC URL} of a master-datasources.xml (no passwords read)."""
    out = {}
    for ds in ET.fromstring(text).iter("datasource"):
        jndi, url = ds.findtext("jndiConfig/name"), ds.findtext("definition/configuration/url")
        if jndi and url:
            out[jndi.strip()] = url.strip()
    return out


def registry_targets(registry: str, datasources: str) -> tuple[str | None, dict[str, str | None]]:
    """The JDBC URL of a node's local registry, and of each mount path's database (None where
    the chain dbConfig -> dataSource -> datasource url breaks)."""
    urls = _jndi_urls(datasources)
    root = ET.fromstring(registry)
    configs = {c.get("name"): (c.findtext("dataSource") or "").strip()
               for c in root.findall("dbConfig")}
    instances = {(r.findtext("id") or "").strip(): (r.findtext("dbConfig") or "").strip()
                 for r in root.findall("remoteInstance")}
    local = urls.get(configs.get((root.findtext("currentDBConfig") or "").strip(), ""))
    mounts = {m.get("path") or "?": urls.get(configs.get(instances.get(
        (m.findtext("instanceId") or "").strip(), ""), ""))
        for m in root.findall("mount")}
    return local, mounts


def _database_rows(facts: list[NodeFacts]) -> list[Row]:
    """Registry mounts on one shared database, local registries apart, pools alike, passwords
    not in plain text -- for clusters whose nodes have master-datasources.xml."""
    have = [f for f in facts if f.files.get("master-datasources.xml") is not None]
    if not have:
        return []
    rows, locals_, mounts = [], {}, {}
    for f in have:
        host = f"{f.name} ({f.host})"
        ds_text = f.files["master-datasources.xml"] or ""
        reg = f.files.get("registry.xml")
        try:
            if reg is not None:
                locals_[f.name], mounts[f.name] = registry_targets(reg, ds_text)
            secrets = read_secrets(ds_text)
        except (ET.ParseError, EiperfError) as e:
            rows.append(_row(host, "datasource files", f"(unreadable: {e})", "valid XML",
                             Verdict.FAIL))
            continue
        plain = [k.split(".")[1] for k, v in secrets.items() if v == "set"]
        rows.append(_row(host, "plain-text datasource passwords", ", ".join(plain) or "none",
                         "none (Secure Vault)", Verdict.WARN if plain else Verdict.OK,
                         '<password svns:secretAlias="Datasources.<NAME>.Configuration.'
                         'Password"/> (bin/ciphertool.sh -Dconfigure)',
                         "conf/datasources/master-datasources.xml"))
    want = ("/_system/config", "/_system/governance")
    shown = {n: {p: m.get(p) for p in want} for n, m in mounts.items()}
    targets = {u for m in shown.values() for u in m.values()}
    broken = [f"{n} {p}" for n, m in shown.items() for p, u in m.items() if u is None]
    current = "; ".join(
        f"{n}: " + ", ".join(f"{p} -> {u or '(none)'}" for p, u in m.items())
        for n, m in shown.items()) or "(no registry.xml)"
    ok = len(shown) == len(have) and not broken and len(targets) == 1
    rows.append(_row("all nodes", "registry mounts on one shared database",
                     f"one database ({next(iter(targets))})" if ok else current,
                     "/_system/config and /_system/governance -> the same shared database",
                     Verdict.OK if ok else Verdict.FAIL,
                     '<mount path="/_system/config"> via remoteInstance dbConfig '
                     '"sharedregistry" to WSO2_SHARED_REG_DB', "conf/registry.xml"))
    seen = Counter(u for u in locals_.values() if u)
    shared_local = sorted(u for u, k in seen.items() if k > 1)
    rows.append(_row("all nodes", "local registries apart",
                     "shared: " + ", ".join(shared_local) if shared_local
                     else f"{len(seen)} separate databases", "one database per node",
                     Verdict.FAIL if shared_local else Verdict.OK,
                     "point each node's WSO2_CARBON_DB at its own REGISTRY_LOCAL<n>",
                     "conf/datasources/master-datasources.xml"))
    if len(have) > 1:
        pools = {f.name: read_pools(f.files["master-datasources.xml"] or "") for f in have}
        keys = sorted({k for p in pools.values() for k in p})
        differ = [k + " (" + ", ".join(f"{n} {p.get(k, '-')}" for n, p in pools.items()) + ")"
                  for k in keys if len({p.get(k) for p in pools.values()}) > 1]
        rows.append(_row("all nodes", "datasource pool settings alike",
                         "differ: " + "; ".join(differ) if differ
                         else f"identical ({len(keys)} settings)", "identical",
                         Verdict.WARN if differ else Verdict.OK,
                         "eiperf tune apply --set ds.<datasource>.<property>=<value> "
                         "(sets every node)", "conf/datasources/master-datasources.xml"))
    return rows


def check_cluster(cluster: Cluster, facts: tuple[NodeFacts, ...]) -> list[Row]:
    """Every cluster-configuration row, from the nodes' files."""
    rows, configs = [], []
    by_name = {f.name: f for f in facts}
    for node in cluster.nodes:
        f = by_name.get(node.name)
        if f is None or f.error:
            rows.append(_row(_label(node), "read node files", f"({f.error if f else 'not read'})",
                             "readable", Verdict.FAIL))
            continue
        missing = [name for name in ("carbon.xml", "axis2.xml", "catalina-server.xml")
                   if f.files.get(name) is None]
        rows += [_row(_label(node), f"file {name}", "(missing)", "present", Verdict.FAIL,
                      "restore it from the EI distribution", _file(node, name))
                 for name in missing]
        try:
            configs.append(read_node_config(node, f.files))
        except ET.ParseError as e:
            rows.append(_row(_label(node), "configuration XML", f"(not XML: {e})", "valid XML",
                             Verdict.FAIL))
    domains = Counter(c.domain for c in configs if c.domain)
    domain = domains.most_common(1)[0][0] if domains else None
    for c in configs:
        rows += _clustering_rows(c, configs, domain)
    rows += _unique_rows(configs)
    for c in configs:
        rows += _carbon_rows(c, cluster.load_balancer)
    ok = [f for f in facts if not f.error]
    return rows + _drift_rows(ok) + _database_rows(ok)
