"""The editors on files shaped the odd ways real ones are: mixed CRLF/LF, no final newline, a
UTF-8 BOM, tabs, comments holding braces and directive names, quoted values, include globs with a
`stream {}` include, IPv6/unix/backup/down upstream servers, here-docs and escaped quotes in
integrator.sh, `!`/`:`/`\\uXXXX`/continuations in properties, CDATA/entities/attributes/nested
blocks in master-datasources.xml. Each case: it parses, the edit is right, setting the old value
back gives the original bytes, and what cannot be handled is refused in one line."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tuning.datasources_xml import DatasourcesEditor, read_pools
from tuning.edit import EditorError
from tuning.integrator_sh import apply_jvm_changes, read_jvm_options
from tuning.nginx_conf import apply_nginx_changes, read_nginx_settings, stream_notes
from tuning.nginx_source import NginxSource, included_contexts, includes
from tuning.passthru_properties import apply_passthru_changes, read_properties

FIXTURES = Path(__file__).parent / "fixtures"
ODD = FIXTURES / "odd"
NGINX_FILES = ["conf/nginx.conf", "conf/sites-enabled/ei.conf", "conf/stream.d/mllp.conf"]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def text_of(path: Path) -> str:
    return path.read_bytes().decode()


def nginx_files() -> dict[str, str]:
    return {name: text_of(ODD / name) for name in NGINX_FILES}


def refused(call, *args) -> str:
    """The one-line message of the EditorError `call(*args)` raises."""
    with pytest.raises(EditorError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---- nginx: an operator's layout (includes by glob, stream {} include, mixed line ends) -------


def test_the_odd_layout_is_read_as_nginx_would_apply_it():
    files = nginx_files()
    assert included_contexts(files) == {
        "conf/sites-enabled/ei.conf": ("http",), "conf/stream.d/mllp.conf": ("stream",)}
    assert read_nginx_settings(files) == {
        # "5m" (quoted) in the first server; the second inherits nginx.conf's http-level 90s
        "nginx.proxy_read_timeout": ["5m", "90s"],
        "nginx.proxy_send_timeout": "60s",
        "nginx.proxy_connect_timeout": "60s",  # not the MLLP stream proxy's 1s
        "nginx.upstream_keepalive": 0,  # not the "keepalive 99" in a comment
        "nginx.lb_method": "round_robin",  # not the stream upstream's hash
        "nginx.max_fails": [3, 1],  # not the stream upstream's 2
        "nginx.fail_timeout": ["30s", "10s"],
        "nginx.worker_processes": 2,
        "nginx.worker_connections": 1024,
    }
    assert stream_notes(files) == [
        "conf/stream.d/mllp.conf:2: stream {} not read: nginx.* parameters tune the HTTP "
        "proxying to EI, a stream block proxies raw TCP/UDP (nginx takes no proxy_read_timeout, "
        "proxy_send_timeout, keepalive or ip_hash there)"]


ODD_CHANGES = [
    ({"nginx.proxy_read_timeout": "30s"}, None),  # "5m" and 90s: no single value sets both back
    ({"nginx.upstream_keepalive": 16}, {"nginx.upstream_keepalive": None}),
    ({"nginx.lb_method": "least_conn"}, {"nginx.lb_method": "round_robin"}),
    ({"nginx.worker_processes": "auto", "nginx.worker_connections": 4096},
     {"nginx.worker_processes": 2, "nginx.worker_connections": 1024}),
    ({"nginx.fail_timeout": "20s"}, None),  # servers disagree (30s, default): no single way back
]


@pytest.mark.parametrize(("change", "back"), ODD_CHANGES, ids=lambda c: ",".join(c or ["-"]))
def test_odd_layout_edits_read_back_and_restore_byte_for_byte(change, back):
    files = nginx_files()
    edits = apply_nginx_changes(files, change)
    new = {name: edit.new_text for name, edit in edits.items()}
    assert new["conf/stream.d/mllp.conf"] == files["conf/stream.d/mllp.conf"]  # left alone
    assert not new["conf/sites-enabled/ei.conf"].endswith("\n")  # still no final newline
    settings = read_nginx_settings(new)
    for param, value in change.items():
        assert settings[param] == value
    for name in files:  # lines nobody touched keep their own CRLF or LF
        assert new[name].count("\r\n") >= files[name].count("\r\n")
    if back is not None:
        again = apply_nginx_changes(new, back)
        assert {n: e.new_text for n, e in again.items()} == files


def test_a_timeout_set_at_http_level_in_nginx_conf_is_read_but_left_alone():
    """nginx.conf's http-level value holds for every vhost on this nginx: a change goes into
    the EI vhost (the server around a location on one line), and a note names what it
    overrides."""
    files = nginx_files()
    edits = apply_nginx_changes(files, {"nginx.proxy_read_timeout": "30s"})
    assert edits["conf/nginx.conf"].new_text == files["conf/nginx.conf"]
    vhost = edits["conf/sites-enabled/ei.conf"]
    # the quoted value stays quoted, so setting "5m" back gives the original bytes
    assert 'proxy_read_timeout "30s";' in vhost.new_text
    # (a new line gets the file's dominant line end: this file is mostly CRLF)
    assert re.search(r"\n    proxy_read_timeout 30s;\r?\n    location /services/ \{ proxy_pass",
                     vhost.new_text)
    assert any("overrides the 90s that conf/nginx.conf:12 sets at http level" in n
               for n in vhost.notes)
    assert any("enclosing server" in n and "on one line" in n for n in vhost.notes)
    removed = apply_nginx_changes(files, {"nginx.proxy_read_timeout": None})
    assert removed["conf/nginx.conf"].new_text == files["conf/nginx.conf"]
    assert read_nginx_settings({n: e.new_text for n, e in removed.items()})[
        "nginx.proxy_read_timeout"] == "90s"  # what the vhost inherits now
    assert any("now comes from conf/nginx.conf:12 (90s" in n
               for n in removed["conf/sites-enabled/ei.conf"].notes)


def test_upstream_servers_of_every_form_get_the_parameter_and_comments_stay():
    edit = apply_nginx_changes(nginx_files(), {"nginx.max_fails": 5})["conf/sites-enabled/ei.conf"]
    lines = edit.new_text.split("\n")
    assert lines[3:7] == [
        "    server [::1]:8280 weight=5 max_fails=5 fail_timeout=30s;\r",
        "    server unix:/run/ei/node2.sock down max_fails=5;\r",
        "    server 127.0.0.3:8280 max_conns=100 max_fails=5;   # node3; ip_hash; keepalive 99;\r",
        "    server 127.0.0.4:8280 backup max_fails=5;\r",
    ]
    assert lines[0] == ("# EI pass-through: { braces; semicolons } and proxy_read_timeout 1s; "
                        "in comments only\r")


@pytest.mark.parametrize(("change", "message"), [
    # the HTTP upstream has a backup server; the stream one's hash is not judged
    ({"nginx.lb_method": "ip_hash"},
     "conf/sites-enabled/ei.conf:7: upstream ei_http has a backup server, which nginx's ip_hash "
     "refuses; remove 'backup' there or use nginx.lb_method=least_conn (stream {} at "
     "conf/stream.d/mllp.conf:2 left alone: TCP/UDP, not these HTTP settings)"),
])
def test_what_the_odd_layout_cannot_take_is_refused_in_one_line(change, message):
    assert refused(apply_nginx_changes, nginx_files(), change) == message


def test_a_proxy_block_on_one_line_in_a_server_on_one_line_is_refused():
    """(In the odd layout a one-line location gets the timeout in its server instead.)"""
    files = {"ei.conf": "server { listen 80; location / { proxy_pass http://u; } }\n"}
    assert refused(apply_nginx_changes, files, {"nginx.proxy_send_timeout": "10s"}) == (
        "ei.conf:1: the 'location' block is on one line; put its braces on lines of their own "
        "so 'proxy_send_timeout' can be added")


@pytest.mark.skipif(NGINX is None, reason="needs nginx")
def test_the_edited_odd_layout_passes_nginx_t(tmp_path):
    """The real nginx takes the edited http side (this nginx has no stream module: the stream
    include is left out of the check; the editor leaves that file's bytes alone anyway)."""
    change = {"nginx.proxy_read_timeout": "30s", "nginx.upstream_keepalive": 16,
              "nginx.lb_method": "least_conn", "nginx.max_fails": 5, "nginx.fail_timeout": "20s",
              "nginx.worker_processes": "auto", "nginx.worker_connections": 4096}
    edits = apply_nginx_changes(nginx_files(), change)
    (tmp_path / "logs").mkdir()
    for name, edit in edits.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        text = edit.new_text
        if name == "conf/nginx.conf":
            text = re.sub(r"stream \{.*?\}\n", "", text, flags=re.S)
        (tmp_path / name).write_bytes(text.encode())
    run = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", "conf/nginx.conf"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "[warn]" not in run.stderr and "[emerg]" not in run.stderr


NGINX_BAD = [
    ("\ufeffupstream u {\n    server a:1;\n}\n",
     'bom.conf:1: starts with a UTF-8 byte order mark, which nginx refuses ("unknown directive"); '
     "save the file without it"),
    # a stream include given without the nginx.conf that says so
    ("server {\n    listen 2575;\n    proxy_pass mllp;\n}\n",
     'bom.conf:3: "proxy_pass" directive is not allowed here in an http vhost, but the file reads '
     "as one included in stream {} (TCP/UDP), which nginx.* parameters do not tune; give the "
     "nginx.conf that includes it too, or leave it out"),
    ("server {\n    location / {\n        if ($a) { proxy_read_timeout 1s; proxy_pass http://u; }\n"
     "    }\n}\n",
     'bom.conf:3: "proxy_read_timeout" directive is not allowed here (not a valid nginx config; '
     "fix it and retry)"),
]


@pytest.mark.parametrize(("text", "message"), NGINX_BAD, ids=["bom", "stream-alone", "if"])
def test_nginx_files_it_cannot_handle_are_refused_in_one_line(text, message):
    assert refused(read_nginx_settings, {"bom.conf": text}) == message
    assert refused(apply_nginx_changes, {"bom.conf": text}, {"nginx.max_fails": 2}) == message


@pytest.mark.parametrize("text", [
    # two blocks on one line, a '#' and ';' inside quotes, a quoted value over two lines
    "upstream u {\n    server a:1;\n}\nserver {\n    location /a { proxy_read_timeout 1s; "
    "proxy_pass http://u; } location /b { proxy_read_timeout 1s; proxy_pass http://u; }\n}\n",
    'upstream u {\n    server a:1;\n}\nserver {\n    location / { add_header X "a#b;c"; '
    "proxy_read_timeout 1s; proxy_pass http://u; }\n}\n",
    'upstream u {\n    server a:1;\n}\nserver {\n    location / {\n        add_header X "a\n'
    'b"; proxy_read_timeout 1s;\n        proxy_pass http://u;\n    }\n}\n',
    "upstream u {\n\tserver a:1;\n}\nserver {\n\tlocation / {\n\t\tproxy_read_timeout '1s';\n"
    "\t\tproxy_pass http://u;\n\t}\n}",
], ids=["same-line", "hash-in-quotes", "multiline-quote", "tabs-single-quotes-no-eol"])
def test_tokens_are_edited_in_place_and_restored(text):
    edit = apply_nginx_changes({"v.conf": text}, {"nginx.proxy_read_timeout": "7s"})["v.conf"]
    assert edit.new_text == text.replace("1s", "7s")
    back = apply_nginx_changes({"v.conf": edit.new_text}, {"nginx.proxy_read_timeout": "1s"})
    assert back["v.conf"].new_text == text


def test_include_patterns_globs_and_relative_paths_and_their_contexts():
    main = text_of(ODD / "conf/nginx.conf")
    assert includes("conf/nginx.conf", main) == [
        ("sites-enabled/*.conf", ("http",), 17), ("stream.d/*.conf", ("stream",), 20)]
    # absolute include paths, and a names that no pattern matches (a sites-available target
    # of a sites-enabled symlink): guessed from its text, an http vhost
    files = {"/etc/nginx/nginx.conf": main.replace("sites-enabled/", "/etc/nginx/sites-enabled/"),
             "/etc/nginx/sites-available/ei.conf": "upstream u {\n    server a:1;\n}\n",
             "/etc/nginx/stream.d/mllp.conf": text_of(ODD / "conf/stream.d/mllp.conf")}
    assert included_contexts(files) == {"/etc/nginx/stream.d/mllp.conf": ("stream",)}
    assert NginxSource("x", files["/etc/nginx/sites-available/ei.conf"]).ctx == ("http",)


# ---- integrator.sh: shell forms around JVM_MEM_OPTS -----------------------------------------

OPTS = 'JVM_MEM_OPTS="-Xms256m -Xmx1024m"'


def script(replacement: str = OPTS, crlf: int = 0, final_newline: bool = True) -> str:
    text = text_of(FIXTURES / "integrator.sh").replace(OPTS, replacement)
    text = text.replace("\n", "\r\n", crlf)
    return text if final_newline else text.rstrip("\n")


SCRIPT_CASES = [
    ("export", script('export JVM_MEM_OPTS="-Xms256m -Xmx1024m"'),
     {"jvm.xmx": "3g", "jvm.gc": "G1"}, {"jvm.xmx": "1024m", "jvm.gc": None},
     'export JVM_MEM_OPTS="-Xms256m -Xmx3g -XX:+UseG1GC"'),
    ("single-quotes", script("JVM_MEM_OPTS='-Xms256m -Xmx1024m'"),
     {"jvm.flag.UseStringDeduplication": True}, {"jvm.flag.UseStringDeduplication": None},
     "JVM_MEM_OPTS='-Xms256m -Xmx1024m -XX:+UseStringDeduplication'"),
    ("escaped-quotes", script('JVM_MEM_OPTS="-Xms256m -Xmx1024m -Dei.tag=\\"blue\\""'),
     {"jvm.gc": "G1"}, {"jvm.gc": None},
     'JVM_MEM_OPTS="-Xms256m -Xmx1024m -Dei.tag=\\"blue\\" -XX:+UseG1GC"'),
    ("comment-and-semicolon",
     script('JVM_MEM_OPTS="-Xms256m -Xmx1024m"; export JVM_MEM_OPTS # ops; -Xmx8g later'),
     {"jvm.xmx": "2g"}, {"jvm.xmx": "1024m"},
     'JVM_MEM_OPTS="-Xms256m -Xmx2g"; export JVM_MEM_OPTS # ops; -Xmx8g later'),
    ("unquoted-then-semicolon", script("JVM_MEM_OPTS=-Xmx1024m; export JVM_MEM_OPTS"),
     {"jvm.xmx": "2g"}, {"jvm.xmx": "1024m"}, "JVM_MEM_OPTS=-Xmx2g; export JVM_MEM_OPTS"),
    ("mixed-crlf-no-final-newline", script(crlf=190, final_newline=False),
     {"jvm.xmx": "2g", "jvm.max_metaspace": "512m"}, {"jvm.xmx": "1024m", "jvm.max_metaspace": None},
     'JVM_MEM_OPTS="-Xms256m -Xmx2g -XX:MaxMetaspaceSize=512m"'),
    ("bom", "\ufeff" + script(), {"jvm.xms": "512m"}, {"jvm.xms": "256m"},
     'JVM_MEM_OPTS="-Xms512m -Xmx1024m"'),
    ("here-doc", script().replace('echo "Using Java', 'cat <<-"EOF"\n\tJVM_MEM_OPTS="-Xmx2m"\n'
                                  '\tEOF\necho "Using Java'),
     {"jvm.xmx": "2g"}, {"jvm.xmx": "1024m"}, 'JVM_MEM_OPTS="-Xms256m -Xmx2g"'),
]


@pytest.mark.parametrize(("text", "change", "back", "line"),
                         [c[1:] for c in SCRIPT_CASES], ids=[c[0] for c in SCRIPT_CASES])
def test_integrator_sh_forms_are_edited_on_their_line_and_restored(text, change, back, line):
    edit = apply_jvm_changes(text, change)
    [removed] = [ln for ln in text.split("\n") if ln not in edit.new_text.split("\n")]
    [added] = [ln for ln in edit.new_text.split("\n") if ln not in text.split("\n")]
    assert added.strip().rstrip("\r") == line
    assert added.endswith("\r") == removed.endswith("\r")
    assert apply_jvm_changes(edit.new_text, back).new_text == text
    assert "-Xmx2m" in edit.new_text if "<<" in text else True  # the here-doc's text stays


def test_an_unquoted_value_ending_in_a_semicolon_is_read_without_it():
    options = read_jvm_options(script("JVM_MEM_OPTS=-Xmx1g; export JVM_MEM_OPTS"))
    assert options.xmx == "1g" and options.options == ("-Xmx1g",)


def test_legacy_flags_give_way_to_one_collector():
    text = script('JVM_MEM_OPTS="-Xms256m -Xmx1024m -XX:MaxPermSize=256m '
                  '-XX:+UseConcMarkSweepGC -XX:+UseParNewGC -Xmx2g"')
    assert read_jvm_options(text).xmx == "2g"  # the last -Xmx wins, as in HotSpot
    new = apply_jvm_changes(text, {"jvm.gc": "G1", "jvm.xmx": "3g"}).new_text
    assert 'JVM_MEM_OPTS="-Xms256m -Xmx3g -XX:MaxPermSize=256m -XX:+UseG1GC"' in new


SCRIPT_BAD = [
    (script('JVM_MEM_OPTS="-Xms256m \\\n      -Xmx1024m"'), {"jvm.xmx": "2g"},
     "integrator.sh:184: the JVM_MEM_OPTS value is not one word on one line (a quote not closed "
     "on the line, or quoted and unquoted parts joined); put it in one pair of quotes on one "
     "line so it can be edited in place"),
    (script('JVM_MEM_OPTS="-Xms256m"\' -Xmx1g\''), {"jvm.xmx": "2g"},
     "integrator.sh:184: the JVM_MEM_OPTS value is not one word on one line"),
    (script('JVM_MEM_OPTS="-Xmx1024m -XX:HeapDumpPath=\\"/opt/my dumps/h.hprof\\""'),
     {"jvm.flag.HeapDumpPath": "/tmp/h.hprof"},
     'integrator.sh:184: -XX:HeapDumpPath=\\"/opt/my is cut at a space inside escaped quotes'),
    (script('JVM_MEM_OPTS="${JVM_MEM_OPTS:--Xms256m -Xmx1024m}"'), {"jvm.xmx": "2g"},
     "integrator.sh: no JVM memory options found"),
]


@pytest.mark.parametrize(("text", "change", "message"), SCRIPT_BAD,
                         ids=["continued-quote", "joined-quotes", "split-path", "default-expansion"])
def test_scripts_it_cannot_edit_are_refused_in_one_line(text, change, message):
    assert refused(apply_jvm_changes, text, change).startswith(message)


# ---- passthru-http.properties: the properties format's corners ------------------------------


def props() -> str:
    return text_of(ODD / "passthru-http-odd.properties")


def test_odd_properties_are_read_as_java_reads_them():
    assert read_properties(props()) == {
        "http.socket.timeout": "180000",
        "worker_pool_size_core": "400   ",  # Java keeps trailing blanks; EI trims numbers
        "worker_pool_size_max": "500",  # written worker_pool_size\u005fmax
        "http.user.agent.preserve": "false",
        "preserve.headers": "Content-Type,\\",  # first line of a continued value
        "io_buffer_size": "8192",  # the last of a duplicate wins
    }


PROPS_CASES = [
    ({"passthru.worker_pool_size_core": 300}, {"passthru.worker_pool_size_core": 400},
     [("worker_pool_size_core = 400   \r\n", "worker_pool_size_core = 300   \r\n")]),
    ({"passthru.worker_pool_size_max": 800}, {"passthru.worker_pool_size_max": 500},
     [("worker_pool_size\\u005fmax 500\r\n", "worker_pool_size\\u005fmax 800\r\n")]),
    ({"passthru.http.socket.timeout": 60000}, {"passthru.http.socket.timeout": 180000},
     [("http.socket.timeout:180000", "http.socket.timeout:60000")]),
    ({"passthru.io_buffer_size": 4096}, None,  # both duplicates: they end up equal
     [("io_buffer_size=16384\n", "io_buffer_size=4096\n"),
      ("io_buffer_size=8192", "io_buffer_size=4096")]),
    ({"passthru.worker_pool_queue_length": 1000}, None,  # `!key=` is uncommented in place
     [("!worker_pool_queue_length=-1\r\n", "worker_pool_queue_length=1000\r\n")]),
]


@pytest.mark.parametrize(("change", "back", "swaps"), PROPS_CASES,
                         ids=["trailing-blanks", "unicode-key", "colon", "duplicates", "bang"])
def test_odd_properties_are_edited_in_place_and_restored(change, back, swaps):
    text = props()
    expected = text
    for old, new in swaps:
        expected = expected.replace(old, new)
    edit = apply_passthru_changes(text, change)
    assert edit.new_text == expected
    if back is not None:
        assert apply_passthru_changes(edit.new_text, back).new_text == text


def test_a_continued_value_and_a_bom_are_refused_in_one_line():
    assert refused(apply_passthru_changes, props(), {"passthru.preserve.headers": "Date"}) == (
        "passthru-http.properties:8: 'preserve.headers' goes on over several lines; put it on "
        "one line so it can be edited in place")
    bom = "\ufeffworker_pool_size_core=400\nworker_pool_size_max=500\n"
    assert refused(apply_passthru_changes, bom, {"passthru.worker_pool_size_core": 100}) == (
        "passthru-http.properties:1: starts with a UTF-8 byte order mark, which Java reads as "
        "part of the first key (so that key is not set); save the file without it")


# ---- master-datasources.xml: BOM, CRLF, CDATA, entities, attributes, nested blocks ------------


def ds_text() -> str:
    return text_of(ODD / "master-datasources-odd.xml")


def ds_edit(text: str, change: dict[str, object]) -> str:
    return DatasourcesEditor().edit({"master-datasources.xml": text}, change)[
        "master-datasources.xml"].new_text


def parsed(text: str) -> dict[str, str]:
    """{datasource.Tag: text} as a real XML parser reads the file (direct settings only)."""
    root = ET.fromstring(text.lstrip("\ufeff").encode())
    return {f"{ds.findtext('name')}.{el.tag}": (el.text or "").strip()
            for ds in root.iter("datasource") for el in ds.find("definition/configuration")}


def test_odd_datasources_are_read_as_an_xml_parser_reads_them():
    values = read_pools(ds_text())
    xml = parsed(ds_text())
    assert values == {
        "ds.WSO2_CARBON_DB.max_active": xml["WSO2_CARBON_DB.maxActive"],
        "ds.WSO2_CARBON_DB.test_on_borrow": "true",
        "ds.WSO2_CARBON_DB.validation_query": xml["WSO2_CARBON_DB.validationQuery"],
        "ds.WSO2_SHARED_REG_DB.validation_query": xml["WSO2_SHARED_REG_DB.validationQuery"],
        "ds.WSO2_SHARED_REG_DB.max_wait": "60000",
    }
    assert values["ds.WSO2_CARBON_DB.validation_query"] == "SELECT 1 FROM DUAL WHERE 1 < 2"
    assert values["ds.WSO2_SHARED_REG_DB.validation_query"] == "SELECT 'ok' FROM DUAL"


DS_CASES = [
    ({"ds.WSO2_CARBON_DB.max_active": 20}, {"ds.WSO2_CARBON_DB.max_active": 80},
     {"WSO2_CARBON_DB.maxActive": "20"}),
    ({"ds.WSO2_CARBON_DB.validation_query": "SELECT 2"},
     {"ds.WSO2_CARBON_DB.validation_query": "SELECT 1 FROM DUAL WHERE 1 < 2"},
     {"WSO2_CARBON_DB.validationQuery": "SELECT 2"}),
    # added after the nested <databaseProps> block, not inside it; removing it restores
    ({"ds.WSO2_CARBON_DB.max_wait": 1000}, {"ds.WSO2_CARBON_DB.max_wait": None},
     {"WSO2_CARBON_DB.maxWait": "1000"}),
    ({"ds.WSO2_SHARED_REG_DB.min_idle": 2}, {"ds.WSO2_SHARED_REG_DB.min_idle": None},
     {"WSO2_SHARED_REG_DB.minIdle": "2"}),
]


@pytest.mark.parametrize(("change", "back", "expect"), DS_CASES,
                         ids=["attributes", "cdata", "after-nested", "tabs-no-final-newline"])
def test_odd_datasources_edits_parse_and_restore(change, back, expect):
    text = ds_text()
    new = ds_edit(text, change)
    assert new.startswith("\ufeff") and new.count("\r\n") == new.count("\n")
    xml = parsed(new)
    for key, value in expect.items():
        assert xml[key] == value
    assert {k: v for k, v in xml.items() if k not in expect} == {
        k: v for k, v in parsed(text).items() if k not in expect}
    assert ds_edit(new, back) == text


def test_the_same_value_written_another_way_changes_no_byte():
    text = ds_text()
    same = {"ds.WSO2_SHARED_REG_DB.validation_query": "SELECT 'ok' FROM DUAL",
            "ds.WSO2_CARBON_DB.validation_query": "SELECT 1 FROM DUAL WHERE 1 < 2"}
    assert ds_edit(text, same) == text


def test_a_prefixed_or_structured_setting_is_refused_in_one_line():
    text = ds_text().replace("<maxActive  comment=\"per node\" >80</maxActive>",
                             "<x:maxActive xmlns:x=\"urn:x\">80</x:maxActive>")
    assert refused(ds_edit, text, {"ds.WSO2_CARBON_DB.max_active": 5}) == (
        "master-datasources.xml: <x:maxActive> of datasource WSO2_CARBON_DB has a namespace "
        "prefix or holds other elements, not a value; fix it by hand")
    text = ds_text().replace("<maxWait>60000</maxWait>", "<maxWait><v>1</v></maxWait>")
    assert "<maxWait> of datasource WSO2_SHARED_REG_DB" in refused(
        ds_edit, text, {"ds.WSO2_SHARED_REG_DB.max_wait": 5})


@pytest.mark.parametrize("query", [
    "SELECT '&amp;lt;' FROM DUAL", "SELECT &#x27;x&#39; &quot;y&quot;", "SELECT 1 <!-- why --> + 1"])
def test_entities_are_decoded_once_as_an_xml_parser_does(query):
    text = ds_text().replace("SELECT &apos;ok&apos; &#x46;ROM DUAL", query)
    assert read_pools(text)["ds.WSO2_SHARED_REG_DB.validation_query"] == "".join(
        ET.fromstring(text.lstrip("\ufeff").encode()).find(
            "datasources/datasource[name='WSO2_SHARED_REG_DB']/definition/configuration/"
            "validationQuery").itertext())
