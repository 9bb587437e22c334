"""A start-up script against the JDK it will meet, without running it (`tune apply --file`):
warnings with the fix where the JDK only ignores or deprecates a flag, a refusal where it would
not start, and flags on EI 6.x's old-Java line. On files shaped like the product's own: the EI
6.0 / 6.6 integrator.sh, an old Carbon wso2server.sh with CRLF line ends and the guide's
`-Xms256m -Xmx1024m -XX:MaxPermSize=256m`, and one with a JDK 7 guide's CMS flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from eicore.errors import ConfigError
from tuning.changes import edit_file, file_settings
from tuning.edit import EditorError
from tuning.jdk_checks import check_script, conditional_notes
from tuning.params import ParamSet, Target

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


# ---- the guide's MaxPermSize in a legacy CRLF wso2server.sh, given jvm.xmx=2g -----------------


@pytest.mark.parametrize("jdk", [8, 11])
def test_maxpermsize_is_a_warning_with_its_fix_where_the_jdk_ignores_it(jdk):
    result = edit_file("wso2server.sh", fixture("wso2server-crlf.sh"),
                       ParamSet({"jvm.xmx": "2g"}), jdk)
    assert result.edit.changed and "-Xmx2g -XX:MaxPermSize=256m \\\r\n" in result.edit.new_text
    assert result.notes == (
        f"wso2server.sh:124: JDK {jdk} ignores -XX:MaxPermSize (with a warning): PermGen went in "
        "JDK 8; -XX:MaxMetaspaceSize bounds class metadata instead; fix: --unset "
        "jvm.flag.MaxPermSize --set jvm.max_metaspace=256m",)
    assert result.java_major == jdk


def test_maxpermsize_is_refused_where_the_jdk_cannot_start_with_the_fix_to_run():
    with pytest.raises(ConfigError) as info:
        edit_file("wso2server.sh", fixture("wso2server-crlf.sh"), ParamSet({"jvm.xmx": "2g"}), 17,
                  "eiperf tune apply --file conf/wso2server.sh")
    message = str(info.value)
    assert message == (
        "wso2server.sh: JDK 17 would not start with it: JDK 17 refuses -XX:MaxPermSize: PermGen "
        "went in JDK 8; -XX:MaxMetaspaceSize bounds class metadata instead (wso2server.sh:124); "
        "fix: eiperf tune apply --file conf/wso2server.sh --set jvm.xmx=2g --unset "
        "jvm.flag.MaxPermSize --set jvm.max_metaspace=256m; nothing was changed")
    # the fix it names is accepted by JDK 17
    fixed = edit_file("wso2server.sh", fixture("wso2server-crlf.sh"), ParamSet(
        {"jvm.xmx": "2g", "jvm.flag.MaxPermSize": None, "jvm.max_metaspace": "256m"}), 17)
    assert fixed.notes == ()
    assert "    -Xms256m -Xmx2g -XX:MaxMetaspaceSize=256m \\\r\n" in fixed.edit.new_text


def test_xms_above_the_files_xmx_is_refused_whatever_the_jdk():
    for jdk in (8, 11, 17):
        with pytest.raises(EditorError, match=r"^integrator.sh:184: -Xms2g would be above "
                           r"-Xmx1024m"):
            edit_file("integrator.sh", fixture("integrator.sh"), ParamSet({"jvm.xms": "2g"}), jdk)


# ---- CMS / ParNew / PermSize from a JDK 7 guide, on each JDK EI runs on -----------------------


def test_a_jdk_7_guides_flags_on_jdk_8_11_and_17():
    text = fixture("wso2server-cms-crlf.sh")
    on8 = check_script(text, "wso2server.sh", 8)
    assert on8.refusals == []
    assert [w.split(":")[1] for w in on8.warnings] == ["125", "125"]  # PermSize, MaxPermSize
    on11 = check_script(text, "wso2server.sh", 11)
    assert [f.where for f in on11.refusals] == ["wso2server.sh:126"]
    assert "JDK 11 refuses -XX:+UseParNewGC" in on11.refusals[0].reason
    assert on11.refusals[0].fix == ("--unset jvm.flag.UseParNewGC",)
    assert any("JDK 11 warns that -XX:+UseConcMarkSweepGC is deprecated" in w
               for w in on11.warnings)
    on17 = check_script(text, "wso2server.sh", 17)
    assert len(on17.refusals) == 5 and on17.warnings == []
    with pytest.raises(ConfigError, match=r"^wso2server.sh: JDK 11 would not start with it: "
                       r"JDK 11 refuses -XX:\+UseParNewGC.*--set jvm.xmx=2g --unset "
                       r"jvm.flag.UseParNewGC; nothing was changed$"):
        edit_file("wso2server.sh", text, ParamSet({"jvm.xmx": "2g"}), 11, "eiperf tune apply")
    fixed = edit_file("wso2server.sh", text,
                      ParamSet({"jvm.xmx": "2g", "jvm.flag.UseParNewGC": None}), 11)
    assert "    -XX:+UseConcMarkSweepGC -XX:+CMSClassUnloadingEnabled \\\r\n" in fixed.edit.new_text


# ---- collectors and Metaspace ----------------------------------------------------------------


def test_collectors_the_jdk_lacks_or_keeps_experimental():
    text = fixture("integrator.sh")
    zgc = edit_file("integrator.sh", text, ParamSet({"jvm.gc": "ZGC"}), 17)
    assert zgc.notes == ()
    with pytest.raises(ConfigError, match="JDK 11 would not start with it: -XX:\\+UseZGC is "
                       "experimental on JDK 11 and needs -XX:\\+UnlockExperimentalVMOptions"):
        edit_file("integrator.sh", text, ParamSet({"jvm.gc": "ZGC"}), 11)
    unlocked = ParamSet({"jvm.gc": "ZGC", "jvm.flag.UnlockExperimentalVMOptions": True})
    assert edit_file("integrator.sh", text, unlocked, 11).notes == ()
    with pytest.raises(ConfigError, match="JDK 8 has no -XX:\\+UseZGC"):
        edit_file("integrator.sh", text, ParamSet({"jvm.gc": "ZGC"}), 8)
    [shenandoah] = edit_file("integrator.sh", text, ParamSet({"jvm.gc": "Shenandoah"}), 11).notes
    assert "Shenandoah only from some vendors" in shenandoah


def test_metaspace_sanity():
    text = fixture("integrator.sh")
    small = edit_file("integrator.sh", text, ParamSet({"jvm.max_metaspace": "64m"}), 11)
    assert small.notes == (
        "integrator.sh:184: -XX:MaxMetaspaceSize=64m is a small budget for EI's class metadata "
        "(WSO2's guide gives it 256m); too small and EI stops with OutOfMemoryError: Metaspace; "
        "fix: --set jvm.max_metaspace=256m",)
    above = edit_file("integrator.sh", text, ParamSet(
        {"jvm.max_metaspace": "256m", "jvm.flag.MetaspaceSize": "512m"}), 11)
    assert above.notes == (
        "integrator.sh:184: -XX:MetaspaceSize=512m is above -XX:MaxMetaspaceSize=256m: the JVM "
        "starts, and the maximum caps it; fix: --set jvm.flag.MetaspaceSize=256m",)
    with pytest.raises(ConfigError, match="JDK 7 has no Metaspace and refuses "
                       "-XX:MaxMetaspaceSize"):
        edit_file("integrator.sh", text, ParamSet({"jvm.max_metaspace": "256m"}), 7)


# ---- a flag on EI 6.x's old-Java line (--unset jvm.flag.MaxPermSize) -------------------------


@pytest.mark.parametrize(("name", "line", "guard"),
                         [("integrator.sh", 186, 185), ("integrator-ei600.sh", 196, 195)])
def test_a_flag_on_the_old_java_line_is_said_to_be_left_alone(name, line, guard):
    text = fixture(name)
    result = edit_file(name, text, ParamSet({"jvm.flag.MaxPermSize": None}), 11)
    assert not result.edit.changed
    assert result.notes == (
        f"{name}:{line}: -XX:MaxPermSize=256m stands on the line the script runs only for Java "
        f"older than 1.8 (its 'if' on line {guard}); JDK 11 never runs it, so it does not "
        "apply; --unset jvm.flag.MaxPermSize left it alone",)
    [on7] = conditional_notes(text, name, {"jvm.flag.MaxPermSize": None}, 7)
    assert "JDK 7 runs it: edit that line by hand" in on7
    # a flag only the main line has is edited there, and nothing is said about the old line
    set_it = edit_file(name, text, ParamSet({"jvm.flag.MaxPermSize": "512m"}), 8)
    assert set_it.edit.changed and "left it alone" in set_it.notes[0]
    assert conditional_notes(text, name, {"jvm.xmx": "2g"}, 11) == []


# ---- one file's settings (`tune show --file`) --------------------------------------------------


def test_file_settings_in_the_parameter_namespace():
    kind, settings, notes = file_settings("integrator.sh", fixture("integrator.sh"))
    assert kind is Target.JVM
    assert settings["jvm.xms"] == "256m" and settings["jvm.xmx"] == "1024m"
    assert settings["jvm.options_line"] == "-Xms256m -Xmx1024m (integrator.sh:184)"
    assert notes == ["integrator.sh:186: -XX:MaxPermSize=256m only for Java older than 1.8"]
    kind, settings, notes = file_settings("nginx.conf", fixture("nginx-stream.conf"))
    assert kind is Target.NGINX
    assert settings["nginx.proxy_read_timeout"] == ["300s (nginx.conf:53)"]
    assert settings["nginx.max_fails"] == [
        "3 (nginx.conf:40)", "3 (nginx.conf:41)", "1 (default, nginx.conf:42)"]
    assert notes[0].startswith("nginx.conf:12: stream {} not read: ")
    kind, settings, notes = file_settings(
        "passthru-http.properties", fixture("passthru-http-ops-crlf.properties"))
    assert kind is Target.PASSTHRU and notes == []
    assert settings == {"passthru.http.socket.timeout": "120000",
                        "passthru.worker_pool_size_core": "150",
                        "passthru.worker_pool_queue_length": "1000",
                        "passthru.io_buffer_size": "16384"}
