"""The nginx editor against the real nginx: edited guide vhosts and the testbed's own config
pass `nginx -t` (in a private prefix, touching nothing outside the test's folder)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from tests.tuning.test_nginx_conf import GUIDE, NGINX, changed_lines, edit_one, fixture
from tuning.nginx_conf import apply_nginx_changes, read_nginx_settings

needs_nginx = pytest.mark.skipif(
    NGINX is None or shutil.which("openssl") is None, reason="needs nginx and openssl"
)


# ---- the real nginx agrees ---------------------------------------------------------------------


def nginx_test(tmp_path: Path, vhosts: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on `vhosts` included from a private main config (nothing outside tmp_path)."""
    assert NGINX is not None
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    if not (conf / "server.crt").exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=ei.wso2.com",
                "-keyout",
                str(conf / "server.key"),
                "-out",
                str(conf / "server.crt"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    for name, text in vhosts.items():
        text = text.replace("/etc/nginx/ssl/", f"{conf}/").replace(
            "/var/log/nginx/", f"{tmp_path}/logs/"
        )
        (conf / name).write_text(text)
    temp = " ".join(
        f"{k}_temp_path {tmp_path}/{k};"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (conf / "nginx.conf").write_text(
        f"pid {tmp_path}/logs/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events {\n    worker_connections 64;\n}\n"
        f"http {{\n    access_log off;\n    {temp}\n"
        + "".join(f"    include {conf / name};\n" for name in vhosts)
        + "}\n"
    )
    return subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_nginx
def test_edited_guide_vhosts_pass_nginx_t_without_warnings(tmp_path):
    vhosts = {name: fixture(name) for name in GUIDE[1:]}
    assert nginx_test(tmp_path, vhosts).returncode == 0
    changes = {
        "nginx.proxy_read_timeout": "60s",
        "nginx.proxy_connect_timeout": "5s",
        "nginx.upstream_keepalive": 16,
        "nginx.lb_method": "least_conn",
        "nginx.max_fails": 3,
        "nginx.fail_timeout": "30s",
    }
    edited = {k: e.new_text for k, e in apply_nginx_changes(vhosts, changes).items()}
    result = nginx_test(tmp_path, edited)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


@needs_nginx
def test_nginx_warns_on_the_order_the_editor_avoids(tmp_path):
    misordered = "upstream u {\n    server 127.0.0.1:1;\n    keepalive 16;\n    ip_hash;\n}\n"
    assert "load balancing method redefined" in nginx_test(tmp_path, {"u.conf": misordered}).stderr
    fixed = edit_one("u.conf", {"nginx.lb_method": "least_conn"}, misordered)
    result = nginx_test(tmp_path, {"u.conf": fixed})
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr


@needs_nginx
def test_nginx_agrees_on_the_contexts_and_pairs_the_editor_keeps(tmp_path):
    """A timeout inside `if` and ip_hash/hash/random beside a backup server are what nginx
    refuses; the editor's placement of the timeout in the enclosing location passes."""
    text = fixture("ei.http.if.conf")
    inside_if = text.replace("break;", "break;\n            proxy_read_timeout 30s;")
    refused = nginx_test(tmp_path, {"ei.http.conf": inside_if})
    assert '"proxy_read_timeout" directive is not allowed here' in refused.stderr
    edited = edit_one("ei.http.conf", {"nginx.proxy_read_timeout": "30s"}, text)
    result = nginx_test(tmp_path, {"ei.http.conf": edited})
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr
    for method in ("ip_hash;", "hash $remote_addr consistent;", "random two least_conn;"):
        upstream = (f"upstream u {{\n    {method}\n    server 127.0.0.1:1;\n"
                    "    server 127.0.0.1:2 backup;\n}\n")
        result = nginx_test(tmp_path, {"u.conf": upstream})
        assert 'balancing method does not support parameter "backup"' in result.stderr, method


# ---- the testbed's own nginx config --------------------------------------------------------------


def render_testbed(prefix: Path) -> dict[str, str]:
    """The testbed's nginx templates rendered for a two-node cluster under `prefix`."""
    templates = Path(__file__).parents[2] / "testbed" / "templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), keep_trailing_newline=True)
    node = {"host": "127.0.0.1", "http_port": 8280, "https_port": 8243, "console_port": 9443}
    nodes = [node, {**node, "http_port": 8281, "https_port": 8244, "console_port": 9444}]
    values = {
        "prefix": str(prefix),
        "worker_processes": 2,
        "status_port": 18081,
        "nodes": nodes,
        "listen_host": "127.0.0.1",
        "http_port": 18080,
        "https_port": 18443,
        "host_name": "ei.wso2.com",
        "console_host_name": "ui.ei.wso2.com",
        "console_node": node,
        "upstream_header": "X-EI-Node",
    }
    return {name: env.get_template(name + ".j2").render(**values) for name in GUIDE}


ALL_CHANGES = {
    "nginx.proxy_read_timeout": "60s",
    "nginx.proxy_send_timeout": "30s",
    "nginx.proxy_connect_timeout": "5s",
    "nginx.upstream_keepalive": 32,
    "nginx.lb_method": "least_conn",
    "nginx.max_fails": 2,
    "nginx.fail_timeout": "20s",
    "nginx.worker_processes": "auto",
    "nginx.worker_connections": 2048,
}


def test_the_testbed_config_is_read_and_edited(tmp_path):
    files = render_testbed(tmp_path)
    settings = read_nginx_settings(files)
    assert settings["nginx.proxy_read_timeout"] == "5m"
    assert settings["nginx.worker_processes"] == 2
    assert settings["nginx.lb_method"] == ["round_robin", "ip_hash"]
    edits = apply_nginx_changes(files, ALL_CHANGES)
    after = read_nginx_settings({k: e.new_text for k, e in edits.items()})
    assert after == {k: v for k, v in ALL_CHANGES.items()}
    # Only the lines of the changed or added directives appear in the diffs.
    for name, edit in edits.items():
        removed, added = changed_lines(edit.diff)
        touched = {
            "proxy_read_timeout",
            "proxy_send_timeout",
            "proxy_connect_timeout",
            "keepalive",
            "least_conn",
            "ip_hash",
            "server",
            "worker_processes",
            "worker_connections",
        }
        assert {line.split()[0].rstrip(";") for line in removed + added} <= touched, name


@needs_nginx
def test_the_edited_testbed_config_passes_nginx_t(tmp_path):
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(ssl / "server.key"),
            "-out",
            str(ssl / "server.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shutil.copy(ssl / "server.crt", ssl / "ca.crt")
    for folder in ("logs", "conf", "temp"):
        (tmp_path / folder).mkdir()
    edits = apply_nginx_changes(render_testbed(tmp_path), ALL_CHANGES)
    for name, edit in edits.items():
        (tmp_path / "conf" / name).write_text(edit.new_text)
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", "conf/nginx.conf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


@needs_nginx
def test_nginx_refuses_ip_hash_beside_backup_and_takes_the_editors_changes(tmp_path):
    """The http side of a main nginx.conf with `backup` servers: why ip_hash is refused."""
    text = fixture("nginx-stream.conf")
    vhost = text[text.index("    upstream ei_http") : text.rindex("}")]
    assert nginx_test(tmp_path, {"ei.conf": vhost}).returncode == 0
    ip_hash = vhost.replace("least_conn;", "ip_hash;")
    refused = nginx_test(tmp_path, {"ei.conf": ip_hash})
    assert 'balancing method does not support parameter "backup"' in refused.stderr
    changes = {k: v for k, v in ALL_CHANGES.items() if not k.startswith("nginx.worker_")}
    edited = apply_nginx_changes({"ei.conf": vhost}, changes)["ei.conf"].new_text
    result = nginx_test(tmp_path, {"ei.conf": edited})
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr
