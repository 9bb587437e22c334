"""JVM flags checked with each node's own java before any file changes or node restarts.

`java <flags> -version` runs through the node's transport with the java integrator.sh would
pick ($JAVACMD, $JAVA_HOME/bin/java, else PATH). A refusal becomes an ApplyError with the JVM's
own words and, for flags a newer JVM dropped, the known fix as an `eiperf tune apply` line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from eicore.cluster import Cluster
from eicore.errors import EiperfError
from eicore.transport import NodeTransport
from tuning.changes import ApplyError, FileChange
from tuning.edit import EditorError
from tuning.integrator_sh import read_jvm_options
from tuning.jvm_flags import (
    legacy_flag_fixes,
    parse_java_version_output,
    parse_refusal,
    validate_flags_command,
)
from tuning.params import format_value
from tuning.transport_pool import TransportPool

# The java integrator.sh would run (its own lookup order).
_FIND_JAVA = (
    'if [ -n "$JAVACMD" ]; then echo "$JAVACMD"; '
    'elif [ -n "$JAVA_HOME" ]; then echo "$JAVA_HOME/bin/java"; '
    "else command -v java; fi"
)
_SHELL_TEXT = re.compile(r"[$\"'`\\]")


def check_jvm_flags(
    cluster: Cluster, changes: Iterable[FileChange], transports: TransportPool
) -> None:
    """Run `java <new flags> -version` on each node whose script changes; ApplyError if refused."""
    seen: dict[tuple[str, str, tuple[str, ...]], None] = {}
    for change in changes:
        node = next((n for n in cluster.nodes if n.name == change.owner), None)
        if node is None or change.path != node.integrator_sh:
            continue
        t = transports.node(node)
        flags = literal_jvm_flags(change.new)
        java = node_java(t)
        key = (t.host, java, tuple(flags))
        if key in seen:
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
        plain = t.run([java, "-version"], timeout=60)
        advice = _fix_advice(flags, plain.stderr + plain.stdout)
        raise ApplyError(
            f"{node.name}: its JVM refuses the new flags ({refusal}){advice}; nothing was changed",
            node=node.name,
            jvm_message=refusal,
        )


def literal_jvm_flags(script_text: str) -> list[str]:
    """The -X flags a start-up script passes that need no shell to expand (what we can check)."""
    opts = read_jvm_options(script_text)
    return [
        tok for tok in (*opts.options, *opts.command_flags)
        if tok.startswith("-X") and not _SHELL_TEXT.search(tok)
    ]


def node_java(t: NodeTransport) -> str:
    """The java a node's integrator.sh runs: $JAVACMD, $JAVA_HOME/bin/java, or the one on PATH."""
    r = t.run(["sh", "-c", _FIND_JAVA], timeout=30)
    java = r.stdout.strip()
    if not r.ok or not java:
        raise EiperfError(f"no java found on {t.host}: set JAVA_HOME for the node or put java on PATH")
    return java


def _fix_advice(flags: list[str], java_output: str) -> str:
    """The "; fix: ..." suffix naming a replacement for each legacy flag this java dropped."""
    try:
        major = parse_java_version_output(java_output)
    except EditorError:
        return ""
    fixes = legacy_flag_fixes(flags, major)
    if not fixes:
        return ""
    parts = [f"{f.flag} -> {f.replacement or '(drop it)'} ({f.reason})" for f in fixes]
    args = []
    for fix in fixes:
        for name, value in fix.changes.items():
            args.append(f"--unset {name}" if value is None else f"--set {name}={format_value(value)}")
    return "; fix: " + "; ".join(parts) + "; e.g. eiperf tune apply " + " ".join(dict.fromkeys(args))
