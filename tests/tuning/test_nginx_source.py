"""One nginx config file as crossplane parses it, edited in place line by line."""

from __future__ import annotations

import pytest

from tuning.edit import EditorError
from tuning.nginx_source import NginxSource, child, walk

VHOST = """upstream u {
    server a:1;  # first
}
server {
    listen 80;
    location / { proxy_set_header X "a;b"; proxy_pass http://u; }
}
"""


def test_statements_lines_and_blocks():
    src = NginxSource("v.conf", VHOST)
    assert [(s.directive, s.line) for s in walk(src.stmts)] == [
        ("upstream", 1),
        ("server", 2),
        ("server", 4),
        ("listen", 5),
        ("location", 6),
        ("proxy_set_header", 6),
        ("proxy_pass", 6),
    ]
    up = child(src.stmts, "upstream")
    assert up is not None and (up.open_line, up.end_line) == (1, 3)
    header = child(child(child(src.stmts, "server").block, "location").block, "proxy_set_header")
    assert (
        header is not None and header.args == ["X", "a;b"] and header.parent.directive == "location"
    )


@pytest.mark.parametrize(
    ("text", "is_main"),
    [
        ("events {\n}\nhttp {\n}\n", True),
        ("worker_processes 1;\n", True),
        ("upstream u {\n    server a:1;\n}\n", False),  # a vhost, included from http
        ("location / {\n    proxy_pass http://u;\n}\n", False),  # a snippet, included in a server
    ],
)
def test_main_config_or_included_file(text, is_main):
    assert NginxSource("f.conf", text).is_main is is_main


def test_directives_are_checked_in_the_context_of_an_included_file():
    # upstream and server stand at the top of a vhost file: allowed, since nginx.conf
    # includes it inside http; in a main nginx.conf the same text is an error.
    NginxSource("ei.http.conf", "upstream u {\n    server a:1;\n}\n")
    with pytest.raises(
        EditorError, match=r'^main.conf:3: "upstream" directive is not allowed here'
    ):
        NginxSource("main.conf", "events {\n}\nupstream u {\n    server a:1;\n}\n")


def test_in_place_edits_keep_everything_else():
    src = NginxSource("v.conf", VHOST)
    server = child(child(src.stmts, "upstream").block, "server")
    src.set_param(server, "max_fails", "3")
    pass_ = child(child(child(src.stmts, "server").block, "location").block, "proxy_pass")
    src.set_args(pass_, ["http://v"])
    up = child(src.stmts, "upstream")
    src.insert_after(server.end_line, up, "keepalive", ["8"])
    assert src.render() == VHOST.replace("a:1;", "a:1 max_fails=3;").replace(
        "http://u;", "http://v;"
    ).replace("# first\n", "# first\n    keepalive 8;\n")


def test_delete_keeps_neighbours_on_the_line():
    src = NginxSource("v.conf", VHOST)
    header = child(child(child(src.stmts, "server").block, "location").block, "proxy_set_header")
    src.delete(header)
    assert src.render() == VHOST.replace('proxy_set_header X "a;b"; ', "")
    server = child(child(src.stmts, "upstream").block, "server")
    src.delete(server)  # alone on its line with a comment: the line goes
    assert "server a:1" not in src.render() and "upstream u {\n}\n" in src.render()


def test_variables_in_braces_are_one_token():
    src = NginxSource("v.conf", 'server {\n    set $a "${b}c";\n    return 200 ${a}x;\n}\n')
    ret = child(child(src.stmts, "server").block, "return")
    src.set_args(ret, ["204", "${a}y"])
    assert "    return 204 ${a}y;\n" in src.render()
