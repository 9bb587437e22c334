"""JVM -XX flags against the JDK that must accept them: the known refusals and their fixes,
and the cheap `java <flags> -version` check (this module builds the argv and reads the answer;
running it belongs to node control).

Measured on JDK 17: -XX:MaxPermSize, -XX:PermSize, CMS, ParNew, ParallelOld and the pre-JDK 9
GC-logging flags stop the JVM ("Unrecognized VM option ..."), so the guide's own
`-XX:MaxPermSize=256m` keeps a node from starting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tuning.edit import EditorError
from tuning.params import Value

XX_FLAG = re.compile(r"-XX:([+-]?)([A-Za-z][A-Za-z0-9_]*)(?:=(.*))?$", re.DOTALL)

# The flag each `jvm.gc` choice sets, and every flag that selects a collector.
GC_FLAGS = {
    "G1": "UseG1GC",
    "Parallel": "UseParallelGC",
    "ZGC": "UseZGC",
    "Shenandoah": "UseShenandoahGC",
    "Serial": "UseSerialGC",
}
GC_BY_FLAG = {flag: gc for gc, flag in GC_FLAGS.items()} | {
    "UseParallelOldGC": "Parallel",
    "UseConcMarkSweepGC": "CMS",
    "UseParNewGC": "ParNew",
    "UseEpsilonGC": "Epsilon",
}
# Collector flags a JDK refuses from this major version on.
_REMOVED_GC = {"UseParNewGC": 10, "UseConcMarkSweepGC": 14, "UseParallelOldGC": 16}


@dataclass(frozen=True)
class FlagFix:
    """A flag a JDK refuses, what to use instead (None: drop it), why, and the same as changes."""

    flag: str
    replacement: str | None
    reason: str
    changes: dict[str, Value | None]


def flag_name(token: str) -> str | None:
    """The name of a -XX flag token (`-XX:+UseG1GC` -> `UseG1GC`); None for anything else."""
    m = XX_FLAG.match(token)
    return m.group(2) if m else None


# ---- flags a newer JDK refuses ---------------------------------------------------------------

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


def legacy_flag_fixes(flags: Iterable[str], java_major: int) -> list[FlagFix]:
    """Fixes for flags that JDK `java_major` refuses at start-up ("Unrecognized VM option").

    MaxPermSize/PermSize -> MaxMetaspaceSize/MetaspaceSize from JDK 8; CMS -> G1 from JDK 14
    (ParNew from 10, when it was removed) with the CMS-only tuning flags dropped;
    ParallelOld -> Parallel from 16; the pre-JDK 9 GC-logging flags dropped from 9.
    """
    flags = list(flags)
    names = {flag_name(f) for f in flags}
    surviving_gc = any(
        f.startswith("-XX:+")
        and flag_name(f) in GC_BY_FLAG
        and java_major < _REMOVED_GC.get(flag_name(f) or "", 999)
        for f in flags
    )
    fixes: list[FlagFix] = []
    replaced_gc = False
    for flag in flags:
        m = XX_FLAG.match(flag)
        if not m:
            continue
        sign, name, value = m.groups()
        drop: dict[str, Value | None] = {f"jvm.flag.{name}": None}
        if name in ("MaxPermSize", "PermSize") and java_major >= 8:
            new = "MaxMetaspaceSize" if name == "MaxPermSize" else "MetaspaceSize"
            reason = (
                f"JDK 8 removed PermGen and JDK {java_major} refuses -XX:{name}; "
                f"-XX:{new} bounds class metadata instead"
            )
            if new in names or value is None:
                fixes.append(FlagFix(flag, None, reason, drop))
            else:
                key = "jvm.max_metaspace" if new == "MaxMetaspaceSize" else f"jvm.flag.{new}"
                fixes.append(FlagFix(flag, f"-XX:{new}={value}", reason, drop | {key: value}))
        elif name in _REMOVED_GC and java_major >= _REMOVED_GC[name]:
            gc = "Parallel" if name == "UseParallelOldGC" else "G1"
            reason = f"JDK {_REMOVED_GC[name]} removed -XX:{name}; use the {gc} collector"
            if sign == "+" and not surviving_gc and not replaced_gc:
                replaced_gc = True
                fixes.append(FlagFix(flag, f"-XX:+{GC_FLAGS[gc]}", reason, {"jvm.gc": gc}))
            else:
                fixes.append(FlagFix(flag, None, reason, drop))
        elif re.match(r"(Use)?CMS", name) and java_major >= 14:
            reason = f"-XX:{name} tunes CMS, which JDK 14 removed; G1 does not need it"
            fixes.append(FlagFix(flag, None, reason, drop))
        elif name in _GC_LOG and java_major >= 9:
            reason = f"JDK 9 replaced -XX:{name} with unified logging; use -Xlog:gc* instead"
            fixes.append(FlagFix(flag, None, reason, drop))
    return fixes


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
