"""JDK flag checks: the known refusals and their fixes, confirmed against the real JVM."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import tuning.integrator_sh
from tuning.edit import EditorError
from tuning.jvm_flags import (
    FlagFix,
    FlagStatus,
    apply_flag_fixes,
    fix_arguments,
    fixes_as_changes,
    flag_name,
    legacy_flag_fixes,
    parse_java_version_output,
    parse_refusal,
    validate_flags_command,
)

JAVA = shutil.which("java")
needs_java = pytest.mark.skipif(JAVA is None, reason="no java on PATH")


def run_java(flags: list[str]) -> subprocess.CompletedProcess[str]:
    assert JAVA is not None
    argv = validate_flags_command(JAVA, flags)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_script_editor_offers_the_same_functions():
    for name in ("legacy_flag_fixes", "parse_refusal", "validate_flags_command", "FlagFix"):
        assert getattr(tuning.integrator_sh, name) is globals()[name]


def test_flag_name():
    assert flag_name("-XX:+UseG1GC") == "UseG1GC"
    assert flag_name("-XX:MaxMetaspaceSize=256m") == "MaxMetaspaceSize"
    assert flag_name("-Xmx1g") is None and flag_name("$JAVA_OPTS") is None


# ---- flags a newer JDK refuses -----------------------------------------------------------------


def test_maxpermsize_becomes_maxmetaspacesize_from_jdk_8():
    assert legacy_flag_fixes(["-XX:MaxPermSize=256m"], 7) == []
    [fix] = legacy_flag_fixes(["-Xmx1g", "-XX:MaxPermSize=256m"], 17)
    assert fix.flag == "-XX:MaxPermSize=256m"
    assert fix.replacement == "-XX:MaxMetaspaceSize=256m"
    assert "refuses" in fix.reason and "MaxMetaspaceSize" in fix.reason
    assert fix.changes == {"jvm.flag.MaxPermSize": None, "jvm.max_metaspace": "256m"}
    [perm] = legacy_flag_fixes(["-XX:PermSize=64m"], 8)
    assert perm.replacement == "-XX:MetaspaceSize=64m"
    [dup] = legacy_flag_fixes(["-XX:MaxPermSize=256m", "-XX:MaxMetaspaceSize=512m"], 11)
    assert dup.replacement is None


def test_cms_becomes_g1_from_jdk_14_and_cms_tuning_is_dropped():
    flags = [
        "-XX:+UseConcMarkSweepGC",
        "-XX:+UseParNewGC",
        "-XX:+CMSClassUnloadingEnabled",
        "-XX:CMSInitiatingOccupancyFraction=70",
        "-XX:+UseCMSInitiatingOccupancyOnly",
    ]
    fixes = legacy_flag_fixes(flags, 17)
    assert [f.replacement for f in fixes] == ["-XX:+UseG1GC", None, None, None, None]
    assert all(f.reason for f in fixes)
    assert apply_flag_fixes(flags, fixes) == ["-XX:+UseG1GC"]
    assert fixes_as_changes(fixes)["jvm.gc"] == "G1"
    # JDK 11 refuses ParNew (removed in 10): dropped, CMS picks its own young collector; CMS
    # itself only warns (deprecated), with G1 as its way out; its tuning flags still work.
    jdk11 = {f.flag: f for f in legacy_flag_fixes(flags, 11)}
    assert list(jdk11) == ["-XX:+UseConcMarkSweepGC", "-XX:+UseParNewGC"]
    parnew = jdk11["-XX:+UseParNewGC"]
    assert parnew.status is FlagStatus.REFUSED and parnew.replacement is None
    assert "CMS picks its young collector" in parnew.reason
    cms = jdk11["-XX:+UseConcMarkSweepGC"]
    assert cms.status is FlagStatus.DEPRECATED and cms.replacement == "-XX:+UseG1GC"
    assert legacy_flag_fixes(flags, 8) == []


@pytest.mark.parametrize(
    ("flag", "statuses"),
    [  # what JDK 8 / 11 / 17 do (measured: JDK 8, Temurin 11.0.13, Debian 17)
        ("-XX:MaxPermSize=256m", ["ignored", "ignored", "refused"]),
        ("-XX:PermSize=64m", ["ignored", "ignored", "refused"]),
        ("-XX:+UseConcMarkSweepGC", [None, "deprecated", "refused"]),
        ("-XX:+UseParNewGC", [None, "refused", "refused"]),
        ("-XX:+CMSClassUnloadingEnabled", [None, None, "refused"]),
        ("-XX:+PrintGCDateStamps", [None, "refused", "refused"]),
    ],
)
def test_what_jdk_8_11_and_17_do_with_each_legacy_flag(flag, statuses):
    for major, expected in zip((8, 11, 17), statuses, strict=True):
        fixes = legacy_flag_fixes([flag], major)
        assert [f.status.value for f in fixes] == ([expected] if expected else []), major
        for fix in fixes:
            assert f"JDK {major} " in fix.reason


def test_fix_arguments_are_tune_apply_arguments():
    fixes = legacy_flag_fixes(["-XX:MaxPermSize=256m", "-XX:+UseConcMarkSweepGC"], 17)
    assert fix_arguments(fixes) == [
        "--unset jvm.flag.MaxPermSize", "--set jvm.max_metaspace=256m", "--set jvm.gc=G1"]


def test_no_g1_is_added_when_a_supported_collector_is_chosen():
    [fix] = legacy_flag_fixes(["-XX:+UseParallelGC", "-XX:+UseConcMarkSweepGC"], 17)
    assert fix.replacement is None and fix.changes == {"jvm.flag.UseConcMarkSweepGC": None}


def test_parallel_old_and_old_gc_logging_flags():
    [old] = legacy_flag_fixes(["-XX:+UseParallelOldGC"], 17)
    assert old.replacement == "-XX:+UseParallelGC" and old.changes == {"jvm.gc": "Parallel"}
    [log] = legacy_flag_fixes(["-XX:+PrintGCDateStamps"], 9)
    assert log.replacement is None and "-Xlog:gc" in log.reason
    assert legacy_flag_fixes(["-XX:+PrintGCDetails", "-Xmx1g", "-XX:+UseG1GC"], 17) == []


def test_flag_fix_is_a_plain_record():
    fix = FlagFix("-XX:PermSize=1m", None, "why", {})
    assert fix.flag == "-XX:PermSize=1m"


def test_validate_flags_command_is_java_flags_version():
    assert validate_flags_command("/opt/jdk/bin/java", ["-Xmx1g", "-XX:+UseZGC"]) == [
        "/opt/jdk/bin/java",
        "-Xmx1g",
        "-XX:+UseZGC",
        "-version",
    ]


# ---- a real JVM ---------------------------------------------------------------------------------


@needs_java
@pytest.mark.parametrize(
    "flags",
    [
        ["-XX:+UseConcMarkSweepGC", "-XX:+UseParNewGC", "-XX:+CMSClassUnloadingEnabled"],
        ["-XX:PermSize=64m", "-XX:+PrintGCDateStamps", "-XX:+UseParallelOldGC"],
    ],
)
def test_every_legacy_fix_is_accepted_by_this_jdk(flags):
    major = parse_java_version_output(run_java([]).stderr)
    refused = run_java(flags)
    assert refused.returncode == 1
    assert parse_refusal(refused.stderr + refused.stdout).startswith("Unrecognized VM option")
    accepted = run_java(apply_flag_fixes(flags, legacy_flag_fixes(flags, major)))
    assert accepted.returncode == 0, accepted.stderr


@needs_java
def test_modern_collectors_pass_and_two_at_once_are_refused():
    for gc in ("UseG1GC", "UseParallelGC", "UseSerialGC", "UseZGC"):
        assert run_java([f"-XX:+{gc}"]).returncode == 0
    both = run_java(["-XX:+UseZGC", "-XX:+UseG1GC"])
    assert both.returncode == 1
    # HotSpot prints this one on stdout, not stderr: parse both.
    assert both.stderr == ""
    assert parse_refusal(both.stderr + both.stdout) == "Multiple garbage collectors selected"


@pytest.mark.parametrize(
    ("stderr", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "11" 2018-09-25\n', 11),
        ('openjdk version "21-ea" 2023-09-19\n', 21),
        ('java version "1.7.0_80"\n', 7),
    ],
)
def test_parse_java_version_output(stderr, major):
    assert parse_java_version_output(stderr) == major


def test_unparsable_java_version_is_one_line():
    with pytest.raises(EditorError) as info:
        parse_java_version_output("sh: 1: java: not found\n")
    assert str(info.value) == (
        "cannot find a Java version in the output of java -version: sh: 1: java: not found"
    )


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            "Unrecognized VM option 'UseParallelOldGC'\nDid you mean '(+/-)UseParallelGC'? "
            "Error: Could not create the Java Virtual Machine.\n"
            "Error: A fatal exception has occurred. Program will exit.\n",
            "Unrecognized VM option 'UseParallelOldGC' Did you mean '(+/-)UseParallelGC'?",
        ),
        (
            "Invalid maximum heap size: -Xmx2x\nError: Could not create the Java Virtual Machine.\n",
            "Invalid maximum heap size: -Xmx2x",
        ),
        (
            "Error occurred during initialization of VM\n"
            "Initial heap size set to a larger value than the maximum heap size\n",
            "Initial heap size set to a larger value than the maximum heap size",
        ),
        ('[0.001s][warning][gc] -XX:+PrintGCDetails is deprecated.\nopenjdk version "17"\n', None),
        ("Error: Could not create the Java Virtual Machine.\n", "the JVM could not be created"),
    ],
)
def test_parse_refusal(stderr, reason):
    assert parse_refusal(stderr) == reason
