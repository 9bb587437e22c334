"""A start-up script's JVM options against the JDK that will run them, without running it.

`eiperf tune apply --file` has no node whose java it could ask, so it judges the script as it
would be after the change against a JDK major version (`--java-version`, else the local java):
the legacy flag table of `tuning.jvm_flags` (a refusal where that JDK cannot start, a warning
with the fix where it only ignores or deprecates a flag), collectors that JDK lacks, Metaspace
sanity, GC log flags of the other JDK's kind (-Xlog on 8, -Xloggc on 9+), and flags that stand
on the line EI 6.x's integrator.sh runs only for Java older than 1.8. Cluster mode runs the
same checks with each node's own java version for the warnings; a refusal there is the node's
java's own (`tuning.flag_check`). Pairs that no JDK accepts (-Xms above -Xmx, two collectors)
are the editor's (`tuning.integrator_sh`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tuning.edit import split_lines
from tuning.integrator_sh import JvmOptions, read_jvm_options, token_line
from tuning.jvm_flags import XX_FLAG, FlagStatus, fix_arguments, gc_log_fixes, legacy_flag_fixes
from tuning.params import Value, format_assignment, size_to_bytes

#: the JDKs EI 6.x runs on (integrator.sh prints an error for others)
EI_JDKS = (8, 11)
#: the class-metadata budget WSO2's guide gives EI (-XX:MaxPermSize=256m)
GUIDE_METASPACE = "256m"
_SMALL_METASPACE = size_to_bytes("128m")
_SHELL_TEXT = re.compile(r"[$\"'`\\]")
_OLD_JAVA_GUARD = re.compile(r"java_version\S*\"?\s*(?:\\?<\s*\"?1\.8|-lt\s+0?108)")


@dataclass(frozen=True)
class JdkFinding:
    """One thing a JDK would do with a script's flags: refuse to start (`refused`), or start
    and warn; where (file:line), why, and the `eiperf tune apply` arguments that fix it."""

    refused: bool
    where: str
    reason: str
    fix: tuple[str, ...] = ()

    def line(self) -> str:
        """The finding as one line: `file:line: reason; fix: --unset ... --set ...`."""
        stops = " (the JVM would not start)" if self.refused else ""
        fix = f"; fix: {' '.join(self.fix)}" if self.fix else ""
        return f"{self.where}: {self.reason}{stops}{fix}"


@dataclass
class JdkReport:
    """What JDK `java_major` would do with a script's flags."""

    java_major: int
    findings: list[JdkFinding] = field(default_factory=list)

    @property
    def refusals(self) -> list[JdkFinding]:
        """What keeps the JVM from starting."""
        return [f for f in self.findings if f.refused]

    @property
    def warnings(self) -> list[str]:
        """What it starts with but ignores or deprecates, one line each with its fix."""
        return [f.line() for f in self.findings if not f.refused]

    def refusal_line(self, name: str, given: Iterable[str] = (), command: str = "") -> str:
        """All refusals as the one line `tune apply --file` fails with, ending in the command
        that fixes them (`given` are the user's own arguments, kept in that command)."""
        refused = self.refusals
        reasons = "; ".join(f"{f.reason} ({f.where})" for f in refused)
        line = f"{name}: JDK {self.java_major} would not start with it: {reasons}"
        fix = [a for f in refused for a in f.fix]
        if fix:
            args = " ".join([*given, *dict.fromkeys(fix)])
            line += f"; fix: {command}{' ' if command else ''}{args}"
        return line + "; nothing was changed"


def script_flags(opts: JvmOptions, java_major: int) -> list[str]:
    """The literal -X flags the JVM gets from a script on JDK `java_major` (the tokens of EI
    6.x's old-Java line only below 8); shell text (`$JAVA_OPTS`, quotes) is left out."""
    tokens = [*opts.options, *opts.command_flags]
    if java_major < 8:
        tokens += opts.conditional
    return [t for t in tokens if t.startswith("-X") and not _SHELL_TEXT.search(t)]


def check_script(text: str, name: str, java_major: int) -> JdkReport:
    """What JDK `java_major` does with the JVM options of the start-up script `text`."""
    opts = read_jvm_options(text, name)
    flags = script_flags(opts, java_major)
    report = JdkReport(java_major)
    for fix in legacy_flag_fixes(flags, java_major):
        report.findings.append(JdkFinding(
            fix.status is FlagStatus.REFUSED, f"{name}:{token_line(text, fix.flag)}",
            fix.reason, tuple(fix_arguments([fix]))))
    for token, reason, fix in gc_log_fixes([*opts.options, *opts.command_flags], java_major):
        report.findings.append(JdkFinding(
            token.startswith("-Xlog:"), f"{name}:{token_line(text, token)}", reason, (fix,)))
    values = _flag_values(flags)
    _check_collectors(values, java_major, name, text, report)
    _check_metaspace(values, java_major, name, text, report)
    return report


def _flag_values(flags: list[str]) -> dict[str, str | bool]:
    """The -XX flags by name as the JVM takes them (the last one wins): "+"/"-" as True/False."""
    out: dict[str, str | bool] = {}
    for token in flags:
        m = XX_FLAG.match(token)
        if m:
            sign, flag, value = m.groups()
            out[flag] = (sign == "+") if sign else (value or "")
    return out


