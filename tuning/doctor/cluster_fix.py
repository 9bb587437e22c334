"""`eiperf doctor --fix` for the nodes' cluster files: the fixable cluster-configuration findings
as edits of axis2.xml, carbon.xml and catalina-server.xml.

Fixable: clustering off, a scheme other than wka, another domain, a wka list missing a member,
a wrong `localMemberHost`, `HostName`/`MgtHostName` other than the load balancer's names, and
a console connector's `proxyPort`. The rows say which checks need a fix; the edits are computed
from the same parse (`read_node_config`). A wka list gets each other node's member address as
it will be once that node's own `localMemberHost` is fixed too.

Edits are made in the text, not by re-serialising the XML: only the value, attribute or element
that changes is touched; comments (WSO2 ships `<!--HostName>...</HostName-->` commented out),
indentation, CRLF line ends and the declared encoding stay byte for byte (the bytes are
decoded with surrogateescape and encoded back). Each result is parsed again and must now pass
its check, or the file is left alone.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass

from eicore.cluster import Cluster, Node
from tuning.doctor.cluster_checks import LOOPBACK, PROXY_PORTS, NodeConfig, read_node_config
from tuning.doctor.facts import NODE_FILES, NodeFacts
from tuning.doctor.row import Area, Row, Verdict
from tuning.edit import dominant_eol

_CLUSTERING = ("clustering enabled", "membershipScheme", "domain", "wka members",
               "localMemberHost")
_CARBON = {"carbon.xml HostName": "HostName", "carbon.xml MgtHostName": "MgtHostName"}
_PROXY = {f"proxyPort of the {port} connector": port for port in PROXY_PORTS}
#: the checks `--fix` edits files for
FIXABLE = (*_CLUSTERING, *_CARBON, *_PROXY)


@dataclass(frozen=True)
class XmlEdit:
    """One change to a node file: `kind` is "element" (set `<name>` text), "parameter" (set
    `<parameter name=name>` text), "member" (add a wka member `value` = "host:port"),
    "attribute" (set attribute `attr` of the `name` element whose `match` attribute is given)."""

    kind: str
    name: str
    value: str
    attr: str = ""
    match: tuple[str, str] | None = None

    def describe(self) -> str:
        if self.kind == "member":
            return f"wka member {self.value} added"
        if self.kind == "attribute":
            where = f" {self.match[0]}={self.match[1]}" if self.match else ""
            return f"<{self.name}{where}> {self.attr}={self.value}"
        if self.kind == "parameter":
            return f"{self.name} = {self.value}"
        return f"<{self.name}>{self.value}</{self.name}>"


# ---- planning: which node file gets which edits ---------------------------------------------


def _intended_member_host(c: NodeConfig, fixing: set[tuple[str, str]], multi_host: bool) -> str:
    if (c.node.name, "localMemberHost") in fixing or not c.member_host:
        return c.node.host
    if multi_host and c.member_host in LOOPBACK:
        return c.node.host
    return c.member_host


def plan_cluster_fixes(cluster: Cluster, facts: tuple[NodeFacts, ...],
                       rows: list[Row]) -> dict[tuple[str, str], list[XmlEdit]]:
    """{(node name, file short name): edits} for the cluster rows that warn or fail and that
    a file edit fixes (pure)."""
    by_label = {f"{n.name} ({n.host})": n for n in cluster.nodes}
    fixing = {(by_label[r.host].name, r.check) for r in rows
              if r.area is Area.CLUSTER and r.check in FIXABLE and r.host in by_label
              and r.verdict in (Verdict.WARN, Verdict.FAIL)}
    if not fixing:
        return {}
    configs: list[NodeConfig] = []
    files = {f.name: f.files for f in facts if not f.error}
    for node in cluster.nodes:
        try:
            configs.append(read_node_config(node, files.get(node.name, {})))
        except ET.ParseError:
            continue  # not XML: its own row says so; nothing to edit safely
    domains = Counter(c.domain for c in configs if c.domain)
    domain = domains.most_common(1)[0][0] if domains else None
    multi_host = len({c.node.host for c in configs}) > 1
    member = {c.node.name: (_intended_member_host(c, fixing, multi_host), c.member_port)
              for c in configs}
    lb = cluster.load_balancer
    plan: dict[tuple[str, str], list[XmlEdit]] = {}

    def add(node: Node, name: str, edit: XmlEdit) -> None:
        if files.get(node.name, {}).get(name) is not None:
            plan.setdefault((node.name, name), []).append(edit)

    for c in configs:
        n = c.node
        todo = {check for name, check in fixing if name == n.name}
        if "clustering enabled" in todo and c.clustering is not None:
            add(n, "axis2.xml", XmlEdit("attribute", "clustering", "true", attr="enable"))
        if "membershipScheme" in todo:
            add(n, "axis2.xml", XmlEdit("parameter", "membershipScheme", "wka"))
        if "domain" in todo and domain:
            add(n, "axis2.xml", XmlEdit("parameter", "domain", domain))
        if "localMemberHost" in todo:
            add(n, "axis2.xml", XmlEdit("parameter", "localMemberHost", member[n.name][0]))
        if "wka members" in todo:
            for o in configs:
                host, port = member[o.node.name]
                if o is not c and port and (host, port) not in c.members:
                    add(n, "axis2.xml", XmlEdit("member", "members", f"{host}:{port}"))
        for check, tag in _CARBON.items():
            if check in todo:
                want = lb.host_name if tag == "HostName" else lb.console_host_name
                add(n, "carbon.xml", XmlEdit("element", tag, want))
        for check, port in _PROXY.items():
            if check in todo and any(p == port for p, _ in c.proxy_ports):
                add(n, "catalina-server.xml", XmlEdit("attribute", "Connector", PROXY_PORTS[port],
                                                      attr="proxyPort", match=("port", port)))
    return plan


# ---- editing the text ----------------------------------------------------------------------


def _comments(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"<!--.*?-->", text, re.DOTALL)]


def _live(text: str, pattern: str, flags: int = 0) -> list[re.Match[str]]:
    """Matches of `pattern` that are not inside an XML comment."""
    spans = _comments(text)
    return [m for m in re.finditer(pattern, text, flags)
            if not any(a <= m.start() < b for a, b in spans)]


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_at(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    line = text[start:pos]
    return line[: len(line) - len(line.lstrip())]


def _insert_line(text: str, pos: int, indent: str, body: str) -> str:
    """A new line `indent + body` before the line that holds `pos`."""
    start = _line_start(text, pos)
    return text[:start] + indent + body + dominant_eol(text) + text[start:]


def _unit(text: str) -> str:
    """One level of the file's indentation: a tab, or its smallest indentation of an element."""
    if re.search(r"^\t<", text, re.MULTILINE):
        return "\t"
    widths = [len(m.group(1)) for m in re.finditer(r"^( +)<", text, re.MULTILINE)]
    return " " * (min(widths) if widths else 4)


