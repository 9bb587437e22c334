"""The nginx area: the guide's three vhosts, upstreams naming every node, `backup` members,
keepalive to the upstreams and the proxy timeouts -- pure functions over the LB's files.

Files are parsed by crossplane (`tuning.nginx_source`), the same parser `eiperf tune` edits
them with, so a file `tune` can read the doctor reads the same way; an included file is checked
in the context its `include` stands in. `stream {}` blocks are not the guide's vhosts, but their
upstreams of the nodes are checked like the HTTP ones (members, `backup`, keepalive aside), and
a `stream {}` server passing TLS through to the nodes' HTTPS port stands for the HTTPS vhost. A
console vhost may proxy to an upstream of consoles (one node active, others `backup`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from eicore.cluster import LoadBalancer, Node
from eicore.errors import EiperfError
from tuning.doctor.row import Area, Row, Verdict
from tuning.nginx_conf import BACKUP_REFUSED
from tuning.nginx_source import NginxSource, Statement, child, in_stream, walk

#: the guide's proxy_read_timeout / proxy_send_timeout
GUIDE_TIMEOUT_S = 300
GUIDE_TIMEOUT = "5m"
KEEPALIVE_FIX = 32
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
          "M": 2592000, "y": 31536000}
_TIME_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")


def nginx_seconds(text: str) -> float | None:
    """An nginx time ("5m", "1m30s", "500ms", "60") in seconds; None when it is not one."""
    pos, total = 0, 0.0
    for m in _TIME_PART.finditer(text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * _UNITS[m.group(2) or "s"]
        pos = m.end()
    return total if text and pos == len(text) else None


@dataclass(frozen=True)
class Vhost:
    """One `server {}` block of the http side."""

    file: str
    line: int
    names: tuple[str, ...]
    listens: tuple[str, ...]
    ssl: bool
    proxy_passes: tuple[str, ...]


@dataclass(frozen=True)
class Upstream:
    """One `upstream {}` block: its servers as (address, is_backup), balancing, keepalive."""

    file: str
    line: int
    name: str
    servers: tuple[tuple[str, bool], ...]
    method: str
    keepalive: int
    stream: bool = False


@dataclass(frozen=True)
class StreamServer:
    """One `server {}` of a `stream {}` block: what it listens on and where it passes to."""

    file: str
    line: int
    listens: tuple[str, ...]
    proxy_pass: str


def parse_nginx(files: Mapping[str, str], contexts: Mapping[str, tuple[str, ...]] | None = None
                ) -> tuple[list[Vhost], list[Upstream], list[StreamServer]]:
    """The vhosts, upstreams and stream servers of `files` ({name: text}; `contexts`: where
    an included file stands); EiperfError for a file nginx would refuse."""
    vhosts, upstreams, streams = [], [], []
    for name, text in files.items():
        doc = NginxSource(name, text, (contexts or {}).get(name))
        for s in walk(doc.stmts):
            if s.block is None:
                continue
            stream = in_stream(s) or doc.context(s.parent)[:1] == ("stream",)
            if stream and s.directive == "server":
                passes = [x.args[0] for x in s.block if x.directive == "proxy_pass" and x.args]
                streams.append(StreamServer(name, s.line, tuple(
                    " ".join(x.args) for x in s.block if x.directive == "listen"),
                    passes[0] if passes else ""))
                continue
            if stream and s.directive != "upstream":
                continue
            if s.directive == "server":
                inner = list(walk(s.block))
                listens = [x for x in inner if x.directive == "listen"]
                ssl = (any("ssl" in x.args[1:] for x in listens)
                       or any(x.directive == "ssl" and x.args == ["on"] for x in inner))
                names = tuple(a for x in inner if x.directive == "server_name" for a in x.args)
                passes = tuple(x.args[0] for x in inner if x.directive == "proxy_pass" and x.args)
                vhosts.append(Vhost(name, s.line, names, tuple(" ".join(x.args) for x in listens),
                                    ssl, passes))
            elif s.directive == "upstream":
                servers = tuple((x.args[0], "backup" in x.args[1:]) for x in s.block
                                if x.directive == "server" and x.args)
                method = next((x.directive for x in s.block
                               if x.directive in ("least_conn", "ip_hash", "hash", "random")),
                              "round_robin")
                keep = child(s.block, "keepalive")
                count = int(keep.args[0]) if keep and keep.args and keep.args[0].isdigit() else 0
                upstreams.append(Upstream(name, s.line, " ".join(s.args), servers, method, count,
                                          stream))
    return vhosts, upstreams, streams


def _row(host: str, check: str, current: str, recommended: str, verdict: Verdict,
         fix: str = "", fix_file: str = "") -> Row:
    if verdict in (Verdict.OK, Verdict.NA):
        fix, fix_file = "", ""
    return Row(Area.NGINX, host, check, current, recommended, verdict, fix, fix_file)


def _upstream_name(url: str) -> tuple[str, str]:
    """("http", "wso2.ei.com") from "http://wso2.ei.com/path"."""
    scheme, _, rest = url.partition("://")
    return scheme, rest.split("/")[0]


def _check_upstream(host: str, up: Upstream, nodes: tuple[Node, ...], port_of: str,
                    every_node: bool = True) -> list[Row]:
    """Members (every node; for a console upstream at least one), `backup` members, and
    keepalive (http upstreams only: a stream upstream has none)."""
    where = f"{up.file}:{up.line}"
    label = f"{'stream ' if up.stream else ''}upstream {up.name}"
    addr = {f"{n.host}:{getattr(n, port_of)}": n for n in nodes}
    listed = {a: b for a, b in up.servers}
    missing = [a for a in addr if a not in listed]
    unknown = [a for a in listed if a not in addr]
    names = ", ".join(f"{addr[a].name}{' (backup)' if b else ''}" if a in addr else a
                      for a, b in up.servers) or "(no servers)"
    short = missing if every_node else ([] if set(listed) & set(addr) else list(addr))
    verdict = Verdict.FAIL if short else Verdict.WARN if unknown else Verdict.OK
    current = names + (f"; missing {', '.join(missing)}" if missing and every_node else "") + (
        f"; not a node: {', '.join(unknown)}" if unknown else "")
    want = ("every node: " if every_node else "a node's console: ") + ", ".join(
        n.name for n in nodes)
    rows = [_row(host, f"{label} members", current, want, verdict,
                 " ".join(f"server {a};" for a in short[:1 if not every_node else None]), where)]
    backups = [addr[a].name if a in addr else a for a, b in up.servers if b]
    if not backups:
        rows.append(_row(host, f"{label} backup", "none (all active)",
                         "actives serve, backups on failover", Verdict.OK))
    else:
        refused = up.method in BACKUP_REFUSED
        all_backup = all(b for _, b in up.servers)
        verdict = Verdict.FAIL if refused or all_backup else Verdict.OK
        why = (f"; nginx refuses backup with {up.method}" if refused
               else "; no active server" if all_backup else "")
        rows.append(_row(host, f"{label} backup", f"backup: {', '.join(backups)}{why}",
                         "actives serve, backups on failover", verdict,
                         f"remove '{up.method};' (or the backup flag)" if refused
                         else "make one server active (drop 'backup')", where))
    if up.stream:
        return rows
    rows.append(_row(host, f"upstream {up.name} keepalive",
                     str(up.keepalive) if up.keepalive else "(none: a new connection per request)",
                     "keepalive N (reuse connections to the nodes)",
                     Verdict.OK if up.keepalive else Verdict.WARN,
                     f"keepalive {KEEPALIVE_FIX};",
                     f"{where}, upstream {up.name}, after its servers"))
    return rows


def _check_vhost(host: str, label: str, name: str, ssl: bool, vhosts: list[Vhost],
                 fix: str) -> tuple[Row, Vhost | None]:
    found = next((v for v in vhosts if name in v.names and v.ssl == ssl), None)
    check = f"vhost {label} ({name}, {'https' if ssl else 'http'})"
    if found is None:
        return _row(host, check, "(missing)", "present", Verdict.FAIL, fix), None
    listen = "; ".join(found.listens) or "(no listen)"
    return _row(host, check, f"{found.file}:{found.line} listen {listen}", "present",
                Verdict.OK), found


#: the timeouts the guide sets, and nginx's default for each
_TIMEOUTS = {"proxy_read_timeout": "60s", "proxy_send_timeout": "60s"}


class _Scopes:
    """Where a directive takes its value for a block, as nginx inherits it: the block, its
    enclosing blocks, the files `include`d at each of those levels, and on through the block
    that included the file -- so a vhost whose timeouts come from a snippet (Debian's
    proxy_params) or from nginx.conf's http block is judged on those."""

    def __init__(self, docs: Mapping[str, NginxSource],
                 included_by: Mapping[str, tuple[str, int]],
                 named: Mapping[tuple[str, int], tuple[str, ...]]) -> None:
        self.docs = docs
        self.included_by = included_by
        self.named = named

    def _level(self, stmts: list[Statement], file: str, directive: str,
               depth: int = 0) -> tuple[str, int, str] | None:
        for s in stmts:
            if s.directive == directive and s.args:
                return file, s.line, s.args[0]
            if s.directive == "include" and depth < 8:
                for inc in self.named.get((file, s.line), []):
                    if inc in self.docs:
                        hit = self._level(self.docs[inc].stmts, inc, directive, depth + 1)
                        if hit:
                            return hit
        return None

    def holder(self, file: str, block: Statement | None,
               directive: str) -> tuple[str, int, str] | None:
        """(file, line, value) of the statement that sets `directive` for `block`."""
        seen: set[str] = set()
        scope = block
        while True:
            stmts = scope.block if scope is not None else self.docs[file].stmts
            hit = self._level(stmts or [], file, directive)
            if hit:
                return hit
            if scope is not None:
                scope = scope.parent
                continue
            by = self.included_by.get(file)
            if by is None or by[0] not in self.docs or file in seen:
                return None
            seen.add(file)
            file, line = by
            inc = next((s for s in walk(self.docs[file].stmts)
                        if s.directive == "include" and s.line == line), None)
            if inc is None:
                return None
            scope = inc.parent


def _check_timeouts(host: str, docs: Mapping[str, NginxSource],
                    included_by: Mapping[str, tuple[str, int]],
                    named: Mapping[tuple[str, int], tuple[str, ...]]) -> list[Row]:
    """proxy_read_timeout / proxy_send_timeout of every block that proxies (http side), where
    nginx takes them from; below the guide's 5m warns."""
    scopes = _Scopes(docs, included_by, named)
    rows, seen = [], set()
    for name, doc in docs.items():
        for block in walk(doc.stmts):
            if (block.block is None or in_stream(block) or doc.context(block)[:1] == ("stream",)
                    or not any(c.directive == "proxy_pass" for c in block.block)):
                continue
            for directive, default in _TIMEOUTS.items():
                hit = scopes.holder(name, block, directive)
                file, line, value = hit or (name, block.line, default)
                if (directive, file, line) in seen:
                    continue
                seen.add((directive, file, line))
                seconds = nginx_seconds(value)
                verdict = (Verdict.OK if seconds is not None and seconds >= GUIDE_TIMEOUT_S
                           else Verdict.WARN)
                rows.append(_row(host, f"{directive} ({file}:{line})",
                                 f"{value}{'' if hit else ' (default)'}",
                                 f"≥ {GUIDE_TIMEOUT} (the guide)", verdict,
                                 f"{directive} {GUIDE_TIMEOUT};", f"{file}:{line}"))
    return rows


