"""The start-up script editor: both script forms, byte-exact edits, and flags checked by a real JVM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from tuning.edit import EditorError, split_lines
from tuning.integrator_sh import (
    ScriptForm,
    apply_flag_fixes,
    apply_jvm_changes,
    fixes_as_changes,
    legacy_flag_fixes,
    parse_java_version_output,
    parse_refusal,
    read_jvm_options,
    validate_flags_command,
)
from tuning.params import ParameterError

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]
SCRIPTS = ["integrator.sh", "integrator-ei600.sh", "wso2server.sh", "wso2server-crlf.sh"]
JAVA = shutil.which("java")
needs_java = pytest.mark.skipif(JAVA is None, reason="no java on PATH")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff, without their +/- and line ends."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return (
        [line[1:].rstrip("\r") for line in body if line.startswith("-")],
        [line[1:].rstrip("\r") for line in body if line.startswith("+")],
    )


def run_java(flags: list[str]) -> subprocess.CompletedProcess[str]:
    assert JAVA is not None
    argv = validate_flags_command(JAVA, flags)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


# ---- reading ---------------------------------------------------------------------------------


def test_reads_the_testbed_template_as_rendered():
    text = fixture("integrator.sh")
    options = read_jvm_options(text)
    assert options.form is ScriptForm.JVM_MEM_OPTS
    assert (options.xms, options.xmx, options.gc, options.max_metaspace) == (
        "256m",
        "1024m",
        None,
        None,
    )
    assert options.options == ("-Xms256m", "-Xmx1024m")
    assert split_lines(text)[options.lines[0] - 1] == '   JVM_MEM_OPTS="-Xms256m -Xmx1024m"\n'
    # The old-Java append line is read, but it does not run on Java 8 and later.
    assert options.conditional == ("-XX:MaxPermSize=256m",)
    assert options.command_flags[0] == "-XX:+HeapDumpOnOutOfMemoryError"
    assert options.flags["HeapDumpOnOutOfMemoryError"] is True
    assert options.as_params()["jvm.xmx"] == "1024m"


def test_the_live_testbed_template_is_still_understood():
    source = (REPO / "testbed/templates/integrator.sh.j2").read_text()
    text = jinja2.Template(source, keep_trailing_newline=True).render(main_class="EiNode")
    assert read_jvm_options(text).form is ScriptForm.JVM_MEM_OPTS
    edit = apply_jvm_changes(text, {"jvm.xmx": "2g"})
    assert changed_lines(edit.diff)[1] == ['   JVM_MEM_OPTS="-Xms256m -Xmx2g"']


def test_reads_an_ei_6_0_script():
    options = read_jvm_options(fixture("integrator-ei600.sh"))
    assert options.form is ScriptForm.JVM_MEM_OPTS
    assert (options.xms, options.xmx) == ("256m", "1024m")
    assert options.conditional == ("-XX:MaxPermSize=256m",)


@pytest.mark.parametrize("name", ["wso2server.sh", "wso2server-crlf.sh"])
def test_reads_the_literal_line_of_an_old_carbon_script(name):
    options = read_jvm_options(fixture(name), name)
    assert options.form is ScriptForm.LITERAL
    assert options.options == ("-Xms256m", "-Xmx1024m", "-XX:MaxPermSize=256m")
    assert options.flags["MaxPermSize"] == "256m"
    assert options.conditional == ()
    assert options.as_params()["jvm.flag.MaxPermSize"] == "256m"


def test_later_flags_win_as_in_hotspot():
    text = 'JVM_MEM_OPTS="-Xmx1g -XX:+UseG1GC -Xmx2g -XX:+UseParallelGC -XX:-UseParallelGC"\n'
    options = read_jvm_options(text)
    assert options.xmx == "2g" and options.gc is None
    assert read_jvm_options('JVM_MEM_OPTS="-XX:+UseConcMarkSweepGC"\n').as_params() == {
        "jvm.gc": "CMS"  # a named GC since JDK 8/11 nodes run it
    }


def test_a_file_without_jvm_options_is_refused_with_one_line():
    with pytest.raises(EditorError) as info:
        read_jvm_options("#!/bin/sh\nexec java -jar app.jar\n", "wso2server.sh")
    message = str(info.value)
    assert message.startswith("wso2server.sh: no JVM memory options found")
    assert "integrator.sh or wso2server.sh" in message and "\n" not in message
    with pytest.raises(EditorError, match="^ei.http.conf: no JVM memory options"):
        apply_jvm_changes(fixture("ei.http.conf"), {"jvm.xmx": "2g"}, "ei.http.conf")


# ---- editing: bytes kept, diffs minimal ---------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_change_returns_identical_bytes(name):
    text = fixture(name)
    edit = apply_jvm_changes(text, {}, name)
    assert edit.new_text == text and edit.diff == "" and not edit.changed
    same = apply_jvm_changes(text, {"jvm.xmx": "1024m", "jvm.xms": "256m"}, name)
    assert same.new_text == text and not same.changed


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize(
    "flag",
    [
        "jvm.flag.UseStringDeduplication",
        "jvm.gc",
        "jvm.max_metaspace",
        "jvm.flag.ParallelGCThreads",
    ],
)
def test_removing_a_flag_you_added_restores_the_original(name, flag):
    text = fixture(name)
    value = {"jvm.gc": "ZGC", "jvm.max_metaspace": "512m", "jvm.flag.ParallelGCThreads": "4"}.get(
        flag, True
    )
    added = apply_jvm_changes(text, {flag: value}, name)
    assert added.changed
    assert apply_jvm_changes(added.new_text, {flag: None}, name).new_text == text


def test_diff_touches_only_the_options_line():
    edit = apply_jvm_changes(
        fixture("integrator.sh"),
        {"jvm.xms": "1g", "jvm.xmx": "2g", "jvm.gc": "ZGC", "jvm.max_metaspace": "512m"},
    )
    assert changed_lines(edit.diff) == (
        ['   JVM_MEM_OPTS="-Xms256m -Xmx1024m"'],
        ['   JVM_MEM_OPTS="-Xms1g -Xmx2g -XX:+UseZGC -XX:MaxMetaspaceSize=512m"'],
    )
    assert edit.diff.startswith("--- a/integrator.sh\n+++ b/integrator.sh\n@@ -181,7 +181,7 @@\n")
    options = read_jvm_options(edit.new_text)
    assert (options.xms, options.xmx, options.gc, options.max_metaspace) == (
        "1g",
        "2g",
        "ZGC",
        "512m",
    )


def test_literal_line_is_edited_in_place_keeping_its_backslash():
    edit = apply_jvm_changes(fixture("wso2server.sh"), {"jvm.xmx": "2g"}, "wso2server.sh")
    assert changed_lines(edit.diff) == (
        ["    -Xms256m -Xmx1024m -XX:MaxPermSize=256m \\"],
        ["    -Xms256m -Xmx2g -XX:MaxPermSize=256m \\"],
    )


def test_crlf_line_ends_trailing_whitespace_and_missing_final_newline_are_kept():
    text = fixture("wso2server-crlf.sh")
    assert "\r\n" in text and not text.endswith("\n") and 'here"   \t\r\n' in text
    edit = apply_jvm_changes(
        text, {"jvm.xms": "2g", "jvm.xmx": "2g", "jvm.gc": "G1"}, "wso2server-crlf.sh"
    )
    old, new = split_lines(text), split_lines(edit.new_text)
    assert len(old) == len(new)
    differing = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    assert len(differing) == 1
    assert new[differing[0]] == "    -Xms2g -Xmx2g -XX:MaxPermSize=256m -XX:+UseG1GC \\\r\n"
    assert "-    -Xms256m -Xmx1024m -XX:MaxPermSize=256m \\\r\n" in edit.diff
    assert "\\ No newline at end of file" not in edit.diff  # the last line is not in the hunk


def test_setting_a_collector_replaces_the_others():
    text = 'if [ -z "$JVM_MEM_OPTS" ]; then\n   JVM_MEM_OPTS="-Xmx1g -XX:+UseParallelGC -XX:ParallelGCThreads=2 -XX:+UseSerialGC"\nfi\n'
    edit = apply_jvm_changes(text, {"jvm.gc": "Shenandoah"})
    assert changed_lines(edit.diff)[1] == [
        '   JVM_MEM_OPTS="-Xmx1g -XX:+UseShenandoahGC -XX:ParallelGCThreads=2"'
    ]
    cleared = apply_jvm_changes(edit.new_text, {"jvm.gc": None})
    assert read_jvm_options(cleared.new_text).gc is None


def test_a_flag_on_the_java_command_is_edited_where_it_stands():
    # HotSpot takes the last occurrence, and the command's own flags follow $JVM_MEM_OPTS.
    edit = apply_jvm_changes(
        fixture("integrator.sh"), {"jvm.flag.HeapDumpOnOutOfMemoryError": False}
    )
    assert changed_lines(edit.diff) == (
        ["    -XX:+HeapDumpOnOutOfMemoryError \\"],
        ["    -XX:-HeapDumpOnOutOfMemoryError \\"],
    )
    assert read_jvm_options(edit.new_text).flags["HeapDumpOnOutOfMemoryError"] is False


def test_removing_a_flag_from_the_java_command_drops_its_line():
    text = fixture("integrator-ei600.sh")
    edit = apply_jvm_changes(text, {"jvm.flag.HeapDumpPath": None}, "integrator-ei600.sh")
    assert changed_lines(edit.diff) == (
        ['    -XX:HeapDumpPath="$CARBON_HOME/repository/logs/heap-dump.hprof" \\'],
        [],
    )
    assert "HeapDumpPath" not in read_jvm_options(edit.new_text).flags


def test_a_duplicate_flag_keeps_its_first_place_only():
    text = 'JVM_MEM_OPTS="-XX:+UseNUMA -Xmx1g -XX:-UseNUMA"\n'
    edit = apply_jvm_changes(text, {"jvm.flag.UseNUMA": True})
    assert edit.new_text == 'JVM_MEM_OPTS="-XX:+UseNUMA -Xmx1g"\n'


def test_an_unquoted_value_gets_quotes_when_it_grows():
    edit = apply_jvm_changes("JVM_MEM_OPTS=-Xmx1g\n", {"jvm.xms": "1g"})
    assert edit.new_text == 'JVM_MEM_OPTS="-Xmx1g -Xms1g"\n'


def test_an_empty_default_gets_its_first_flag_without_padding():
    edit = apply_jvm_changes("JVM_MEM_OPTS=''\n", {"jvm.xmx": "1g"})
    assert edit.new_text == "JVM_MEM_OPTS='-Xmx1g'\n"


def test_removing_the_whole_literal_line_is_refused():
    with pytest.raises(EditorError) as info:
        apply_jvm_changes(
            fixture("wso2server.sh"), {"jvm.xms": None, "jvm.xmx": None}, "wso2server.sh"
        )
    assert str(info.value) == (
        "wso2server.sh: removing both -Xms and -Xmx would leave the java command without its "
        "memory options line; set them instead"
    )


def test_only_jvm_parameters_and_valid_values_are_taken():
    with pytest.raises(
        ParameterError,
        match=r"^nginx.max_fails: not a JVM parameter; integrator.sh takes only jvm.\* changes$",
    ):
        apply_jvm_changes(fixture("integrator.sh"), {"nginx.max_fails": 3})
    with pytest.raises(ParameterError, match=r"^jvm.xmx: '2x' is not a size; use e.g. 512m or 2g$"):
        apply_jvm_changes(fixture("integrator.sh"), {"jvm.xmx": "2x"})


# ---- legacy flags in a script ------------------------------------------------------------------


def test_fixing_an_old_script_rewrites_only_its_options_line():
    text = fixture("wso2server.sh")
    options = read_jvm_options(text, "wso2server.sh")
    fixes = legacy_flag_fixes(options.options + options.command_flags, 17)
    edit = apply_jvm_changes(text, fixes_as_changes(fixes), "wso2server.sh")
    assert changed_lines(edit.diff) == (
        ["    -Xms256m -Xmx1024m -XX:MaxPermSize=256m \\"],
        ["    -Xms256m -Xmx1024m -XX:MaxMetaspaceSize=256m \\"],
    )


# ---- a real JVM ---------------------------------------------------------------------------------


@needs_java
def test_jdk_refuses_the_guides_flags_and_the_fixed_flags_pass():
    version = run_java([])
    assert version.returncode == 0
    major = parse_java_version_output(version.stderr)
    assert major >= 9

    text = fixture("wso2server.sh")
    options = read_jvm_options(text, "wso2server.sh")
    refused = run_java(list(options.options))
    assert refused.returncode == 1
    assert (
        parse_refusal(refused.stderr + refused.stdout)
        == "Unrecognized VM option 'MaxPermSize=256m'"
    )

    fixes = legacy_flag_fixes(options.options, major)
    assert [f.flag for f in fixes] == ["-XX:MaxPermSize=256m"]
    fixed = apply_flag_fixes(list(options.options), fixes)
    accepted = run_java(fixed)
    assert accepted.returncode == 0, accepted.stderr
    assert parse_refusal(accepted.stderr + accepted.stdout) is None

    # The same flags, as written into the script by the editor, pass too.
    edit = apply_jvm_changes(text, fixes_as_changes(fixes), "wso2server.sh")
    assert run_java(list(read_jvm_options(edit.new_text).options)).returncode == 0


# ---- pairs the JVM refuses, judged on the script as it would be --------------------------------


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("integrator.sh", {"jvm.xms": "2g"},
         "integrator.sh:184: -Xms2g would be above -Xmx1024m, which the JVM refuses (\"Initial "
         "heap size set to a larger value than the maximum heap size\"); set jvm.xmx too (e.g. "
         "jvm.xmx=2g) or a smaller jvm.xms"),
        ("wso2server-crlf.sh", {"jvm.xmx": "128m"},
         "wso2server-crlf.sh:124: -Xms256m would be above -Xmx128m, which the JVM refuses"),
        ("integrator-ei600.sh", {"jvm.xms": "1536m", "jvm.xmx": "1g"},
         "integrator-ei600.sh:194: -Xms1536m would be above -Xmx1g"),
    ],
)
def test_xms_above_the_scripts_xmx_is_refused(name, changes, message):
    with pytest.raises(EditorError) as info:
        apply_jvm_changes(fixture(name), changes, name)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_heap_pairs_that_hold_after_the_change_pass():
    for changes in ({"jvm.xms": "1024m"}, {"jvm.xms": "2g", "jvm.xmx": "2g"}, {"jvm.xmx": "256m"}):
        assert apply_jvm_changes(fixture("integrator.sh"), changes).changed, changes


def test_a_second_collector_is_refused_and_cms_with_parnew_is_one():
    text = fixture("integrator.sh").replace(
        'JVM_MEM_OPTS="-Xms256m -Xmx1024m"', 'JVM_MEM_OPTS="-Xms256m -Xmx1024m -XX:+UseG1GC"')
    with pytest.raises(EditorError, match=r"^integrator.sh: -XX:\+UseG1GC and "
                       r"-XX:\+UseConcMarkSweepGC would each select a garbage collector"):
        apply_jvm_changes(text, {"jvm.flag.UseConcMarkSweepGC": True})
    cms = apply_jvm_changes(text, {"jvm.gc": None, "jvm.flag.UseConcMarkSweepGC": True,
                                   "jvm.flag.UseParNewGC": True})
    assert "-XX:+UseConcMarkSweepGC -XX:+UseParNewGC" in cms.new_text
    assert "UseG1GC" not in cms.new_text
    assert apply_jvm_changes(text, {"jvm.gc": "Parallel"}).changed  # replaces, never adds


def test_the_old_java_line_is_read_with_its_line_number():
    for name, line in (("integrator.sh", 186), ("integrator-ei600.sh", 196)):
        options = read_jvm_options(fixture(name), name)
        assert options.conditional == ("-XX:MaxPermSize=256m",)
        assert options.conditional_lines == (line,)
    assert read_jvm_options(fixture("wso2server.sh")).conditional_lines == ()