def _check_collectors(
    values: dict[str, str | bool], major: int, name: str, text: str, report: JdkReport
) -> None:
    """Collectors younger than the JDK, or still experimental in it."""
    unlocked = values.get("UnlockExperimentalVMOptions") is True
    for flag, since, production in (("UseZGC", 11, 15), ("UseEpsilonGC", 11, 99)):
        if values.get(flag) is not True:
            continue
        where = f"{name}:{token_line(text, '-XX:+' + flag)}"
        if major < since:
            report.findings.append(JdkFinding(
                True, where, f"JDK {major} has no -XX:+{flag} (it came in JDK {since})",
                ("--set jvm.gc=G1",) if flag == "UseZGC" else ()))
        elif major < production and not unlocked:
            report.findings.append(JdkFinding(
                True, where, f"-XX:+{flag} is experimental on JDK {major} and needs "
                "-XX:+UnlockExperimentalVMOptions",
                ("--set jvm.flag.UnlockExperimentalVMOptions=true",)))
    if values.get("UseShenandoahGC") is True and major < 12:
        report.findings.append(JdkFinding(
            False, f"{name}:{token_line(text, '-XX:+UseShenandoahGC')}",
            f"JDK {major} builds have Shenandoah only from some vendors (every JDK has it from "
            "12); the others refuse -XX:+UseShenandoahGC: check the java this script meets"))


def _check_metaspace(
    values: dict[str, str | bool], major: int, name: str, text: str, report: JdkReport
) -> None:
    """Metaspace flags on a JDK without Metaspace, MetaspaceSize above MaxMetaspaceSize, and a
    MaxMetaspaceSize too small for EI's class metadata."""
    most, start = values.get("MaxMetaspaceSize"), values.get("MetaspaceSize")
    if major < 8:
        for flag, value in (("MaxMetaspaceSize", most), ("MetaspaceSize", start)):
            if isinstance(value, str):
                report.findings.append(JdkFinding(
                    True, f"{name}:{token_line(text, f'-XX:{flag}=')}",
                    f"JDK {major} has no Metaspace and refuses -XX:{flag} (PermGen's "
                    "-XX:MaxPermSize bounds class metadata there)",
                    ("--unset jvm.max_metaspace" if flag == "MaxMetaspaceSize"
                     else "--unset jvm.flag.MetaspaceSize",)))
        return
    try:
        most_b = size_to_bytes(most) if isinstance(most, str) else None
        start_b = size_to_bytes(start) if isinstance(start, str) else None
    except ValueError:
        return
    where = f"{name}:{token_line(text, '-XX:MaxMetaspaceSize=')}"
    if most_b is not None and start_b is not None and start_b > most_b:
        report.findings.append(JdkFinding(
            False, where, f"-XX:MetaspaceSize={start} is above -XX:MaxMetaspaceSize={most}: the "
            "JVM starts, and the maximum caps it", (f"--set jvm.flag.MetaspaceSize={most}",)))
    if most_b is not None and most_b < _SMALL_METASPACE:
        report.findings.append(JdkFinding(
            False, where, f"-XX:MaxMetaspaceSize={most} is a small budget for EI's class "
            f"metadata (WSO2's guide gives it {GUIDE_METASPACE}); too small and EI stops with "
            "OutOfMemoryError: Metaspace", (f"--set jvm.max_metaspace={GUIDE_METASPACE}",)))


# ---- flags on EI 6.x's old-Java line ----------------------------------------------------------


def conditional_notes(
    text: str, name: str, changes: Mapping[str, Value | None], java_major: int
) -> list[str]:
    """For each changed flag that also (or only) stands on a line integrator.sh runs only for
    Java older than 1.8: that the editor left that line alone, and whether JDK `java_major`
    runs it."""
    opts = read_jvm_options(text, name)
    if not opts.conditional:
        return []
    seen = {
        m.group(2): token for token in opts.conditional if (m := XX_FLAG.match(token))
    }
    lines = split_lines(text)
    out = []
    for key, value in changes.items():
        flag = _flag_of(key)
        if flag is None or flag not in seen:
            continue
        token = seen[flag]
        number = token_line(text, token)
        guard = _guard(lines, number)
        asked = f"--unset {key}" if value is None else f"--set {format_assignment(key, value)}"
        if guard is None:
            runs = "a line that appends to JVM_MEM_OPTS, which eiperf does not edit"
        elif java_major >= 8:
            runs = (f"the line the script runs only for Java older than 1.8 (its 'if' on line "
                    f"{guard}); JDK {java_major} never runs it, so it does not apply")
        else:
            runs = (f"the line the script runs only for Java older than 1.8 (its 'if' on line "
                    f"{guard}); JDK {java_major} runs it: edit that line by hand")
        out.append(f"{name}:{number}: {token} stands on {runs}; {asked} left it alone")
    return out


def _flag_of(key: str) -> str | None:
    if key.startswith("jvm.flag."):
        return key.removeprefix("jvm.flag.")
    return {"jvm.max_metaspace": "MaxMetaspaceSize"}.get(key)


def _guard(lines: list[str], number: int) -> int | None:
    """The line number of the `if` that guards line `number` when it tests for a Java older
    than 1.8 (EI 6.0: `"$java_version" \\< "1.8"`, 6.6: `-lt 0108`); None otherwise."""
    depth = 0
    for i in range(number - 2, -1, -1):
        body = lines[i].strip()
        if re.match(r"fi\b", body):
            depth += 1
        elif re.match(r"if\b", body):
            if depth == 0:
                return i + 1 if _OLD_JAVA_GUARD.search(body) else None
            depth -= 1
    return None
