"""The java a node's start-up script runs, and its major version, asked over the node's
transport: JVM flag checks (`tuning.flag_check`) and flags whose syntax depends on the JDK (the
GC log's, `tuning.changes`) both need it."""

from __future__ import annotations

from eicore.errors import EiperfError
from eicore.transport import NodeTransport
from tuning.edit import EditorError
from tuning.jvm_flags import parse_java_version_output

# The java integrator.sh would run (its own lookup order); $1: the script, whose own
# `JAVA_HOME=...` line (as admins and the testbed's `eiperf up --java` write it) wins over the
# environment's when it names a java there (not e.g. the script's Darwin-only branch).
_FIND_JAVA = (
    'h=""; if [ -n "$1" ] && [ -r "$1" ]; then '
    r"h=$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}JAVA_HOME=//p' "
    r""""$1" | tail -n 1 | tr -d "\"'"); fi; """
    'if [ -n "$JAVACMD" ]; then echo "$JAVACMD"; '
    'elif [ -n "$h" ] && [ -x "$h/bin/java" ]; then echo "$h/bin/java"; '
    'elif [ -n "$JAVA_HOME" ]; then echo "$JAVA_HOME/bin/java"; '
    "else command -v java; fi"
)


def node_java(t: NodeTransport, script: str | None = None) -> str:
    """The java a node's integrator.sh runs: $JAVACMD, the JAVA_HOME the `script` sets,
    $JAVA_HOME/bin/java, or the one on PATH."""
    r = t.run(["sh", "-c", _FIND_JAVA, "node_java", script or ""], timeout=30)
    java = r.stdout.strip()
    if not r.ok or not java:
        raise EiperfError(f"no java found on {t.host}: set JAVA_HOME for the node or put java on PATH")
    return java


def java_major(t: NodeTransport, java: str) -> int | None:
    """The major version of `java` on the transport's host (None when it does not say)."""
    r = t.run([java, "-version"], timeout=60)
    try:
        return parse_java_version_output(r.stderr + r.stdout)
    except EditorError:
        return None
