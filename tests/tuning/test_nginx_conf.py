"""The nginx editor: guide-shaped vhosts and nginx.conf, in-place edits, real `nginx -t` checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuning.edit import EditorError, split_lines
from tuning.nginx_conf import (
    NginxSetting,
    apply_nginx_changes,
    find_nginx_settings,
    read_nginx_settings,
)
from tuning.params import ParameterError

FIXTURES = Path(__file__).parent / "fixtures"
GUIDE = ["nginx.conf", "ei.http.conf", "ei.https.conf", "ui.ei.https.conf"]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


def guide_files() -> dict[str, str]:
    return {name: fixture(name) for name in GUIDE}


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff, without their +/- and line ends."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return (
        [line[1:].rstrip("\r") for line in body if line.startswith("-")],
        [line[1:].rstrip("\r") for line in body if line.startswith("+")],
    )


def edit_one(name: str, changes: dict[str, object], text: str | None = None) -> str:
    """The new text of one file after `changes`."""
    return apply_nginx_changes({name: fixture(name) if text is None else text}, changes)[
        name
    ].new_text


# ---- reading --------------------------------------------------------------------------------


def test_reads_the_guides_settings():
    assert read_nginx_settings(guide_files()) == {
        "nginx.proxy_read_timeout": "5m",
        "nginx.proxy_send_timeout": "5m",
        "nginx.proxy_connect_timeout": "60s",  # not set: nginx's default
        "nginx.upstream_keepalive": 0,
        "nginx.lb_method": ["round_robin", "ip_hash"],  # http and https upstreams differ
        "nginx.max_fails": 1,
        "nginx.fail_timeout": "10s",
        "nginx.worker_processes": "auto",
        "nginx.worker_connections": 768,
    }


def test_settings_say_where_they_come_from():
    settings = find_nginx_settings({"ei.https.conf": fixture("ei.https.conf")})
    assert NginxSetting("nginx.proxy_read_timeout", "ei.https.conf", 19, "5m") in settings
    assert NginxSetting("nginx.lb_method", "ei.https.conf", 5, "ip_hash") in settings
    assert NginxSetting("nginx.proxy_connect_timeout", "ei.https.conf", 14, "60s", True) in settings


def test_without_a_main_conf_worker_settings_are_unknown():
    settings = read_nginx_settings({"ei.http.conf": fixture("ei.http.conf")})
    assert settings["nginx.worker_processes"] is None
    assert settings["nginx.worker_connections"] is None
    assert settings["nginx.upstream_keepalive"] == 0


def test_an_enclosing_server_and_nginx_defaults_are_read():
    text = (
        "upstream u {\n    server 10.0.0.1:8280 max_fails=3 fail_timeout=30s;\n    server 10.0.0.2:8280;\n"
        "    least_conn;\n    keepalive 32;\n}\n"
        "server {\n    proxy_read_timeout 2m;\n    location / {\n        proxy_pass http://u;\n    }\n}\n"
    )
    settings = read_nginx_settings({"lb.conf": text})
    assert settings["nginx.proxy_read_timeout"] == "2m"
    assert settings["nginx.max_fails"] == [3, 1]
    assert settings["nginx.fail_timeout"] == ["30s", "10s"]
    assert settings["nginx.lb_method"] == "least_conn"
    assert settings["nginx.upstream_keepalive"] == 32


# ---- editing: unchanged bytes, minimal diffs -------------------------------------------------


def test_no_change_and_same_values_return_identical_bytes():
    files = guide_files() | {"ei.http.crlf.conf": fixture("ei.http.crlf.conf")}
    for changes in (
        {},
        {
            "nginx.proxy_read_timeout": "5m",
            "nginx.worker_processes": "auto",
            "nginx.worker_connections": 768,
        },
    ):
        edits = apply_nginx_changes(files, changes)
        for name, edit in edits.items():
            assert edit.new_text == files[name] and edit.diff == "" and not edit.changed


def test_a_timeout_changes_one_line_in_each_vhost():
    edits = apply_nginx_changes(guide_files(), {"nginx.proxy_read_timeout": "60s"})
    assert not edits["nginx.conf"].changed
    for name in ("ei.http.conf", "ei.https.conf", "ui.ei.https.conf"):
        assert changed_lines(edits[name].diff) == (
            ["               proxy_read_timeout 5m;"],
            ["               proxy_read_timeout 60s;"],
        )
    http = edits["ei.http.conf"].diff
    assert http.startswith("--- a/ei.http.conf\n+++ b/ei.http.conf\n@@ -11,7 +11,7 @@\n")


def test_a_missing_timeout_is_added_next_to_its_siblings():
    edits = apply_nginx_changes(guide_files(), {"nginx.proxy_connect_timeout": "5s"})
    for name in ("ei.http.conf", "ei.https.conf", "ui.ei.https.conf"):
        assert changed_lines(edits[name].diff) == ([], ["               proxy_connect_timeout 5s;"])
        lines = split_lines(edits[name].new_text)
        at = lines.index("               proxy_connect_timeout 5s;\n")
        assert lines[at - 1].strip() == "proxy_send_timeout 5m;"
        assert lines[at + 1].strip().startswith("proxy_pass ")
    back = apply_nginx_changes(
        {k: e.new_text for k, e in edits.items()}, {"nginx.proxy_connect_timeout": None}
    )
    assert {k: e.new_text for k, e in back.items()} == guide_files()


def test_a_timeout_without_siblings_goes_before_proxy_pass():
    text = "server {\n  listen 80;\n  location /a {\n    proxy_set_header Host $host;\n    proxy_pass http://b;\n  }\n}\n"
    new = edit_one("a.conf", {"nginx.proxy_read_timeout": "30s"}, text)
    assert new == text.replace("    proxy_pass", "    proxy_read_timeout 30s;\n    proxy_pass")


def test_a_timeout_set_on_the_server_is_changed_there():
    text = "server {\n    proxy_read_timeout 2m;\n    location / { proxy_pass http://u; }\n    location /b { proxy_pass http://u; }\n}\n"
    new = edit_one("a.conf", {"nginx.proxy_read_timeout": "3m"}, text)
    assert new == text.replace("2m", "3m")
    removed = edit_one("a.conf", {"nginx.proxy_read_timeout": None}, text)
    assert removed == text.replace("    proxy_read_timeout 2m;\n", "")


def test_keepalive_goes_after_the_servers_and_the_balancing_method():
    edits = apply_nginx_changes(guide_files(), {"nginx.upstream_keepalive": 16})
    assert changed_lines(edits["ei.http.conf"].diff) == ([], ["        keepalive 16;"])
    assert (
        "        server 192.168.48.5:8280;\n        keepalive 16;\n}"
        in edits["ei.http.conf"].new_text
    )
    assert "    ip_hash;\n    keepalive 16;\n}" in edits["ei.https.conf"].new_text
    assert not edits["ui.ei.https.conf"].changed  # no upstream there
    again = apply_nginx_changes(
        {k: e.new_text for k, e in edits.items()}, {"nginx.upstream_keepalive": 64}
    )
    assert changed_lines(again["ei.http.conf"].diff) == (
        ["        keepalive 16;"],
        ["        keepalive 64;"],
    )
    off = apply_nginx_changes(
        {k: e.new_text for k, e in edits.items()}, {"nginx.upstream_keepalive": 0}
    )
    assert {k: e.new_text for k, e in off.items()} == guide_files()


def test_balancing_method_edits():
    files = guide_files()
    edits = apply_nginx_changes(files, {"nginx.lb_method": "least_conn"})
    # http: added first in the upstream; https: ip_hash replaced where it stands.
    assert changed_lines(edits["ei.http.conf"].diff) == ([], ["        least_conn;"])
    assert edits["ei.http.conf"].new_text.startswith(
        "upstream wso2.ei.com {\n        least_conn;\n"
    )
    assert changed_lines(edits["ei.https.conf"].diff) == (["    ip_hash;"], ["    least_conn;"])
    rr = apply_nginx_changes(
        {k: e.new_text for k, e in edits.items()}, {"nginx.lb_method": "round_robin"}
    )
    assert rr["ei.http.conf"].new_text == files["ei.http.conf"]
    assert changed_lines(rr["ei.https.conf"].diff) == (["    least_conn;"], [])
    assert (
        read_nginx_settings({k: e.new_text for k, e in rr.items()})["nginx.lb_method"]
        == "round_robin"
    )


def test_balancing_method_is_kept_before_keepalive():
    # nginx drops keepalive when a balancing method follows it ("load balancing method redefined").
    text = "upstream u {\n    server a:1;\n    keepalive 16;\n    ip_hash;\n}\n"
    assert edit_one("u.conf", {"nginx.lb_method": "least_conn"}, text) == (
        "upstream u {\n    least_conn;\n    server a:1;\n    keepalive 16;\n}\n"
    )
    assert edit_one("u.conf", {"nginx.upstream_keepalive": 32}, text) == (
        "upstream u {\n    server a:1;\n    ip_hash;\n    keepalive 32;\n}\n"
    )
    hashed = "upstream u {\n    hash $remote_addr consistent;\n    server a:1;\n}\n"
    assert edit_one("u.conf", {"nginx.lb_method": "ip_hash"}, hashed) == (
        "upstream u {\n    ip_hash;\n    server a:1;\n}\n"
    )


def test_max_fails_and_fail_timeout_on_every_server_line():
    changes = {"nginx.max_fails": 3, "nginx.fail_timeout": "30s"}
    edits = apply_nginx_changes(guide_files(), changes)
    assert changed_lines(edits["ei.http.conf"].diff) == (
        ["        server 192.168.48.4:8280;", "        server 192.168.48.5:8280;"],
        [
            "        server 192.168.48.4:8280 max_fails=3 fail_timeout=30s;",
            "        server 192.168.48.5:8280 max_fails=3 fail_timeout=30s;",
        ],
    )
    again = apply_nginx_changes({k: e.new_text for k, e in edits.items()}, {"nginx.max_fails": 0})
    assert (
        "server 192.168.48.4:8280 max_fails=0 fail_timeout=30s;" in again["ei.http.conf"].new_text
    )
    back = apply_nginx_changes(
        {k: e.new_text for k, e in edits.items()},
        {"nginx.max_fails": None, "nginx.fail_timeout": None},
    )
    assert {k: e.new_text for k, e in back.items()} == guide_files()
    weighted = "upstream u {\n  server a:1 weight=5 backup; # spare\n}\n"
    assert edit_one("u.conf", {"nginx.max_fails": 2}, weighted) == (
        "upstream u {\n  server a:1 weight=5 backup max_fails=2; # spare\n}\n"
    )


def test_worker_settings_in_nginx_conf_keep_its_tabs():
    edits = apply_nginx_changes(
        guide_files(), {"nginx.worker_processes": 2, "nginx.worker_connections": 4096}
    )
    assert changed_lines(edits["nginx.conf"].diff) == (
        ["worker_processes auto;", "\tworker_connections 768;"],
        ["worker_processes 2;", "\tworker_connections 4096;"],
    )
    assert [e.changed for n, e in edits.items() if n != "nginx.conf"] == [False, False, False]
    bare = (
        fixture("nginx.conf")
        .replace("worker_processes auto;\n", "")
        .replace("\tworker_connections 768;\n", "")
    )
    added = edit_one(
        "nginx.conf", {"nginx.worker_processes": 4, "nginx.worker_connections": 1024}, bare
    )
    assert added.startswith(
        "user www-data;\npid /run/nginx.pid;\ninclude /etc/nginx/modules-enabled/*.conf;\n"
        "worker_processes 4;\n\nevents {\n\tworker_connections 1024;\n\t# multi_accept on;\n"
    )
    removed = edit_one(
        "nginx.conf", {"nginx.worker_processes": None, "nginx.worker_connections": None}
    )
    assert removed == bare


def test_crlf_file_keeps_its_line_ends_and_other_bytes():
    text = fixture("ei.http.crlf.conf")
    assert text.count("\r\n") == text.count("\n")
    new = edit_one(
        "ei.http.crlf.conf",
        {
            "nginx.proxy_read_timeout": "90s",
            "nginx.upstream_keepalive": 8,
            "nginx.proxy_connect_timeout": "4s",
        },
    )
    assert new.count("\r\n") == new.count("\n")
    assert new == text.replace("proxy_read_timeout 5m;", "proxy_read_timeout 90s;").replace(
        "8280;\r\n}", "8280;\r\n        keepalive 8;\r\n}"
    ).replace(
        "send_timeout 5m;\r\n", "send_timeout 5m;\r\n               proxy_connect_timeout 4s;\r\n"
    )


def test_comments_quotes_and_neighbours_on_the_same_line_stay():
    text = (
        'server {\n  location / { proxy_set_header Connection "upgrade"; proxy_read_timeout 5m; # slow\n'
        "    proxy_pass http://u; }\n}\n"
    )
    new = edit_one("a.conf", {"nginx.proxy_read_timeout": "1m"}, text)
    assert new == text.replace("timeout 5m;", "timeout 1m;")
    removed = edit_one("a.conf", {"nginx.proxy_read_timeout": None}, text)
    assert removed == text.replace("proxy_read_timeout 5m; ", "")


def test_a_file_without_a_final_newline():
    text = "upstream u {\n    server a:1;\n}"
    assert (
        edit_one("u.conf", {"nginx.max_fails": 2}, text)
        == "upstream u {\n    server a:1 max_fails=2;\n}"
    )
    assert apply_nginx_changes({"u.conf": text}, {"nginx.max_fails": 2})["u.conf"].diff.endswith(
        "\\ No newline at end of file\n"
    )


# ---- errors: one clear line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "upstream u {\n    server a:1;\n",
            'bad.conf:2: unexpected end of file, expecting "}" (not a valid nginx config; fix it and retry)',
        ),
        (
            "server {\n    listen 80;\n}\n}\n",
            'bad.conf:4: unexpected "}" (not a valid nginx config; fix it and retry)',
        ),
        (
            "server {\n    keepalive 16;\n}\n",
            'bad.conf:2: "keepalive" directive is not allowed here (not a valid nginx config; fix it and retry)',
        ),
        (
            "server {\n    proxy_read_timeout 5m 6m;\n}\n",
            'bad.conf:2: invalid number of arguments in "proxy_read_timeout" directive '
            "(not a valid nginx config; fix it and retry)",
        ),
        (
            "worker_processes 2",
            'bad.conf:1: unexpected end of file, expecting ";" or "}" (not a valid nginx config; fix it and retry)',
        ),
        (
            'server {\n    proxy_set_header X "unterminated;\n}\n',
            'bad.conf:2: unexpected end of file, expecting "}" (not a valid nginx config; fix it and retry)',
        ),
    ],
)
def test_an_unparsable_config_names_file_line_and_reason(text, message):
    for call in (read_nginx_settings, lambda f: apply_nginx_changes(f, {"nginx.max_fails": 1})):
        with pytest.raises(EditorError) as info:
            call({"bad.conf": text})
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("files", "changes", "message"),
    [
        (
            ["ui.ei.https.conf"],
            {"nginx.upstream_keepalive": 16},
            "nginx.upstream_keepalive: no upstream block in ui.ei.https.conf",
        ),
        (
            ["nginx.conf"],
            {"nginx.proxy_read_timeout": "60s"},
            "nginx.proxy_read_timeout: no block proxies (proxy_pass) in nginx.conf",
        ),
        (
            ["ei.http.conf", "ui.ei.https.conf"],
            {"nginx.worker_processes": 2},
            "nginx.worker_processes: none of ei.http.conf, ui.ei.https.conf is a main nginx.conf "
            "(with an events or http block); add it to the files to change",
        ),
    ],
)
def test_a_parameter_with_no_place_to_go_is_refused(files, changes, message):
    with pytest.raises(EditorError) as info:
        apply_nginx_changes({name: fixture(name) for name in files}, changes)
    assert str(info.value) == message


def test_other_refusals():
    with pytest.raises(EditorError) as info:
        apply_nginx_changes(
            {"nginx.conf": "worker_processes 1;\nhttp {\n}\n"}, {"nginx.worker_connections": 9}
        )
    assert (
        str(info.value)
        == "nginx.worker_connections: nginx.conf has no events block; add 'events { }'"
    )
    with pytest.raises(EditorError) as info:
        apply_nginx_changes(
            {"u.conf": "upstream u {\n    server a:1\n        max_fails=2;\n}\n"},
            {"nginx.max_fails": 3},
        )
    assert str(info.value) == (
        "u.conf:2: 'server' goes on over several lines; put it on one line so it can be edited in place"
    )
    with pytest.raises(EditorError) as info:
        apply_nginx_changes(
            {"u.conf": "upstream u { server a:1; }\n"}, {"nginx.lb_method": "ip_hash"}
        )
    assert str(info.value) == (
        "u.conf:1: the 'upstream' block is on one line; put its braces on lines of their own so "
        "'ip_hash' can be added"
    )
    with pytest.raises(ParameterError, match=r"^jvm.xmx: not an nginx parameter"):
        apply_nginx_changes(guide_files(), {"jvm.xmx": "2g"})
    with pytest.raises(
        ParameterError, match=r"^nginx.proxy_read_timeout: '5 minutes' is not an nginx time"
    ):
        apply_nginx_changes(guide_files(), {"nginx.proxy_read_timeout": "5 minutes"})


# ---- what eiperf leaves alone: stream {} beside http {}, backup servers ----------------------

ALL = {
    "nginx.proxy_read_timeout": "30s",
    "nginx.proxy_send_timeout": "30s",
    "nginx.proxy_connect_timeout": "5s",
    "nginx.upstream_keepalive": 16,
    "nginx.lb_method": "least_conn",
    "nginx.max_fails": 5,
    "nginx.fail_timeout": "20s",
    "nginx.worker_processes": "auto",
    "nginx.worker_connections": 4096,
}


def test_stream_blocks_are_neither_read_nor_edited():
    text = fixture("nginx-stream.conf")
    settings = read_nginx_settings({"nginx.conf": text})
    assert settings["nginx.proxy_connect_timeout"] == "60s"  # not the MLLP proxy's 1s
    assert settings["nginx.max_fails"] == [3, 1]  # not the MLLP upstream's 2
    assert settings["nginx.upstream_keepalive"] == 32 and settings["nginx.lb_method"] == "least_conn"
    new = apply_nginx_changes({"nginx.conf": text}, ALL)["nginx.conf"].new_text
    stream = text[text.index("stream {") : text.index("http {")]
    assert stream in new
    assert read_nginx_settings({"nginx.conf": new}) == ALL
    # What nginx would refuse in a stream block (crossplane knows the contexts) is not there.
    for directive in ("proxy_read_timeout", "proxy_send_timeout", "keepalive", "ip_hash"):
        assert directive not in new[new.index("stream {") : new.index("http {")]


def test_ip_hash_is_refused_for_an_upstream_with_a_backup_server():
    text = fixture("nginx-stream.conf")
    with pytest.raises(EditorError) as info:
        apply_nginx_changes({"nginx.conf": text}, {"nginx.lb_method": "ip_hash"})
    assert str(info.value) == (
        "nginx.conf:42: upstream ei_http has a backup server, which nginx's ip_hash refuses; "
        "remove 'backup' there or use nginx.lb_method=least_conn (stream {} at nginx.conf:12 "
        "left alone: TCP/UDP, not these HTTP settings)"
    )
    backup = edit_one("nginx.conf", {"nginx.lb_method": "round_robin", "nginx.max_fails": 2}, text)
    assert "        server 10.0.1.13:8280 backup max_fails=2;   # DR node" in backup


def test_each_stream_block_left_alone_is_named_with_the_reason():
    text = fixture("nginx-stream.conf")
    edit = apply_nginx_changes({"nginx.conf": text}, ALL)["nginx.conf"]
    [note] = edit.notes
    assert note.startswith("nginx.conf:12: stream {} left alone: ")
    assert "TCP/UDP" in note and "proxy_read_timeout" in note and "by hand" in note
    # worker settings have nothing to do with stream: no note then
    only_workers = {"nginx.worker_processes": 2, "nginx.worker_connections": 512}
    assert apply_nginx_changes({"nginx.conf": text}, only_workers)["nginx.conf"].notes == ()


# ---- balancing methods nginx refuses beside a backup server: ip_hash, hash, random ----------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nginx.lb_method": "ip_hash"},
         "nginx.conf:29: upstream ei_sticky has a backup server, which nginx's ip_hash refuses; "
         "remove 'backup' there or use nginx.lb_method=least_conn"),
        # a change to the upstream keeps the file's own hash / random: judged as it would stand
        ({"nginx.max_fails": 2},
         "nginx.conf:29: upstream ei_sticky has a backup server, which nginx's hash refuses "
         "(its hash is on line 26); remove 'backup' there or use nginx.lb_method=least_conn"),
        ({"nginx.upstream_keepalive": 16},
         "nginx.conf:29: upstream ei_sticky has a backup server, which nginx's hash refuses "
         "(its hash is on line 26)"),
    ],
)
def test_ip_hash_hash_and_random_beside_backup_are_refused(changes, message):
    text = fixture("nginx-backup-methods.conf")
    with pytest.raises(EditorError) as info:
        apply_nginx_changes({"nginx.conf": text}, changes)
    assert str(info.value).startswith(message)
    assert str(info.value).endswith("(stream {} at nginx.conf:11 left alone: TCP/UDP, not these "
                                    "HTTP settings)")
    assert "\n" not in str(info.value)


def test_random_beside_backup_is_refused_too():
    text = fixture("nginx-backup-methods.conf").replace(
        "hash $cookie_JSESSIONID consistent;", "least_conn;")
    with pytest.raises(EditorError, match=r"^nginx.conf:36: upstream ei_random has a backup "
                       r"server, which nginx's random refuses \(its random is on line 33\)"):
        apply_nginx_changes({"nginx.conf": text}, {"nginx.fail_timeout": "5s"})


def test_a_method_that_allows_backup_replaces_hash_and_random():
    text = fixture("nginx-backup-methods.conf")
    for method in ("least_conn", "round_robin"):
        edit = apply_nginx_changes({"nginx.conf": text}, {"nginx.lb_method": method})["nginx.conf"]
        assert "hash $cookie" not in edit.new_text and "random two" not in edit.new_text
        assert edit.new_text.count("backup;") == 3  # the stream one too: left alone
    # settings that touch no upstream are not held up by the pairs there
    edit = apply_nginx_changes({"nginx.conf": text}, {"nginx.worker_processes": 4})["nginx.conf"]
    assert edit.changed


# ---- contexts: where nginx accepts each directive ------------------------------------------


def test_a_timeout_for_an_if_block_goes_in_its_location():
    text = fixture("ei.http.if.conf")
    edit = apply_nginx_changes({"ei.http.conf": text}, {"nginx.proxy_read_timeout": "30s"})[
        "ei.http.conf"]
    assert changed_lines(edit.diff) == (
        [], ["        proxy_read_timeout 30s;", "        proxy_read_timeout 30s;"])
    new = edit.new_text.splitlines()
    block = new[new.index("    location / {"): new.index("    location /services/ {")]
    assert block[1:3] == ["        root /var/www/ei-docs;", "        proxy_read_timeout 30s;"]
    assert not any("timeout" in line for line in block[3:])  # nothing inside the if
    assert edit.notes == (
        "ei.http.conf:13: proxy_read_timeout set in the enclosing location (line 11): nginx "
        "does not accept it inside 'if'",)
    assert read_nginx_settings({"ei.http.conf": edit.new_text})["nginx.proxy_read_timeout"] == "30s"
    back = apply_nginx_changes({"ei.http.conf": edit.new_text},
                               {"nginx.proxy_read_timeout": None})["ei.http.conf"]
    assert back.new_text == text


def test_keepalive_that_cannot_work_is_said_where():
    text = fixture("ei.http.if.conf")
    edit = apply_nginx_changes({"ei.http.conf": text}, {"nginx.upstream_keepalive": 16})[
        "ei.http.conf"]
    assert "    keepalive 16;" in edit.new_text
    assert [n.split(":")[1] for n in edit.notes] == ["13", "19"]  # the if, /services/
    assert "over HTTP/1.0 (no proxy_http_version 1.1) and with 'Connection: close'" in edit.notes[0]
    assert "nginx.upstream_keepalive does nothing for it" in edit.notes[1]
    # the guide's vhosts speak HTTP/1.1 with a Connection header: nothing to say
    guide = apply_nginx_changes(guide_files(), {"nginx.upstream_keepalive": 16})
    assert all(e.notes == () for e in guide.values())
    # one of two servers proxies over HTTP/1.0
    mixed = apply_nginx_changes({"nginx.conf": fixture("nginx-backup-methods.conf")},
                                {"nginx.upstream_keepalive": 8, "nginx.lb_method": "least_conn"})
    [stream, http10] = mixed["nginx.conf"].notes
    assert stream.startswith("nginx.conf:11: stream {}") and http10.startswith("nginx.conf:50: location / proxies to upstream ei_random")


def test_worker_connections_above_worker_rlimit_nofile_is_said():
    text = fixture("nginx-backup-methods.conf")
    edit = apply_nginx_changes({"nginx.conf": text}, {"nginx.worker_connections": 4096})[
        "nginx.conf"]
    assert edit.notes == (
        "nginx.conf:5: worker_connections 4096 is above worker_rlimit_nofile 2048: nginx warns "
        "that they exceed the open file limit and runs out of descriptors under load (a proxied "
        "request holds two); raise worker_rlimit_nofile to 8192 or more",)
    assert apply_nginx_changes({"nginx.conf": text}, {"nginx.worker_connections": 1024})[
        "nginx.conf"].notes == ()