def _port_of(up: Upstream, nodes: tuple[Node, ...]) -> str | None:
    """Which of the nodes' ports an upstream's members point at (None: none of them)."""
    listed = {a for a, _ in up.servers}
    for attr in ("http_port", "https_port", "console_port"):
        if any(f"{n.host}:{getattr(n, attr)}" in listed for n in nodes):
            return attr
    return None


def _tls_passthrough(host: str, lb: LoadBalancer, nodes: tuple[Node, ...],
                     streams: list[StreamServer], upstreams: dict[str, Upstream]) -> Row | None:
    """The HTTPS vhost's row when a `stream {}` server passes TLS through to the nodes' HTTPS
    port instead (the nodes then terminate TLS; no Host-based routing)."""
    https = {f"{n.host}:{n.https_port}" for n in nodes}
    for st in streams:
        up = upstreams.get(st.proxy_pass)
        members = {a for a, _ in up.servers} if up else {st.proxy_pass}
        if members & https:
            return _row(host, f"vhost ei.https ({lb.host_name}, https)",
                        f"stream {{}} passes TLS through: {st.file}:{st.line} listen "
                        f"{'; '.join(st.listens) or '(no listen)'}", "present", Verdict.OK)
    return None


def check_nginx(lb: LoadBalancer, nodes: tuple[Node, ...], files: Mapping[str, str | None],
                contexts: Mapping[str, tuple[str, ...]] | None = None,
                included_by: Mapping[str, tuple[str, int]] | None = None,
                includes: Mapping[tuple[str, int], tuple[str, ...]] | None = None) -> list[Row]:
    """Every nginx row: files readable and valid, the three vhosts, their upstreams (and the
    nodes' upstreams of `stream {}`), the console target, keepalive and the proxy timeouts.
    `contexts`: the context each included file stands in; `included_by`: which include named
    it first; `includes`: the files each include names (`NginxFacts`)."""
    host = f"{lb.host} (lb)"
    rows = [_row(host, f"file {name}", "(missing)", "readable", Verdict.FAIL,
                 "fix load_balancer.conf / vhost_files in cluster.toml, or the include")
            for name, text in files.items() if text is None]
    present = {name: text for name, text in files.items() if text is not None}
    try:
        vhosts, upstreams, streams = parse_nginx(present, contexts)
    except EiperfError as e:
        return [*rows, _row(host, "nginx config", f"({e})", "valid", Verdict.FAIL)]
    by_name = {u.name: u for u in upstreams if not u.stream}
    stream_ups = {u.name: u for u in upstreams if u.stream}
    checked: set[tuple[bool, str]] = set()
    wanted = (("ei.http", lb.host_name, False,
               f"server {{ listen 80; server_name {lb.host_name}; ... proxy_pass http://<nodes' "
               "8280 upstream>; }"),
              ("ei.https", lb.host_name, True,
               f"server {{ listen 443 ssl; server_name {lb.host_name}; ... proxy_pass "
               "https://<nodes' 8243 upstream>; }"),
              ("ui.ei.https", lb.console_host_name, True,
               f"server {{ listen 443 ssl; server_name {lb.console_host_name}; ... proxy_pass "
               "https://<a node>:9443/; }"))
    for label, name, ssl, fix in wanted:
        row, vhost = _check_vhost(host, label, name, ssl, vhosts, fix)
        if vhost is None and label == "ei.https":
            row = _tls_passthrough(host, lb, nodes, streams, stream_ups) or row
        rows.append(row)
        if vhost is None:
            continue
        for url in vhost.proxy_passes:
            scheme, target = _upstream_name(url)
            console = label == "ui.ei.https"
            if target in by_name:
                if (False, target) not in checked:
                    checked.add((False, target))
                    port_of = ("console_port" if console
                               else "https_port" if scheme == "https" else "http_port")
                    rows += _check_upstream(host, by_name[target], nodes, port_of,
                                            every_node=not console)
            elif console:
                consoles = {f"{n.host}:{n.console_port}": n.name for n in nodes}
                rows.append(_row(host, "console target", target,
                                 "a node's console: " + ", ".join(consoles),
                                 Verdict.OK if target in consoles else Verdict.WARN,
                                 f"proxy_pass https://{next(iter(consoles))}/;",
                                 f"{vhost.file}:{vhost.line}"))
    for up in stream_ups.values():
        port_of = _port_of(up, nodes)
        if port_of is not None:
            rows += _check_upstream(host, up, nodes, port_of,
                                    every_node=port_of != "console_port")
        elif any(b for _, b in up.servers):  # another service: only its backup members
            rows += [r for r in _check_upstream(host, up, nodes, "http_port")
                     if r.check.endswith(" backup")]
    docs = {n: NginxSource(n, t, (contexts or {}).get(n)) for n, t in present.items()}
    return rows + _check_timeouts(host, docs, included_by or {}, includes or {})