def _set_text(text: str, open_pattern: str, close_tag: str, value: str) -> str | None:
    """Set the text of the first live element opened by `open_pattern`; None when absent."""
    for m in _live(text, open_pattern):
        end = text.find(f"</{close_tag}", m.end())
        if end < 0:
            return None
        return text[: m.end()] + value + text[end:]
    return None


def _set_element(text: str, tag: str, value: str) -> str:
    done = _set_text(text, rf"<{tag}\s*>", tag, value)
    if done is not None:
        return done
    # absent (WSO2 ships HostName commented out): after HostName (for MgtHostName), else the
    # first thing inside the root element
    anchor = _live(text, r"<HostName\s*>[^<]*</HostName\s*>") if tag == "MgtHostName" else []
    if anchor:
        after = text.find("\n", anchor[0].end()) + 1 or len(text)
        return (text[:after] + f"{_indent_at(text, anchor[0].start())}<{tag}>{value}</{tag}>"
                + dominant_eol(text) + text[after:])
    root = next(m for m in _live(text, r"<(?![?!])[A-Za-z][^>]*>"))
    after = text.find("\n", root.end()) + 1 or len(text)
    indent = _indent_at(text, root.start()) + _unit(text)
    nxt = re.match(r"[ \t]*", text[after:])
    if nxt and text[after + nxt.end(): after + nxt.end() + 1] == "<":
        indent = nxt.group(0)
    return text[:after] + f"{indent}<{tag}>{value}</{tag}>" + dominant_eol(text) + text[after:]


def _clustering_span(text: str) -> tuple[int, int]:
    m = _live(text, r"<clustering\b[^>]*>")
    if not m:
        raise ValueError("no <clustering> element")
    end = text.find("</clustering", m[0].end())
    return m[0].end(), end if end >= 0 else len(text)


