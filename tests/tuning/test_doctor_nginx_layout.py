"""The doctor's nginx area on a Debian-shaped /etc/nginx in tmp_path, read over the local
transport from nginx.conf alone (the cluster file names no vhost): `include` globs
(`conf.d/*.conf`, `sites-enabled/*`, `stream.d/*.conf`), relative includes, vhosts symlinked
from sites-available, a snippet included inside a `location` (checked in that context),
upstreams in a CRLF file with `backup` members in the HTTP, console and `stream {}` upstreams.
One table of (check, breakage, verdict): each breakage fails for its own reason; the layout
as written passes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from eicore.cluster import LoadBalancer, Node
from eicore.transport import LocalTransport
from tuning.doctor.facts import gather_nginx
from tuning.doctor.nginx_checks import check_nginx
from tuning.doctor.row import Verdict

NODES = (Node("node1", "10.0.1.11", "/opt/ei"), Node("node2", "10.0.1.12", "/opt/ei"))

NGINX_CONF = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
include {etc}/modules-enabled/*.conf;

events {{
\tworker_connections 768;
}}

http {{
\tsendfile on;
\tinclude mime.types;
\tdefault_type application/octet-stream;
\tinclude {etc}/conf.d/*.conf;
\tinclude {etc}/sites-enabled/*;
}}

stream {{
\tinclude stream.d/*.conf;
}}
"""
FILES = {
    "mime.types": "types {\n    text/html  html htm;\n    text/xml   xml;\n}\n",
    "modules-enabled/50-mod-stream.conf":
        "load_module modules/ngx_stream_module.so;\n",
    # upstreams of their own, CRLF (edited on Windows), a backup member in two of them
    "conf.d/upstreams.conf": (
        "upstream ei_http {\r\n"
        "    server 10.0.1.11:8280 max_fails=3 fail_timeout=30s;\r\n"
        "    server 10.0.1.12:8280 backup;   # passive until node1 is down\r\n"
        "    keepalive 32;\r\n"
        "}\r\n"
        "upstream ei_https {\r\n"
        "    ip_hash;\r\n"
        "    server 10.0.1.11:8243;\r\n"
        "    server 10.0.1.12:8243;\r\n"
        "}\r\n"
        "upstream ei_console {\r\n"
        "    server 10.0.1.11:9443;\r\n"
        "    server 10.0.1.12:9443 backup;\r\n"
        "}\r\n"),
    # not matched by conf.d/*.conf: nginx never reads it, nor does the doctor
    "conf.d/old-upstreams.conf.disabled": "upstream ei_http { server 10.9.9.9:1 backup }",
    "snippets/proxy.conf": (
        "proxy_set_header X-Forwarded-Host $host;\n"
        "proxy_set_header X-Forwarded-Server $host;\n"
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "proxy_set_header Host $http_host;\n"
        "proxy_read_timeout 5m;\n"
        "proxy_send_timeout 5m;\n"
        "proxy_http_version 1.1;\n"
        "proxy_set_header Upgrade $http_upgrade;\n"
        'proxy_set_header Connection "upgrade";\n'
        "proxy_redirect off;\n"),
    # a location-only directive: valid only because it is included inside a location
    "snippets/status.conf": "stub_status;\nallow 127.0.0.1;\ndeny all;\ninternal;\n",
    "sites-available/ei.http.conf": (
        "server {\n    listen 80;\n    server_name ei.wso2.com;\n"
        "    location / {\n        include snippets/proxy.conf;\n"
        "        proxy_pass http://ei_http;\n    }\n"
        "    location = /nginx_status {\n        include snippets/status.conf;\n    }\n}\n"),
    "sites-available/ei.https.conf": (
        "server {\n    listen 443 ssl;\n    server_name ei.wso2.com;\n"
        "    ssl_certificate /etc/nginx/ssl/server.crt;\n"
        "    ssl_certificate_key /etc/nginx/ssl/server.key;\n"
        "    location / {\n        include snippets/proxy.conf;\n"
        "        proxy_pass https://ei_https;\n    }\n}\n"),
    "sites-available/ui.ei.https.conf": (
        "server {\n    listen 443 ssl;\n    server_name ui.ei.wso2.com;\n"
        "    ssl_certificate /etc/nginx/ssl/server.crt;\n"
        "    ssl_certificate_key /etc/nginx/ssl/server.key;\n"
        "    location / {\n        include snippets/proxy.conf;\n"
        "        proxy_pass https://ei_console/;\n    }\n}\n"),
    "sites-available/default": "server {\n    listen 8080 default_server;\n    return 444;\n}\n",
    "stream.d/mllp.conf": (
        "upstream ei_mllp {\n    server 10.0.1.11:9292 max_fails=2;\n"
        "    server 10.0.1.12:9292 backup;\n}\n"
        "server {\n    listen 9292;\n    proxy_pass ei_mllp;\n    proxy_timeout 3m;\n}\n"),
}
ENABLED = ("ei.http.conf", "ei.https.conf", "ui.ei.https.conf")


