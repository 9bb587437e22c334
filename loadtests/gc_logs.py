"""After a run: each node's GC log, fetched over its transport and parsed into gc.parquet.

A node writes a GC log when its JVM runs with GC logging to a file (`jvm.gc_log=on` writes
the flags). Which file is read from the JVM's own arguments as JMX reported them in the run's
snapshot (run.json `cluster.jvm_runtime`), else from the node's bin/integrator.sh. Unified
logging archives the file at each JVM start (gc.log.0, .1, ...): when the current file began
after the run did (a restart or a size rotation mid-run), the archives are read too. Pauses
from the run's start on are kept, marked when they fall in the measured window
(`eicore.gclog`). A node whose log cannot be read gets a warning in gc.parquet's metadata and
in the progress lines; the run itself never fails for it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eicore.cluster import Cluster, Node
from eicore.errors import EiperfError
from eicore.gclog import (
    GC_FILE,
    GcLog,
    NodeGc,
    Pause,
    clean_number,
    gc_log_path,
    node_rates,
    parse_gc_log,
    pause_rows,
    write_gc_file,
)
from eicore.results import RUN_JSON, read_json_file
from eicore.transport import NodeTransport, transport_for

Progress = Callable[[str], None]
_SCRIPT_FLAG = re.compile(r"""(-Xloggc:[^\s"'\\]+|-Xlog:gc[^\s"'\\]*)""")


def collect_gc_logs(cluster: Cluster, run_dir: Path, window_start: float | None,
                    window_end: float | None, since: float | None = None,
                    progress: Progress | None = None) -> int:
    """Write run_dir/gc.parquet from the nodes' GC logs; returns the pauses written (0, and no
    file, when no node logs GC to a file). `since` (epoch s, the run's start) drops pauses of
    earlier runs; [window_start, window_end) is the measured window."""
    runtime = _jvm_runtime(Path(run_dir))
    rows: list[dict[str, Any]] = []
    nodes: dict[str, NodeGc] = {}
    for node in cluster.nodes:
        try:
            t = transport_for(node)
        except EiperfError as e:
            nodes[node.name] = NodeGc(warning=f"{node.name}: cannot reach the node ({e})")
            continue
        try:
            facts, pauses, log = _node_log(node, t, runtime.get(node.name), since)
        except Exception as e:  # whatever went wrong, the run is not failed for it
            why = str(e) or type(e).__name__
            facts, pauses, log = NodeGc(warning=f"{node.name}: GC log not read ({why})"), [], None
        finally:
            t.close()
        if facts is None:
            continue  # no GC log file configured
        if log is not None:
            node_rows = pause_rows(node.name, log, pauses, window_start, window_end)
            rows += node_rows
            facts.pauses = len(node_rows)
            facts.pauses_in_window = sum(1 for r in node_rows if r["in_window"])
            rates = node_rates(pauses, window_start, window_end)
            facts.throughput_pct = clean_number(rates["throughput_pct"])
            facts.allocation_rate_bytes_s = clean_number(rates["allocation_rate_bytes_s"])
            facts.promotion_rate_bytes_s = clean_number(rates["promotion_rate_bytes_s"])
        nodes[node.name] = facts
    if not nodes:
        return 0
    write_gc_file(Path(run_dir) / GC_FILE, rows, nodes)
    if progress is not None:
        read = [n for n, f in nodes.items() if f.log and not f.warning]
        progress(f"  GC logs: {len(rows):,} pauses from {', '.join(read) or 'no node'} "
                 f"-> {GC_FILE}")
        for facts in nodes.values():
            if facts.warning:
                progress(f"  warning: {facts.warning}")
    return len(rows)


def _jvm_runtime(run_dir: Path) -> dict[str, Any]:
    """{node: {"input_arguments": [...]}} from the run's snapshot ({} when it has none)."""
    try:
        snapshot = read_json_file(run_dir, RUN_JSON, "run").get("cluster") or {}
    except EiperfError:
        return {}
    runtime = snapshot.get("jvm_runtime") or {}
    return runtime if isinstance(runtime, dict) else {}


def _log_file(node: Node, t: NodeTransport, runtime: Any) -> str | None:
    """The GC log file of a node's JVM: from its arguments (JMX), else from its script."""
    args = runtime.get("input_arguments") if isinstance(runtime, dict) else None
    if isinstance(args, list):
        return gc_log_path([str(a) for a in args], node.ei_home)
    try:
        text = t.read_text(node.integrator_sh)
    except FileNotFoundError:
        return None
    flags = [flag for line in text.splitlines() if not line.lstrip().startswith("#")
             for flag in _SCRIPT_FLAG.findall(line)]
    return gc_log_path(flags, node.ei_home)


def _node_log(node: Node, t: NodeTransport, runtime: Any, since: float | None
              ) -> tuple[NodeGc | None, list[Pause], GcLog | None]:
    """The node's facts, its pauses since `since`, and its parsed log (None: no GC log)."""
    path = _log_file(node, t, runtime)
    if path is None:
        return None, [], None
    facts = NodeGc(log=path)
    if "%" in path:
        facts.warning = (f"{node.name}: the GC log name {path} has a %p/%t pattern; eiperf "
                         "reads fixed names: use jvm.gc_log=on")
        return facts, [], None
    try:
        log = parse_gc_log(t.read_bytes(path).decode("utf-8", errors="replace"))
    except FileNotFoundError:
        facts.warning = (f"{node.name}: its JVM logs GC to {path}, which does not exist "
                         "(restart the node after 'tune apply')")
        return facts, [], None
    facts.files = [path]
    logs = [log]
    first = next((p.ts for p in log.pauses if p.ts is not None), None)
    if since is not None and (first is None or first > since):
        for archive in _archives(t, path):
            older = parse_gc_log(t.read_bytes(archive).decode("utf-8", errors="replace"))
            if any(p.ts is not None and p.ts >= since for p in older.pauses):
                logs.append(older)
                facts.files.append(archive)
    facts.format, facts.collector = log.format.value, log.collector
    facts.skipped = sum(g.skipped for g in logs)
    if not all(g.wall_time for g in logs):
        facts.warning = (f"{node.name}: its GC log {path} has no wall-clock time stamps, so its "
                         "pauses cannot be placed in the run's window; use jvm.gc_log=on "
                         "(-Xlog decorations time,uptime,level,tags)")
    pauses = _merge([g.pauses for g in logs], since)
    return facts, pauses, GcLog(log.format, log.collector, tuple(pauses), facts.skipped,
                                log.wall_time)


def _archives(t: NodeTransport, path: str) -> list[str]:
    """Unified logging's archived files of `path` (gc.log.0, gc.log.1, ...)."""
    folder, base = posixpath.split(path)
    try:
        names = t.listdir(folder)
    except (FileNotFoundError, EiperfError):
        return []
    pattern = re.compile(re.escape(base) + r"\.\d+")
    return [posixpath.join(folder, n) for n in sorted(names) if pattern.fullmatch(n)]


def _merge(groups: list[tuple[Pause, ...]], since: float | None) -> list[Pause]:
    """Pauses of several files, once each, in time order; those before `since` dropped (all
    kept when the log has no wall-clock time)."""
    seen: dict[tuple[Any, ...], Pause] = {}
    for pauses in groups:
        for p in pauses:
            if since is not None and p.ts is not None and p.ts < since:
                continue
            seen.setdefault((p.ts, p.gc_id, p.duration_ms), p)
    return sorted(seen.values(), key=lambda p: (p.ts is None, p.ts or 0.0))
