"""The nginx area: the guide's three vhosts, upstreams naming every node, `backup` members,
keepalive to the upstreams and the proxy timeouts -- pure functions over the LB's files.

Files are parsed by crossplane (`tuning.nginx_source`), the same parser `eiperf tune` edits
them with, so a file `tune` can read the doctor reads the same way. `stream {}` blocks are
not the guide's vhosts and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from eicore.cluster import LoadBalancer, Node
from eicore.errors import EiperfError
from tuning.doctor.row import Area, Row, Verdict
from tuning.nginx_conf import BACKUP_REFUSED, find_nginx_settings
from tuning.nginx_source import NginxSource, child, in_stream, walk

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


def parse_nginx(files: Mapping[str, str]) -> tuple[list[Vhost], list[Upstream]]:
    """The vhosts and upstreams of `files` ({name: text}); EiperfError for a file nginx would
    refuse."""
    vhosts, upstreams = [], []
    for name, text in files.items():
        doc = NginxSource(name, text)
        for s in walk(doc.stmts):
            if s.block is None or in_stream(s):
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
                upstreams.append(Upstream(name, s.line, " ".join(s.args), servers, method, count))
    return vhosts, upstreams


def _row(host: str, check: str, current: str, recommended: str, verdict: Verdict,
         fix: str = "", fix_file: str = "") -> Row:
    if verdict in (Verdict.OK, Verdict.NA):
        fix, fix_file = "", ""
    return Row(Area.NGINX, host, check, current, recommended, verdict, fix, fix_file)


def _upstream_name(url: str) -> tuple[str, str]:
    """("http", "wso2.ei.com") from "http://wso2.ei.com/path"."""
    scheme, _, rest = url.partition("://")
    return scheme, rest.split("/")[0]


def _check_upstream(host: str, up: Upstream, nodes: tuple[Node, ...], port_of: str) -> list[Row]:
    where = f"{up.file}:{up.line}"
    addr = {f"{n.host}:{getattr(n, port_of)}": n for n in nodes}
    listed = {a: b for a, b in up.servers}
    missing = [a for a in addr if a not in listed]
    unknown = [a for a in listed if a not in addr]
    names = ", ".join(f"{addr[a].name}{' (backup)' if b else ''}" if a in addr else a
                      for a, b in up.servers) or "(no servers)"
    verdict = Verdict.FAIL if missing else Verdict.WARN if unknown else Verdict.OK
    current = names + (f"; missing {', '.join(missing)}" if missing else "") + (
        f"; not a node: {', '.join(unknown)}" if unknown else "")
    rows = [_row(host, f"upstream {up.name} members", current,
                 "every node: " + ", ".join(n.name for n in nodes), verdict,
                 " ".join(f"server {a};" for a in missing), where)]
    backups = [addr[a].name if a in addr else a for a, b in up.servers if b]
    if not backups:
        rows.append(_row(host, f"upstream {up.name} backup", "none (all active)",
                         "actives serve, backups on failover", Verdict.OK))
    else:
        refused = up.method in BACKUP_REFUSED
        all_backup = all(b for _, b in up.servers)
        verdict = Verdict.FAIL if refused or all_backup else Verdict.OK
        why = (f"; nginx refuses backup with {up.method}" if refused
               else "; no active server" if all_backup else "")
        rows.append(_row(host, f"upstream {up.name} backup", f"backup: {', '.join(backups)}{why}",
                         "actives serve, backups on failover", verdict,
                         f"remove '{up.method};' (or the backup flag)" if refused
                         else "make one server active (drop 'backup')", where))
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


def _check_timeouts(host: str, files: Mapping[str, str]) -> list[Row]:
    rows, seen = [], set()
    for s in find_nginx_settings(files):
        if s.param not in ("nginx.proxy_read_timeout", "nginx.proxy_send_timeout"):
            continue
        directive = s.param.split(".", 1)[1]
        if (directive, s.file, s.line) in seen:
            continue
        seen.add((directive, s.file, s.line))
        seconds = nginx_seconds(str(s.value))
        verdict = Verdict.OK if seconds is not None and seconds >= GUIDE_TIMEOUT_S else Verdict.WARN
        current = f"{s.value}{' (default)' if s.default else ''}"
        rows.append(_row(host, f"{directive} ({s.file}:{s.line})", current,
                         f"≥ {GUIDE_TIMEOUT} (the guide)", verdict,
                         f"{directive} {GUIDE_TIMEOUT};", f"{s.file}:{s.line}"))
    return rows


def check_nginx(lb: LoadBalancer, nodes: tuple[Node, ...],
                files: Mapping[str, str | None]) -> list[Row]:
    """Every nginx row: files readable and valid, the three vhosts, their upstreams, the
    console target, keepalive and the proxy timeouts."""
    host = f"{lb.host} (lb)"
    rows = [_row(host, f"file {name}", "(missing)", "readable", Verdict.FAIL,
                 "fix load_balancer.conf / vhost_files in cluster.toml")
            for name, text in files.items() if text is None]
    present = {name: text for name, text in files.items() if text is not None}
    try:
        vhosts, upstreams = parse_nginx(present)
    except EiperfError as e:
        return [*rows, _row(host, "nginx config", f"({e})", "valid", Verdict.FAIL)]
    by_name = {u.name: u for u in upstreams}
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
        rows.append(row)
        if vhost is None:
            continue
        for url in vhost.proxy_passes:
            scheme, target = _upstream_name(url)
            if label == "ui.ei.https":
                consoles = {f"{n.host}:{n.console_port}": n.name for n in nodes}
                rows.append(_row(host, "console target", target,
                                 "a node's console: " + ", ".join(consoles),
                                 Verdict.OK if target in consoles else Verdict.WARN,
                                 f"proxy_pass https://{next(iter(consoles))}/;",
                                 f"{vhost.file}:{vhost.line}"))
            elif target in by_name:
                port_of = "https_port" if scheme == "https" else "http_port"
                rows += _check_upstream(host, by_name[target], nodes, port_of)
    return rows + _check_timeouts(host, present)