def _layout(root: Path) -> LoadBalancer:
    etc = root / "etc" / "nginx"
    (etc / "sites-enabled").mkdir(parents=True)
    (etc / "nginx.conf").write_text(NGINX_CONF.format(etc=etc))
    for name, text in FILES.items():
        path = etc / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    for name in ENABLED:
        os.symlink(f"../sites-available/{name}", etc / "sites-enabled" / name)
    (etc / "sites-enabled" / ".ei.http.conf.swp").write_text("not nginx {")  # vim's: not matched
    return LoadBalancer("http://lb", "https://lb", "https://lb", host="10.0.1.1",
                        conf=str(etc / "nginx.conf"))


def _rows(lb: LoadBalancer) -> dict[str, object]:
    facts = gather_nginx(LocalTransport(), lb)
    assert facts.error is None
    return {r.check: r for r in check_nginx(lb, NODES, facts.files, facts.contexts,
                                            facts.included_by, facts.includes)}


def test_the_layout_passes_with_every_include_followed(tmp_path):
    lb = _layout(tmp_path)
    facts = gather_nginx(LocalTransport(), lb)
    etc = tmp_path / "etc" / "nginx"
    names = set(facts.files)
    assert {str(etc / "sites-enabled" / n) for n in ENABLED} <= names
    assert str(etc / "conf.d" / "upstreams.conf") in names
    assert str(etc / "snippets" / "status.conf") in names  # relative, from nginx.conf's folder
    assert not any(n.endswith((".disabled", ".swp")) for n in names)
    assert facts.contexts[str(etc / "snippets" / "status.conf")] == ("http", "location")  # crossplane's
    assert facts.contexts[str(etc / "stream.d" / "mllp.conf")] == ("stream",)
    by = _rows(lb)
    bad = {k: r for k, r in by.items() if r.verdict in (Verdict.FAIL,)}
    assert not bad, bad
    assert by["vhost ei.https (ei.wso2.com, https)"].current.startswith(
        str(etc / "sites-enabled" / "ei.https.conf"))
    assert by["upstream ei_http members"].current == "node1, node2 (backup)"
    assert by["upstream ei_http backup"].current == "backup: node2"
    assert by["upstream ei_console members"].verdict is Verdict.OK
    assert by["upstream ei_console backup"].current == "backup: node2"
    assert by["stream upstream ei_mllp backup"].verdict is Verdict.OK
    assert "console target" not in by  # an upstream of consoles, checked as one
    timeouts = [r for k, r in by.items() if k.startswith("proxy_read_timeout")]
    assert timeouts and all(r.verdict is Verdict.OK and "snippets/proxy.conf" in r.check
                            for r in timeouts)


def _edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(etc: Path) -> None:
        path = etc / name
        text = path.read_bytes().decode()
        assert old in text, old
        path.write_bytes(text.replace(old, new, 1).encode())
    return edit


def _unlink(name: str) -> Callable[[Path], None]:
    return lambda etc: (etc / name).unlink()