def _set_parameter(text: str, name: str, value: str) -> str:
    start, end = _clustering_span(text)
    pattern = rf"<parameter\s+name\s*=\s*[\"']{re.escape(name)}[\"']\s*>"
    hits = [m for m in _live(text, pattern) if start <= m.start() < end]
    if hits:
        close = text.find("</parameter", hits[0].end())
        return text[: hits[0].end()] + value + text[close:]
    params = [m for m in _live(text, r"<parameter\b") if start <= m.start() < end]
    at = params[0].start() if params else end
    indent = _indent_at(text, at) if params else _indent_at(text, end) + _unit(text)
    return _insert_line(text, at, indent, f'<parameter name="{name}">{value}</parameter>')


def _add_member(text: str, address: str) -> str:
    host, port = address.rsplit(":", 1)
    start, end = _clustering_span(text)
    eol, unit = dominant_eol(text), _unit(text)
    members = [m for m in _live(text, r"<members\s*(/?)>") if start <= m.start() < end]
    if members and members[0].group(1):  # <members/>: open it
        m = members[0]
        indent = _indent_at(text, m.start())
        text = text[: m.start()] + "<members>" + eol + indent + "</members>" + text[m.end():]
        start, end = _clustering_span(text)
        members = [m for m in _live(text, r"<members\s*>") if start <= m.start() < end]
    if not members:
        indent = _indent_at(text, end) + unit
        text = _insert_line(text, end, indent, "<members>" + eol + indent + "</members>")
        start, end = _clustering_span(text)
        members = [m for m in _live(text, r"<members\s*>") if start <= m.start() < end]
    close = text.find("</members", members[0].end())
    given = [m for m in _live(text, r"<member\s*>") if members[0].end() <= m.start() < close]
    if given:
        indent = _indent_at(text, given[-1].start())
        inner = re.search(r"\n([ \t]*)<", text[given[-1].end():])
        child = inner.group(1) if inner else indent + unit
    else:
        indent = _indent_at(text, close) + unit
        child = indent + unit
    block = (f"<member>{eol}{child}<hostName>{host}</hostName>{eol}{child}<port>{port}</port>"
             f"{eol}{indent}</member>")
    if text[_line_start(text, close):close].strip():  # `</members>` after other text on its line
        return text[:close] + block + text[close:]
    return _insert_line(text, close, indent, block)


def _set_attribute(text: str, tag: str, attr: str, value: str,
                   match: tuple[str, str] | None) -> str:
    for m in _live(text, rf"<{tag}\b[^>]*>", re.DOTALL):
        head = m.group(0)
        if match and not re.search(rf"\b{match[0]}\s*=\s*[\"']{re.escape(match[1])}[\"']", head):
            continue
        have = re.search(rf"(\b{attr}\s*=\s*)([\"'])[^\"']*\2", head)
        if have:
            new = head[: have.start()] + f"{have.group(1)}{have.group(2)}{value}{have.group(2)}" \
                + head[have.end():]
        elif match:
            anchor = re.search(rf"\b{match[0]}\s*=\s*([\"']){re.escape(match[1])}\1", head)
            assert anchor is not None
            new = head[: anchor.end()] + f' {attr}="{value}"' + head[anchor.end():]
        else:
            at = len(tag) + 1
            new = head[:at] + f' {attr}="{value}"' + head[at:]
        return text[: m.start()] + new + text[m.end():]
    raise ValueError(f"no <{tag}> element" + (f" with {match[0]}={match[1]}" if match else ""))


def edit_node_file(text: str, edits: list[XmlEdit]) -> str:
    """`text` with `edits` made (pure); ValueError when an element to edit is not there."""
    for e in edits:
        if e.kind == "element":
            text = _set_element(text, e.name, e.value)
        elif e.kind == "parameter":
            text = _set_parameter(text, e.name, e.value)
        elif e.kind == "member":
            text = _add_member(text, e.value)
        else:
            text = _set_attribute(text, e.name, e.attr, e.value, e.match)
    return text


def decode(data: bytes) -> str:
    """Bytes as text that encodes back to the same bytes whatever the declared encoding."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def node_file_path(node: Node, name: str) -> str:
    return node.path(*NODE_FILES[name])
