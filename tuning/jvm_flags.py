"""JVM -XX flags against the JDK that must accept them: the known legacy flags and their fixes,
and the cheap `java <flags> -version` check (this module builds the argv and reads the answer;
running it belongs to node control).

What each JDK does with the flags WSO2's own guide and old start-up scripts carry (measured on
JDK 8, Temurin 11.0.13 and Debian's JDK 17; between those, HotSpot's obsolete-flag table):

* -XX:MaxPermSize, -XX:PermSize: valid up to JDK 7; JDK 8-16 ignore them with a warning
  ("support was removed in 8.0"), JDK 17 refuses them ("Unrecognized VM option").
* -XX:+UseConcMarkSweepGC: JDK 9-13 warn that CMS is deprecated and use it; JDK 14 ignores it
  (and runs G1); JDK 15 on refuse it. The CMS* tuning flags: ignored on 14, refused from 15.
* -XX:+UseParNewGC: deprecated on 9, refused from 10 (JDK 11 refuses it).
* -XX:+UseParallelOldGC: deprecated on 14, ignored on 15, refused from 16.
* the pre-unified-logging GC flags (-XX:+PrintGCDateStamps, ...): refused from 9.

So the guide's `-XX:MaxPermSize=256m` only warns on the JDKs EI 6.x runs on (8, 11), and keeps
a node from starting on 17.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from eicore.gclog import GC_LOG_DIR, gc_log_path
from tuning.edit import EditorError
from tuning.params import GC_LOG_OFF, Value, format_assignment

XX_FLAG = re.compile(r"-XX:([+-]?)([A-Za-z][A-Za-z0-9_]*)(?:=(.*))?$", re.DOTALL)

# The flag each `jvm.gc` choice sets, and every flag that selects a collector.
GC_FLAGS = {
    "G1": "UseG1GC",
    "Parallel": "UseParallelGC",
    "ZGC": "UseZGC",
    "Shenandoah": "UseShenandoahGC",
    "Serial": "UseSerialGC",
    "CMS": "UseConcMarkSweepGC",  # JDK 11 warns it is deprecated; JDK 15+ refuse it
}
GC_BY_FLAG = {flag: gc for gc, flag in GC_FLAGS.items()} | {
    "UseParallelOldGC": "Parallel",
    "UseConcMarkSweepGC": "CMS",
    "UseParNewGC": "ParNew",
    "UseEpsilonGC": "Epsilon",
}


class FlagStatus(StrEnum):
    """What a JDK does with a flag it no longer (fully) supports."""

    REFUSED = "refused"  # "Unrecognized VM option ...": the JVM does not start
    IGNORED = "ignored"  # "Ignoring option ...; support was removed in N": starts, no effect
    DEPRECATED = "deprecated"  # starts and uses it, warning that a later JDK drops it


@dataclass(frozen=True)
class _Lifecycle:
    """From which JDK a flag warns it is deprecated, is ignored, is refused (None: never)."""

    deprecated: int | None
    ignored: int | None
    refused: int

    def status(self, major: int) -> FlagStatus | None:
        if major >= self.refused:
            return FlagStatus.REFUSED
        if self.ignored is not None and major >= self.ignored:
            return FlagStatus.IGNORED
        if self.deprecated is not None and major >= self.deprecated:
            return FlagStatus.DEPRECATED
        return None


_PERM = _Lifecycle(None, 8, 17)
_CMS_TUNING = _Lifecycle(None, 14, 15)
_GC_LIFECYCLE = {
    "UseConcMarkSweepGC": _Lifecycle(9, 14, 15),
    "UseParNewGC": _Lifecycle(9, None, 10),
    "UseParallelOldGC": _Lifecycle(14, 15, 16),
}
_GC_LOG_LIFECYCLE = _Lifecycle(None, None, 9)


@dataclass(frozen=True)
class FlagFix:
    """A flag a JDK refuses, ignores or deprecates (`status`), what to use instead (None: drop
    it), why, and the same as parameter changes."""

    flag: str
    replacement: str | None
    reason: str
    changes: dict[str, Value | None]
    status: FlagStatus = FlagStatus.REFUSED


def flag_name(token: str) -> str | None:
    """The name of a -XX flag token (`-XX:+UseG1GC` -> `UseG1GC`); None for anything else."""
    m = XX_FLAG.match(token)
    return m.group(2) if m else None


# ---- flags a newer JDK refuses, ignores or deprecates ---------------------------------------

_GC_LOG = (
    "PrintGCDateStamps",
    "PrintGCTimeStamps",
    "PrintGCApplicationStoppedTime",
    "UseGCLogFileRotation",
    "NumberOfGCLogFiles",
    "GCLogFileSize",
    "PrintTenuringDistribution",
    "PrintHeapAtGC",
)


def _what(status: FlagStatus, major: int, flag: str) -> str:
    """How JDK `major` treats `flag`, as the start of a reason."""
    if status is FlagStatus.REFUSED:
        return f"JDK {major} refuses {flag}"
    if status is FlagStatus.IGNORED:
        return f"JDK {major} ignores {flag} (with a warning)"
    return f"JDK {major} warns that {flag} is deprecated"


def legacy_flag_fixes(flags: Iterable[str], java_major: int) -> list[FlagFix]:
    """Fixes for the flags JDK `java_major` refuses, ignores or deprecates (`FlagFix.status`).

    MaxPermSize/PermSize -> MaxMetaspaceSize/MetaspaceSize from JDK 8; CMS -> G1 (ParNew
    dropped when CMS stays) with the CMS-only tuning flags dropped once CMS is gone;
    ParallelOld -> Parallel; the pre-JDK 9 GC-logging flags dropped from 9.
    """
    flags = list(flags)
    names = {flag_name(f) for f in flags}

    def gc_status(name: str) -> FlagStatus | None:
        life = _GC_LIFECYCLE.get(name)
        return life.status(java_major) if life else None

    gone = (FlagStatus.REFUSED, FlagStatus.IGNORED)
    # a collector this JDK fully supports stays; else the first legacy one becomes G1/Parallel
    surviving_gc = any(
        f.startswith("-XX:+")
        and flag_name(f) in GC_BY_FLAG
        and gc_status(flag_name(f) or "") is None
        for f in flags
    )
    cms_stays = "UseConcMarkSweepGC" in names and gc_status("UseConcMarkSweepGC") not in gone
    fixes: list[FlagFix] = []
    replaced_gc = False
    for flag in flags:
        m = XX_FLAG.match(flag)
        if not m:
            continue
        sign, name, value = m.groups()
        drop: dict[str, Value | None] = {f"jvm.flag.{name}": None}
        if name in ("MaxPermSize", "PermSize") and (status := _PERM.status(java_major)):
            new = "MaxMetaspaceSize" if name == "MaxPermSize" else "MetaspaceSize"
            reason = (
                f"{_what(status, java_major, f'-XX:{name}')}: PermGen went in JDK 8; "
                f"-XX:{new} bounds class metadata instead"
            )
            if new in names or value is None:
                fixes.append(FlagFix(flag, None, reason, drop, status))
            else:
                key = "jvm.max_metaspace" if new == "MaxMetaspaceSize" else f"jvm.flag.{new}"
                fixes.append(
                    FlagFix(flag, f"-XX:{new}={value}", reason, drop | {key: value}, status)
                )
        elif name in _GC_LIFECYCLE and (status := gc_status(name)):
            gc = "Parallel" if name == "UseParallelOldGC" else "G1"
            removed = _GC_LIFECYCLE[name].ignored or _GC_LIFECYCLE[name].refused
            what = _what(status, java_major, f"-XX:{sign}{name}")
            reason = f"{what}: JDK {removed} removed it; use the {gc} collector"
            if name == "UseParNewGC" and cms_stays:
                reason = f"{what}: JDK {removed} removed it; CMS picks its young collector itself"
                fixes.append(FlagFix(flag, None, reason, drop, status))
            elif sign == "+" and not surviving_gc and not replaced_gc:
                replaced_gc = True
                fixes.append(
                    FlagFix(flag, f"-XX:+{GC_FLAGS[gc]}", reason, {"jvm.gc": gc}, status)
                )
            else:
                fixes.append(FlagFix(flag, None, reason, drop, status))
        elif re.match(r"(Use)?CMS", name) and (status := _CMS_TUNING.status(java_major)):
            reason = (
                f"{_what(status, java_major, f'-XX:{sign}{name}')}: it tunes CMS, which JDK 14 "
                "removed; G1 does not need it"
            )
            fixes.append(FlagFix(flag, None, reason, drop, status))
        elif name in _GC_LOG and (status := _GC_LOG_LIFECYCLE.status(java_major)):
            reason = (
                f"{_what(status, java_major, f'-XX:{sign}{name}')}: JDK 9 replaced it with "
                "unified logging; use -Xlog:gc* instead"
            )
            fixes.append(FlagFix(flag, None, reason, drop, status))
    return fixes


# ---- the GC log (`jvm.gc_log`): its flags depend on the JDK -----------------------------------

#: the first JDK with unified logging (-Xlog); it refuses the JDK 8 GC logging flags
UNIFIED_LOGGING_JDK = 9
#: where the start-up script has EI_HOME (Carbon scripts set it before the java command)
HOME_VARIABLE = "$CARBON_HOME"
_GC_LOG_TOKEN = re.compile(
    r"-Xloggc:|-Xlog:gc(?:[*+=,:]|$)"
    r"|-XX:[+-](?:PrintGCDetails|PrintGCDateStamps|PrintGCTimeStamps)$"
)


def gc_log_flags(path: str, java_major: int | None) -> list[str]:
    """The flags that have JDK `java_major` (None: 9 or later) write its GC log to `path`
    (relative to EI_HOME): unified `-Xlog:gc*` with wall-clock time from 9, PrintGCDetails +
    PrintGCDateStamps + -Xloggc on 8. The path starts with $CARBON_HOME, so the log lands in
    the node's logs whatever the working folder, and `java <flags> -version` checks never
    write to it (flags holding shell text are not run)."""
    where = f"{HOME_VARIABLE}/{path}"
    if java_major is not None and java_major < UNIFIED_LOGGING_JDK:
        return ["-XX:+PrintGCDetails", "-XX:+PrintGCDateStamps", f"-Xloggc:{where}"]
    return [f"-Xlog:gc*:file={where}:time,uptime,level,tags"]


def is_gc_log_flag(token: str) -> bool:
    """Whether a JVM option token belongs to GC logging (what `jvm.gc_log` sets or removes)."""
    return bool(_GC_LOG_TOKEN.match(token))


def gc_log_setting(tokens: Iterable[str]) -> str | None:
    """The `jvm.gc_log` value a script's option tokens amount to: the log file (relative to
    EI_HOME when it is under $CARBON_HOME), "off" when GC logging flags stand without a file,
    None when there are none."""
    tokens = list(tokens)
    path = gc_log_path(tokens)
    if path is None:
        return GC_LOG_OFF if any(is_gc_log_flag(t) for t in tokens) else None
    return re.sub(r"^\$\{?CARBON_HOME\}?/", "", path)


def gc_log_fixes(tokens: Iterable[str], java_major: int) -> list[tuple[str, str, str]]:
    """(token, reason, fix argument) for GC log flags of the other JDK's kind: -Xlog on JDK 8
    (refused), -Xloggc on 9+ (deprecated: it logs only the `gc` tag, without details)."""
    tokens = list(tokens)
    setting = gc_log_setting(tokens)
    out = []
    for token in tokens:
        if java_major < UNIFIED_LOGGING_JDK and token.startswith("-Xlog:"):
            why = f"JDK {java_major} has no unified logging (-Xlog came in JDK 9)"
        elif java_major >= UNIFIED_LOGGING_JDK and token.startswith("-Xloggc:"):
            why = (f"JDK {java_major} takes -Xloggc only as -Xlog:gc (no heap details, "
                   "deprecated)")
        else:
            continue
        value = setting if setting and setting.startswith(GC_LOG_DIR + "/") else "on"
        fix = f"--set jvm.gc_log={value}"
        out.append((token, f"{why}; jvm.gc_log writes the flags of the node's JDK", fix))
    return out


def fix_arguments(fixes: Iterable[FlagFix]) -> list[str]:
    """The `eiperf tune apply` arguments that make `fixes` (--unset NAME / --set NAME=VALUE)."""
    args: list[str] = []
    for fix in fixes:
        for name, value in fix.changes.items():
            args.append(
                f"--unset {name}" if value is None else f"--set {format_assignment(name, value)}"
            )
    return list(dict.fromkeys(args))


def fixes_as_changes(fixes: Iterable[FlagFix]) -> dict[str, Value | None]:
    """All fixes as one `jvm.*` change mapping for `apply_jvm_changes`."""
    changes: dict[str, Value | None] = {}
    for fix in fixes:
        changes.update(fix.changes)
    return changes


def apply_flag_fixes(flags: Sequence[str], fixes: Iterable[FlagFix]) -> list[str]:
    """`flags` with each fixed flag replaced in place (or dropped)."""
    by_flag = {fix.flag: fix.replacement for fix in fixes}
    out: list[str] = []
    for flag in flags:
        new = by_flag.get(flag, flag)
        if new is not None and not (flag in by_flag and new in out):
            out.append(new)
    return out


# ---- checking flags against a real JVM (node control runs the command) ------------------------

_BOILERPLATE = (
    "Error: Could not create the Java Virtual Machine.",
    "Error: A fatal exception has occurred. Program will exit.",
    "Error occurred during initialization of VM",
)


def validate_flags_command(java: str, flags: Sequence[str]) -> list[str]:
    """The argv `java <flags> -version`: exits 0 when the JVM accepts the flags (~50 ms).

    Give it literal flags: the script's tokens may hold shell text (`"$CARBON_HOME/..."`) that
    only the script would expand. Read the answer with `parse_refusal(stderr + stdout)`.
    """
    return [java, *flags, "-version"]


def parse_java_version_output(stderr: str) -> int:
    """The Java major version in `java -version` output ("1.8.0_292" -> 8, "17.0.15" -> 17)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', stderr)
    if not m:
        first = stderr.strip().splitlines()[0] if stderr.strip() else "(no output)"
        raise EditorError(f"cannot find a Java version in the output of java -version: {first}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def parse_refusal(output: str) -> str | None:
    """Why the JVM refused to start, as one line (e.g. "Unrecognized VM option
    'MaxPermSize=256m'"); None when the output shows no refusal.

    Pass stderr and stdout together: HotSpot prints option errors on stderr but errors found
    while initialising the VM ("Multiple garbage collectors selected", heap sizes) on stdout.
    """
    if not any(marker in output for marker in (_BOILERPLATE[0], _BOILERPLATE[2])):
        return None
    reasons = []
    for line in output.splitlines():
        for marker in _BOILERPLATE:
            line = line.replace(marker, "")
        line = line.strip()
        if line and not line.startswith(("[", "OpenJDK 64-Bit Server VM warning", "Java HotSpot")):
            reasons.append(line)
    return " ".join(reasons) or "the JVM could not be created"
