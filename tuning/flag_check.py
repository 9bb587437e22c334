"""JVM flags checked with each node's own java before any file changes or node restarts.

`java <flags> -version` runs through the node's transport with the java integrator.sh would
pick ($JAVACMD, the JAVA_HOME the script sets, $JAVA_HOME/bin/java, else PATH). A refusal becomes an ApplyError with the JVM's
own words and, for flags a newer JVM dropped, the known fix as an `eiperf tune apply` line.
What the node's JDK only warns about (a flag it ignores or deprecates, a flag on the old-Java
line of integrator.sh) comes back as notes, from the same static checks `tune apply --file`
runs (`tuning.jdk_checks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eicore.cluster import Cluster
from eicore.errors import EiperfError
from tuning.changes import ApplyError, FileChange
from tuning.integrator_sh import read_jvm_options
from tuning.jdk_checks import check_script, conditional_notes, script_flags
from tuning.jvm_flags import (
    FlagStatus,
    fix_arguments,
    legacy_flag_fixes,
    parse_refusal,
    validate_flags_command,
)
from tuning.node_java import java_major, node_java
from tuning.params import Value
from tuning.transport_pool import TransportPool

__all__ = ["check_jvm_flags", "java_major", "literal_jvm_flags", "node_java"]


def check_jvm_flags(
    cluster: Cluster,
    files: Iterable[FileChange],
    transports: TransportPool,
    changes: Mapping[str, Value | None] | None = None,
) -> list[str]:
    """Run `java <new flags> -version` on each node whose script changes; ApplyError if refused.

    Returns notes: what each node's JDK only warns about in its script (changed or not), and
    the flags of `changes` that stand on the script's old-Java line."""
    seen: dict[tuple[str, str, tuple[str, ...]], None] = {}
    majors: dict[tuple[str, str], int | None] = {}
    notes: list[str] = []
    for change in files:
        node = next((n for n in cluster.nodes if n.name == change.owner), None)
        if node is None or change.path != node.integrator_sh:
            continue
        t = transports.node(node)
        try:
            java = node_java(t, node.integrator_sh)  # the JAVA_HOME the script sets, if any
        except EiperfError:
            if change.changed:
                raise
            continue  # an unchanged script needs no java: nothing to warn about then
        if (t.host, java) not in majors:
            majors[t.host, java] = java_major(t, java)
        major = majors[t.host, java]
        name = change.name or f"{node.name}: bin/integrator.sh"
        if major is not None:
            notes += conditional_notes(change.old, name, changes or {}, major)
            notes += check_script(change.new, name, major).warnings
        flags = literal_jvm_flags(change.new, major)
        key = (t.host, java, tuple(flags))
        if not change.changed or key in seen:
            continue
        r = t.run(validate_flags_command(java, flags), timeout=60)
        output = r.stderr + r.stdout
        if r.ok:
            seen[key] = None
            continue
        refusal = parse_refusal(output)
        if not refusal:
            lines = output.strip().splitlines()
            refusal = lines[-1] if lines else f"exit {r.returncode}"
        advice = _fix_advice(flags, major)
        raise ApplyError(
            f"{node.name}: its JVM refuses the new flags ({refusal}){advice}; nothing was changed",
            node=node.name,
            jvm_message=refusal,
        )
    return notes


def literal_jvm_flags(script_text: str, major: int | None = None) -> list[str]:
    """The -X flags a start-up script passes on JDK `major` (unknown: 8 or later) that need no
    shell to expand (what we can check)."""
    return script_flags(read_jvm_options(script_text), major or 8)


def _fix_advice(flags: list[str], major: int | None) -> str:
    """The "; fix: ..." suffix naming a replacement for each legacy flag this java dropped."""
    if major is None:
        return ""
    fixes = [f for f in legacy_flag_fixes(flags, major) if f.status is FlagStatus.REFUSED]
    if not fixes:
        return ""
    parts = [f"{f.flag} -> {f.replacement or '(drop it)'} ({f.reason})" for f in fixes]
    command = " ".join(fix_arguments(fixes))
    return "; fix: " + "; ".join(parts) + f"; e.g. eiperf tune apply {command}"
