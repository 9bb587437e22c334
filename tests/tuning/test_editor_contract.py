"""The ConfigEditor contract (tuning.edit), checked for every editor on files shaped like the
product's own: EI 6.0 / 6.6 and old Carbon start-up scripts (one with an operator's comments),
the nginx guide's vhosts and a main nginx.conf with `stream {}` beside `http {}` and `backup`
servers, the shipped passthru-http.properties, the shipped and the clustering guide's
master-datasources.xml (a commented-out datasource, tabs, no final newline) -- each also with
CRLF line ends.

Each editor is described once in IMPLEMENTATIONS: its realistic inputs (`Case`), with values
they already set, a change, the change that sets it back, and the refusals it must make.
Every test here runs for all of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuning.datasources_xml import DatasourcesEditor, read_pools
from tuning.edit import ConfigEditor, Edit, EditorError
from tuning.integrator_sh import IntegratorShEditor, read_jvm_options
from tuning.nginx_conf import NginxConfEditor, read_nginx_settings
from tuning.params import ParameterError, Target, format_value, validate
from tuning.passthru_properties import PassthruEditor, read_properties

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


@dataclass(frozen=True)
class Case:
    """Real files for one editor, and changes whose effect on them is known."""

    files: tuple[str, ...]  # fixture names, edited together in one call
    same: dict[str, object]  # values the files already set: no byte may change
    change: dict[str, object]  # changes some value in the files
    back: dict[str, object]  # after `change`, sets every value back: the original bytes again
    edited_comment: str | None = None  # a comment on a line `change` edits: it must stay there

    def texts(self) -> dict[str, str]:
        return {name: fixture(name) for name in self.files}


@dataclass(frozen=True)
class Impl:
    """One ConfigEditor implementation as the shared suite sees it."""

    editor: ConfigEditor
    cases: dict[str, Case]
    read: Callable[[Mapping[str, str]], dict[str, object]]  # values the files set, by parameter
    comments: Callable[[str], list[str]]  # the comments of a text, in order
    grow: dict[str, object]  # a change that adds to every case's files (a token or a line)
    other_target: str  # a parameter of another editor
    misspelt: tuple[str, str]  # a near-miss name, and the name the refusal suggests
    bad_value: tuple[str, object]
    not_this_kind: str | None  # a fixture the editor refuses to edit; None: it cannot tell
    joint: bool = False  # True: the files given together are one configuration
    reason: str = ""  # why not_this_kind is None


def _jvm_read(files: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, text in files.items():
        out |= read_jvm_options(text, name).as_params()
    return out


def _passthru_read(files: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for text in files.values():
        out |= {f"passthru.{k}": v for k, v in read_properties(text).items()}
    return out


def _hash_comments(text: str) -> list[str]:
    """`# ...` comments of a shell script or nginx file: whole-line and end-of-line ones."""
    return [m.group(1) for m in re.finditer(r"(?:^|[ \t])(#[^\r\n]*)", text, re.MULTILINE)]


def _ds_read(files: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, text in files.items():
        out |= read_pools(text, name)
    return out


def _xml_comments(text: str) -> list[str]:
    """`<!-- ... -->` comments of an XML file, in order."""
    return re.findall(r"<!--.*?-->", text, re.S)


def _properties_comments(text: str) -> list[str]:
    """Comment lines of a properties file (a `#` after a value is part of the value)."""
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith(("#", "!"))]


JVM_CHANGE = {"jvm.xmx": "2g", "jvm.gc": "G1", "jvm.flag.UseStringDeduplication": True}
JVM_BACK = {"jvm.xmx": "1024m", "jvm.gc": None, "jvm.flag.UseStringDeduplication": None}
JVM_SAME = {"jvm.xms": "256m", "jvm.xmx": "1024m"}
PASSTHRU_SAME = {"passthru.worker_pool_size_core": 400, "passthru.io_buffer_size": 16384}
PASSTHRU_CHANGE = {"passthru.worker_pool_size_core": 200, "passthru.http.socket.timeout": 60000}
PASSTHRU_BACK = {"passthru.worker_pool_size_core": 400, "passthru.http.socket.timeout": 180000}
DS_SAME = {"ds.WSO2_CARBON_DB.max_active": 50, "ds.WSO2_CARBON_DB.test_on_borrow": True,
           "ds.WSO2_CARBON_DB.validation_query": "SELECT 1"}
DS_CHANGE = {"ds.WSO2_CARBON_DB.max_active": 20, "ds.WSO2_CARBON_DB.max_wait": 1000,
             "ds.WSO2_CARBON_DB.validation_query": "SELECT 1 FROM DUAL"}
DS_BACK = {"ds.WSO2_CARBON_DB.max_active": 50, "ds.WSO2_CARBON_DB.max_wait": 60000,
           "ds.WSO2_CARBON_DB.validation_query": "SELECT 1"}
STREAM = Case(
    ("nginx-stream.conf",),
    same={
        "nginx.proxy_read_timeout": "300s",
        "nginx.upstream_keepalive": 32,
        "nginx.lb_method": "least_conn",
        "nginx.worker_processes": 4,
        "nginx.worker_connections": 1024,
    },
    change={
        "nginx.proxy_read_timeout": "30s",
        "nginx.upstream_keepalive": 16,
        "nginx.lb_method": "round_robin",
        "nginx.worker_processes": "auto",
    },
    back={
        "nginx.proxy_read_timeout": "300s",
        "nginx.upstream_keepalive": 32,
        "nginx.lb_method": "least_conn",
        "nginx.worker_processes": 4,
    },
    edited_comment="# slow back-end services",
)

IMPLEMENTATIONS = {
    "integrator_sh": Impl(
        editor=IntegratorShEditor(),
        cases={
            "ei660": Case(("integrator.sh",), JVM_SAME, JVM_CHANGE, JVM_BACK),
            "ei600": Case(("integrator-ei600.sh",), JVM_SAME, JVM_CHANGE, JVM_BACK),
            "carbon": Case(("wso2server.sh",), JVM_SAME, JVM_CHANGE, JVM_BACK),
            "carbon-crlf": Case(("wso2server-crlf.sh",), JVM_SAME, JVM_CHANGE, JVM_BACK),
            "ops-edited": Case(
                ("integrator-ops.sh",),
                JVM_SAME | {"jvm.flag.HeapDumpOnOutOfMemoryError": True},
                JVM_CHANGE | {"jvm.flag.HeapDumpOnOutOfMemoryError": False},
                JVM_BACK | {"jvm.flag.HeapDumpOnOutOfMemoryError": True},
                edited_comment="# 4 GB VMs: see OPS-112 before raising",
            ),
        },
        read=_jvm_read,
        comments=_hash_comments,
        grow={"jvm.flag.AlwaysPreTouch": True},
        other_target="nginx.max_fails",
        misspelt=("jvm.xmxx", "jvm.xmx"),
        bad_value=("jvm.xmx", "2x"),
        not_this_kind="ei.http.conf",
    ),
    "nginx_conf": Impl(
        editor=NginxConfEditor(),
        cases={
            "guide": Case(
                ("nginx.conf", "ei.http.conf", "ei.https.conf", "ui.ei.https.conf"),
                same={
                    "nginx.proxy_read_timeout": "5m",
                    "nginx.proxy_send_timeout": "5m",
                    "nginx.worker_processes": "auto",
                    "nginx.worker_connections": 768,
                },
                change={
                    "nginx.proxy_read_timeout": "30s",
                    "nginx.upstream_keepalive": 16,
                    "nginx.max_fails": 3,
                    "nginx.worker_connections": 4096,
                },
                back={
                    "nginx.proxy_read_timeout": "5m",
                    "nginx.upstream_keepalive": None,
                    "nginx.max_fails": None,
                    "nginx.worker_connections": 768,
                },
            ),
            "guide-crlf": Case(
                ("ei.http.crlf.conf",),
                same={"nginx.proxy_read_timeout": "5m", "nginx.proxy_send_timeout": "5m"},
                change={
                    "nginx.proxy_send_timeout": "1m",
                    "nginx.upstream_keepalive": 16,
                    "nginx.lb_method": "least_conn",
                    "nginx.fail_timeout": "30s",
                },
                back={
                    "nginx.proxy_send_timeout": "5m",
                    "nginx.upstream_keepalive": None,
                    "nginx.lb_method": "round_robin",
                    "nginx.fail_timeout": None,
                },
            ),
            "stream": STREAM,
            "stream-crlf": Case(
                ("nginx-stream-crlf.conf",),
                STREAM.same,
                STREAM.change,
                STREAM.back,
                edited_comment=STREAM.edited_comment,
            ),
        },
        read=read_nginx_settings,
        comments=_hash_comments,
        grow={"nginx.proxy_connect_timeout": "5s"},
        other_target="jvm.xmx",
        misspelt=("nginx.proxy_read_timout", "nginx.proxy_read_timeout"),
        bad_value=("nginx.proxy_read_timeout", "5 minutes"),
        not_this_kind="integrator.sh",
        joint=True,
    ),
    "passthru_properties": Impl(
        editor=PassthruEditor(),
        cases={
            "testbed": Case(
                ("passthru-http.properties",), PASSTHRU_SAME, PASSTHRU_CHANGE, PASSTHRU_BACK
            ),
            "shipped": Case(
                ("passthru-http-ei660.properties",),
                PASSTHRU_SAME | {"passthru.http.headers.preserve": "Content-Type"},
                PASSTHRU_CHANGE | {"passthru.http.headers.preserve": "Content-Type,Accept"},
                PASSTHRU_BACK | {"passthru.http.headers.preserve": "Content-Type"},
            ),
            "shipped-crlf": Case(
                ("passthru-http-ei660-crlf.properties",),
                PASSTHRU_SAME,
                PASSTHRU_CHANGE,
                PASSTHRU_BACK,
            ),
        },
        read=_passthru_read,
        comments=_properties_comments,
        grow={"passthru.http.socket.rcv-buffer-size": 8192},
        other_target="jvm.xmx",
        misspelt=("passthru.worker_pool_size_cor", "passthru.worker_pool_size_core"),
        bad_value=("passthru.worker_pool_size_core", "many"),
        not_this_kind=None,
        reason="any text parses as properties; tune apply --file tells the kind by name/content",
    ),
    "datasources_xml": Impl(
        editor=DatasourcesEditor(),
        cases={
            "testbed": Case(("master-datasources-testbed.xml",), DS_SAME, DS_CHANGE, DS_BACK),
            "shipped": Case(("master-datasources-ei660.xml",), DS_SAME, DS_CHANGE, DS_BACK),
            "shipped-crlf": Case(("master-datasources-ei660-crlf.xml",), DS_SAME, DS_CHANGE,
                                 DS_BACK),
            "guide": Case(
                ("master-datasources-guide.xml",),
                DS_SAME | {"ds.WSO2_SHARED_REG_DB.max_active": 80},
                DS_CHANGE | {"ds.WSO2_SHARED_REG_DB.max_active": 40},
                DS_BACK | {"ds.WSO2_SHARED_REG_DB.max_active": 80},
                edited_comment="<!-- two nodes x 40: see OPS-207 -->",
            ),
        },
        read=_ds_read,
        comments=_xml_comments,
        grow={"ds.WSO2_CARBON_DB.min_idle": 3},
        other_target="passthru.io_buffer_size",
        misspelt=("ds.WSO2_CARBON_DB.max_activ", "ds.WSO2_CARBON_DB.max_active"),
        bad_value=("ds.WSO2_CARBON_DB.max_active", "lots"),
        not_this_kind="integrator.sh",
    ),
}
CASES = [(impl, case) for impl in IMPLEMENTATIONS for case in IMPLEMENTATIONS[impl].cases]


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request) -> Impl:
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=CASES, ids=[f"{i}-{c}" for i, c in CASES])
def pair(request) -> tuple[Impl, Case]:
    name, case = request.param
    return IMPLEMENTATIONS[name], IMPLEMENTATIONS[name].cases[case]


def shown(values: Mapping[str, object]) -> dict[str, str]:
    """Values given to an editor as it writes them (normalised, true/false for booleans)."""
    return {k: format_value(validate(k, v)) for k, v in values.items() if v is not None}


def read_back(impl: Impl, files: Mapping[str, str]) -> dict[str, object]:
    """The values `files` set, as text (a list where places disagree)."""
    return {k: v if isinstance(v, list) else format_value(v) for k, v in impl.read(files).items()}


def has_bare_lf(text: str) -> bool:
    return bool(re.search(r"(?<!\r)\n", text))


# ---- the shape: text in, one Edit per file out ---------------------------------------------------


def test_is_a_config_editor_for_one_target(impl):
    assert isinstance(impl.editor, ConfigEditor)
    prefixes = {Target.JVM: "jvm.", Target.NGINX: "nginx.", Target.PASSTHRU: "passthru.",
                Target.DATASOURCES: "ds."}
    for case in impl.cases.values():
        for name in (*case.change, *case.same, *impl.grow):
            assert name.startswith(prefixes[impl.editor.target])


def test_one_edit_per_file_in_order_and_no_change_keeps_every_byte(pair):
    impl, case = pair
    files = case.texts()
    edits = impl.editor.edit(files, {})
    assert list(edits) == list(files)
    for name, edit in edits.items():
        assert edit == Edit(files[name], "", False)
    assert impl.editor.edit({}, case.change) == {}


def test_setting_the_values_already_there_changes_no_byte(pair):
    impl, case = pair
    files = case.texts()
    assert shown(case.same).items() <= read_back(impl, files).items()  # the case's own claim
    for name, edit in impl.editor.edit(files, case.same).items():
        assert edit.new_text == files[name], edit.diff
        assert edit.diff == "" and not edit.changed


def test_a_change_is_read_back_and_only_its_lines_differ(pair):
    impl, case = pair
    files = case.texts()
    edits = impl.editor.edit(files, case.change)
    assert any(e.changed for e in edits.values())
    new = {name: e.new_text for name, e in edits.items()}
    assert shown(case.change).items() <= read_back(impl, new).items()
    for name, edit in edits.items():
        assert edit.changed == (edit.new_text != files[name])
        removed = [ln for ln in edit.diff.splitlines() if ln.startswith("-") and ln[:4] != "--- "]
        assert len(removed) <= len(case.change) * 4  # a few lines per value, never the file


def test_crlf_files_stay_crlf_and_added_lines_get_crlf(pair):
    impl, case = pair
    files = case.texts()
    edits = impl.editor.edit(files, case.change | impl.grow)
    for name, edit in edits.items():
        assert has_bare_lf(edit.new_text) == has_bare_lf(files[name]), name
        if "\r\n" in files[name]:
            assert edit.new_text.count("\r\n") >= files[name].count("\r\n")


def test_comments_stay_on_the_edited_line_and_everywhere_else(pair):
    impl, case = pair
    files = case.texts()
    edits = impl.editor.edit(files, case.change | impl.grow)
    for name, edit in edits.items():
        assert impl.comments(edit.new_text) == impl.comments(files[name]), edit.diff
    if case.edited_comment is None:
        return
    (name,) = [n for n in files if case.edited_comment in files[n]]
    old_line = next(ln for ln in files[name].splitlines() if case.edited_comment in ln)
    new_line = next(ln for ln in edits[name].new_text.splitlines() if case.edited_comment in ln)
    assert new_line != old_line  # the commented line is one the change edits
    code = old_line[: old_line.index(case.edited_comment)].rstrip()
    assert new_line.endswith(old_line[len(code) :])  # the comment and the blanks before it


def test_setting_the_old_values_back_gives_the_original_bytes(pair):
    impl, case = pair
    files = case.texts()
    changed = {name: e.new_text for name, e in impl.editor.edit(files, case.change).items()}
    assert changed != files
    back = impl.editor.edit(changed, case.back)
    assert {name: e.new_text for name, e in back.items()} == files


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch")
def test_patch_reverse_with_the_diff_gives_the_original_bytes(pair, tmp_path):
    impl, case = pair
    files = case.texts()
    for i, (name, edit) in enumerate(impl.editor.edit(files, case.change | impl.grow).items()):
        if not edit.changed:
            continue
        target, diff, out = (tmp_path / f"{i}.new", tmp_path / f"{i}.diff", tmp_path / f"{i}.out")
        target.write_bytes(edit.new_text.encode())
        diff.write_bytes(edit.diff.encode())
        done = subprocess.run(
            ["patch", "-R", "--binary", "-s", "-o", str(out), "-i", str(diff), str(target)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert out.read_bytes() == files[name].encode(), name


# ---- refusals ------------------------------------------------------------------------------------


def test_a_parameter_of_another_editor_is_refused(impl):
    case = next(iter(impl.cases.values()))
    files = case.texts()
    with pytest.raises(ParameterError) as info:
        impl.editor.edit(files, case.change | {impl.other_target: 3})
    message = str(info.value)
    assert message.startswith(f"{impl.other_target}: not {impl.editor.describes}; ")
    assert f"only {impl.editor.target.value}.* changes" in message and "\n" not in message


def test_an_unknown_or_misspelt_parameter_is_refused_with_a_suggestion(impl):
    case = next(iter(impl.cases.values()))
    name, suggestion = impl.misspelt
    with pytest.raises(ParameterError, match=f"did you mean {re.escape(suggestion)}"):
        impl.editor.edit(case.texts(), {name: "1"})
    with pytest.raises(ParameterError, match="is not a tuning parameter"):
        impl.editor.edit(case.texts(), {"heap": "2g"})


def test_a_bad_value_is_refused_naming_the_parameter(impl):
    case = next(iter(impl.cases.values()))
    name, value = impl.bad_value
    with pytest.raises(ParameterError, match=f"^{re.escape(name)}: "):
        impl.editor.edit(case.texts(), case.change | {name: value})


def test_a_file_of_another_kind_is_refused_naming_the_file(impl):
    if impl.not_this_kind is None:
        pytest.skip(impl.reason)
    name = impl.not_this_kind
    change = next(iter(impl.cases.values())).change
    with pytest.raises(EditorError, match=f"^{re.escape(name)}[:]"):
        impl.editor.edit({name: fixture(name)}, change)


# ---- files given together ------------------------------------------------------------------------


def test_files_are_edited_on_their_own_unless_they_are_one_configuration(impl):
    if impl.joint:
        pytest.skip("one configuration: tests/tuning/test_nginx_conf.py covers the split")
    files: dict[str, str] = {}
    for case in impl.cases.values():
        files |= case.texts()
    change = next(iter(impl.cases.values())).change
    together = impl.editor.edit(files, change)
    assert list(together) == list(files)
    for name, text in files.items():
        assert together[name] == impl.editor.edit({name: text}, change)[name]