def _both(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(etc: Path) -> None:
        for e in edits:
            e(etc)
    return edit


def _dangling(etc: Path) -> None:
    os.symlink("../sites-available/gone.conf", etc / "sites-enabled" / "gone.conf")


def _no_glob(etc: Path) -> None:
    shutil.move(etc / "conf.d" / "upstreams.conf", etc / "conf.d" / "upstreams.conf.bak")


#: (id, breakage of the layout, check, verdict)
BROKEN = [
    ("https-vhost-unlinked", _unlink("sites-enabled/ei.https.conf"),
     "vhost ei.https (ei.wso2.com, https)", Verdict.FAIL),
    ("dangling-vhost-link", _dangling, "file {etc}/sites-enabled/gone.conf", Verdict.FAIL),
    ("upstreams-file-outside-the-glob", _no_glob, "vhost ei.http (ei.wso2.com, http)",
     Verdict.OK),  # the vhost stays; its upstream is gone: no members row at all
    ("http-upstream-misses-a-node", _edit("conf.d/upstreams.conf",
                                          "    server 10.0.1.12:8280 backup;", ""),
     "upstream ei_http members", Verdict.FAIL),
    ("console-upstream-all-backup", _edit("conf.d/upstreams.conf",
                                          "10.0.1.11:9443;", "10.0.1.11:9443 backup;"),
     "upstream ei_console backup", Verdict.FAIL),
    ("console-upstream-names-no-node", _edit("conf.d/upstreams.conf", "    server 10.0.1.11:9443;\r\n"
                                             "    server 10.0.1.12:9443 backup;",
                                             "    server 10.0.9.9:9443;"),
     "upstream ei_console members", Verdict.FAIL),
    ("https-backup-beside-ip_hash", _edit("conf.d/upstreams.conf", "10.0.1.12:8243;",
                                          "10.0.1.12:8243 backup;"),
     "upstream ei_https backup", Verdict.FAIL),
    ("stream-upstream-all-backup", _edit("stream.d/mllp.conf", "9292 max_fails=2;",
                                         "9292 backup;"),
     "stream upstream ei_mllp backup", Verdict.FAIL),
    ("snippet-timeout-short", _edit("snippets/proxy.conf", "proxy_read_timeout 5m",
                                    "proxy_read_timeout 60s"),
     "proxy_read_timeout ({etc}/snippets/proxy.conf:5)", Verdict.WARN),
    ("timeout-inherited-from-nginx.conf",
     _both(_edit("snippets/proxy.conf", "proxy_read_timeout 5m;\n", ""),
           _edit("nginx.conf", "\tsendfile on;\n", "\tsendfile on;\n\tproxy_read_timeout 30s;\n")),
     "proxy_read_timeout ({etc}/nginx.conf:12)", Verdict.WARN),
    ("timeout-default-when-set-nowhere", _edit("snippets/proxy.conf", "proxy_read_timeout 5m;\n", ""),
     "proxy_read_timeout ({etc}/sites-enabled/ei.http.conf:4)", Verdict.WARN),
    ("location-snippet-in-http", _edit("nginx.conf", "\tsendfile on;\n",
                                       "\tsendfile on;\n\tinclude snippets/status.conf;\n"),
     "nginx config", Verdict.FAIL),  # `internal` outside a location: nginx refuses it
]


@pytest.mark.parametrize(("breakage", "check", "verdict"),
                         [pytest.param(*b[1:], id=b[0]) for b in BROKEN])
def test_a_broken_layout_is_caught(tmp_path, breakage, check, verdict):
    lb = _layout(tmp_path)
    etc = tmp_path / "etc" / "nginx"
    check = check.format(etc=etc)
    before = _rows(lb)
    breakage(etc)
    after = _rows(lb)
    assert check in after, sorted(after)
    assert after[check].verdict is verdict, after[check]
    if check in before:
        assert before[check].verdict is Verdict.OK or before[check].verdict is verdict
    if verdict is not Verdict.OK:
        assert check not in before or before[check].verdict is Verdict.OK
    if breakage is _no_glob:
        assert not any(k.startswith("upstream ei_http") for k in after)


def test_tls_passed_through_by_stream_stands_for_the_https_vhost(tmp_path):
    """No HTTPS vhost; a stream {} server passes TLS through to an upstream of the nodes'
    HTTPS ports, node2 in reserve: the vhost's row is ok and names the stream server, the
    stream upstream is checked for members and backup; with node2 gone from it, it fails."""
    lb = _layout(tmp_path)
    etc = tmp_path / "etc" / "nginx"
    (etc / "sites-enabled" / "ei.https.conf").unlink()
    tls = etc / "stream.d" / "tls.conf"
    tls.write_bytes(b"upstream ei_tls {\r\n    server 10.0.1.11:8243;\r\n"
                    b"    server 10.0.1.12:8243 backup;\r\n}\r\n"
                    b"server {\r\n    listen 443;\r\n    proxy_pass ei_tls;\r\n}\r\n")
    by = _rows(lb)
    row = by["vhost ei.https (ei.wso2.com, https)"]
    assert row.verdict is Verdict.OK and row.current.startswith(
        f"stream {{}} passes TLS through: {tls}:5"), row
    assert by["stream upstream ei_tls members"].current == "node1, node2 (backup)"
    assert by["stream upstream ei_tls backup"].verdict is Verdict.OK
    assert not any(k.startswith("stream upstream ei_tls keepalive") for k in by)
    tls.write_bytes(tls.read_bytes().replace(b"    server 10.0.1.12:8243 backup;\r\n", b""))
    assert _rows(lb)["stream upstream ei_tls members"].verdict is Verdict.FAIL
