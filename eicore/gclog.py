"""GC logs: the pauses a JVM's own GC log records, and gc.parquet, where a run keeps them.

JMX gives GC counts and total time; heap tuning needs each pause. Two formats are read:

* unified logging (JDK 9+, `-Xlog:gc*:file=...:time,uptime,level,tags`): one event per line,
  `[<time>][<uptime>][info][gc] GC(7) Pause Young (Normal) (G1 Evacuation Pause)
  24M->3M(256M) 3.456ms`, the generation sizes on `gc,heap` lines of the same GC(7) before it
  (G1 regions, PSYoungGen/ParOldGen, DefNew/Tenured, ParNew/CMS); the concurrent collectors'
  pauses (ZGC `Pause Mark Start`, Shenandoah `Pause Init Mark`) without sizes. The time stamp
  is written when a pause ends: its start is that minus the pause.
* JDK 8 (`-XX:+PrintGCDetails -XX:+PrintGCDateStamps -Xloggc:`): one entry per pause,
  stamped when it starts, `<date>: <uptime>: [GC (Allocation Failure) [PSYoungGen: a->b(c)]
  h1->h2(h3), 0.0123 secs] [Times: ...]` (ParNew/CMS, PSYoungGen/ParOldGen, DefNew/Tenured);
  G1's entries span lines (`[GC pause (G1 Evacuation Pause) (young), 0.0123 secs]`, then
  indented details ending in `[Eden: ... Survivors: ... Heap: ...]`). CRLF line ends and a
  last entry cut off mid-write (a live log) are expected; what cannot be read is counted in
  `GcLog.skipped`, never guessed.

No well-kept Python parser of both formats was found on PyPI (cappuccino: JDK 8 G1 only, last
release 2021), so this one is ours: pure functions over text, no file or node access.

    results/<run-id>/gc.parquet   GC_SCHEMA, one row per pause of each node during the run;
                                  its metadata (GC_META_KEY, JSON) holds per node: the log
                                  read, its format and collector, the allocation rate, the
                                  promotion rate (where the format gives it), the GC
                                  throughput, and a warning when the log could not be read.

Figures (`node_rates`): GC throughput is the share of the measured window's wall time no pause
covered (pauses clipped to the window); the allocation rate is the heap's growth between
consecutive pauses in the window over the time between the first and the last of them; the
promotion rate is the bytes young pauses moved to the old generation in the window (as far as
they say) over the window. Node clocks are compared with the load generator's window: keep them
in sync (NTP).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from eicore.fsutil import atomic_write_bytes

GC_FILE = "gc.parquet"
#: the Parquet metadata key of the per-node facts (JSON: {node: NodeGc as a dict})
GC_META_KEY = b"eiperf.gc"
#: the node's logs folder, relative to EI_HOME: `jvm.gc_log` files go there
GC_LOG_DIR = "repository/logs"
#: where `jvm.gc_log=on` has a node write its GC log, relative to EI_HOME
DEFAULT_GC_LOG = f"{GC_LOG_DIR}/gc.log"


class PauseKind(StrEnum):
    """What a stop-the-world pause collected (or which step of a concurrent cycle it was)."""

    YOUNG = "young"
    MIXED = "mixed"  # G1: young plus some old regions
    FULL = "full"
    INITIAL_MARK = "initial-mark"  # CMS, ZGC (Mark Start), Shenandoah (Init Mark)
    REMARK = "remark"  # G1, CMS (Final Remark), ZGC (Mark End), Shenandoah (Final Mark)
    CLEANUP = "cleanup"  # G1
    OTHER = "other"  # other pauses of concurrent collectors (ZGC Relocate Start, ...)


class LogFormat(StrEnum):
    UNIFIED = "unified"  # JDK 9+ -Xlog
    JDK8 = "jdk8"  # -XX:+PrintGCDetails -Xloggc


@dataclass(frozen=True)
class Pause:
    """One pause: when it started (epoch s; None when the log has no wall-clock time), the
    JVM's uptime then, what and why, how long, and the heap around it (bytes; None when the
    log does not say). `promoted` is what a young pause moved to the old generation."""

    ts: float | None
    uptime_s: float | None
    gc_id: int | None
    kind: PauseKind
    cause: str
    duration_ms: float
    heap_before: int | None = None
    heap_after: int | None = None
    heap_total: int | None = None
    promoted: int | None = None


@dataclass(frozen=True)
class GcLog:
    """A parsed GC log: its format, the collector it names, its pauses in log order, how many
    GC entries could not be read (a cut-off last line, interleaved CMS output), and whether it
    carries wall-clock time (without it pauses cannot be placed in a run's window)."""

    format: LogFormat
    collector: str | None
    pauses: tuple[Pause, ...]
    skipped: int = 0
    wall_time: bool = True


@dataclass
class NodeGc:
    """One node's entry in gc.parquet's metadata (JSON-safe)."""

    log: str | None = None  # the files read on the node
    format: str | None = None
    collector: str | None = None
    pauses: int = 0  # rows kept (during the run)
    pauses_in_window: int = 0
    skipped: int = 0
    allocation_rate_bytes_s: float | None = None
    promotion_rate_bytes_s: float | None = None
    throughput_pct: float | None = None
    warning: str | None = None
    files: list[str] = field(default_factory=list)


# ---- sizes and times --------------------------------------------------------------------------

_UNIT = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = r"\d+(?:[.,]\d+)?[BKMGT]"
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)")


def size_bytes(text: str) -> int:
    """Bytes in a GC log size: "24M", "5120.0K", "0.0B"."""
    return round(float(text[:-1].replace(",", ".")) * _UNIT[text[-1].upper()])


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace(",", ".")).timestamp()
    except ValueError:
        return None


def _num(text: str) -> float:
    return float(text.replace(",", "."))


# ---- unified logging (JDK 9+) -----------------------------------------------------------------

_DECORATION = re.compile(r"\[([^\]\n]*)\]")
_UNIFIED_EVENT = re.compile(r"^(?:\[[^\]\n]*\])* ?(?:GC\(\d+\) |Using )", re.MULTILINE)
_LEVELS = {"trace", "debug", "info", "warning", "error", "develop"}
_TAGS = re.compile(r"[a-z0-9_]+(?:,[a-z0-9_]+)*\s*")
_PAUSE = re.compile(
    rf"Pause (?P<name>.+?)(?: (?P<b>{_SIZE})->(?P<a>{_SIZE})\((?P<t>{_SIZE})\))?"
    r" (?P<d>\d+(?:[.,]\d+)?)(?P<u>ms|us|s)$"
)
_REGIONS = re.compile(r"(Eden|Survivor|Old|Humongous) regions: (\d+)->(\d+)")
_GENERATION = re.compile(
    r"(PSYoungGen|DefNew|ParNew|ParOldGen|PSOldGen|Tenured|CMS): (\d+)K(?:\(\d+K\))?"
    r"->(\d+)K\((\d+)K\)"
)
_REGION_SIZE = re.compile(r"Heap [Rr]egion [Ss]ize: (\d+[BKMG])")
_USING = re.compile(r"Using (.+)$")
_YOUNG_GENS = {"PSYoungGen", "DefNew", "ParNew", "ASParNew"}
_OLD_GENS = {"ParOldGen", "PSOldGen", "Tenured", "CMS"}
#: words in a pause's brackets that say which kind it is, not why it ran
_MARKERS = {"Normal", "Concurrent Start", "Prepare Mixed", "Mixed", "young", "mixed",
            "initial-mark"}
_COLLECTORS = (("G1", "G1"), ("Parallel", "Parallel"), ("Serial", "Serial"),
               ("Z Garbage", "ZGC"), ("ZGC", "ZGC"), ("Shenandoah", "Shenandoah"),
               ("Concurrent Mark Sweep", "CMS"), ("Epsilon", "Epsilon"))


def _collector_name(text: str) -> str | None:
    return next((name for key, name in _COLLECTORS if key in text), None)


def _split_name(name: str) -> tuple[str, list[str]]:
    """"Young (Normal) (G1 Evacuation Pause)" -> ("Young", ["Normal", "G1 Evacuation Pause"])."""
    base = name.split(" (", 1)[0].strip()
    return base, re.findall(r"\(([^()]*(?:\([^()]*\))?[^()]*)\)", name[len(base):])


def _kind(base: str, groups: Sequence[str], collector: str | None) -> PauseKind:
    if base in ("Young", "Initial Mark") and "Mixed" in groups:
        return PauseKind.MIXED
    if base == "Young":
        return PauseKind.YOUNG
    if base == "Initial Mark":  # G1 on JDK 9/10: a young pause that starts marking
        g1 = collector == "G1" or any("G1" in g for g in groups)
        return PauseKind.YOUNG if g1 else PauseKind.INITIAL_MARK
    return {
        "Mixed": PauseKind.MIXED, "Full": PauseKind.FULL, "Degenerated GC": PauseKind.FULL,
        "Remark": PauseKind.REMARK, "Cleanup": PauseKind.CLEANUP,
        "Mark Start": PauseKind.INITIAL_MARK, "Init Mark": PauseKind.INITIAL_MARK,
        "Mark End": PauseKind.REMARK, "Final Mark": PauseKind.REMARK,
    }.get(base, PauseKind.OTHER)


def _cause(groups: Sequence[str]) -> str:
    return ", ".join(g for g in groups if g not in _MARKERS)


def _decorations(line: str) -> tuple[dict[str, Any], str]:
    """The decorations of a unified-logging line (time, uptime, tags) and its message."""
    out: dict[str, Any] = {}
    pos = 0
    while (m := _DECORATION.match(line, pos)) is not None:
        value = m.group(1).strip()
        pos = m.end()
        if _ISO.fullmatch(value):
            out.setdefault("time", _epoch(value))
        elif re.fullmatch(r"\d+(?:[.,]\d+)?s", value):
            out["uptime"] = _num(value[:-1])
        elif re.fullmatch(r"\d+ms", value):
            ms = int(value[:-2])
            out["time" if ms > 10**11 else "uptime"] = ms / 1000.0
        elif re.fullmatch(r"\d+ns", value):
            ns = int(value[:-2])
            out["time" if ns > 10**17 else "uptime"] = ns / 1e9
        elif value in _LEVELS:
            out["level"] = value
        elif _TAGS.fullmatch(value):
            out["tags"] = value.replace(" ", "")
    return out, line[pos:].lstrip(" ")


def _parse_unified(lines: Iterable[str]) -> GcLog:
    collector: str | None = None
    region: int | None = None
    sizes: dict[int, dict[str, tuple[int, ...]]] = {}
    pauses: list[Pause] = []
    wall = True
    skipped = 0
    for line in lines:
        deco, message = _decorations(line)
        gc_id = None
        if message.startswith("GC("):
            head, _, message = message.partition(") ")
            try:
                gc_id = int(head[3:])
            except ValueError:
                continue
        if gc_id is None:
            if collector is None and (m := _USING.match(message)):
                collector = _collector_name(m.group(1))
            elif m := _REGION_SIZE.search(message):
                region = size_bytes(m.group(1))
            continue
        if m := _REGIONS.match(message):
            sizes.setdefault(gc_id, {})[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            continue
        if m := _GENERATION.match(message):
            values = tuple(int(m.group(i)) << 10 for i in (2, 3, 4))
            sizes.setdefault(gc_id, {})[m.group(1)] = values
            continue
        m = _PAUSE.match(message)
        if m is None:
            if deco.get("tags") == "gc" and message.startswith("Pause "):
                skipped += 1  # a pause line cut off before its duration
            continue
        scale = {"ms": 1.0, "us": 0.001, "s": 1000.0}[m.group("u")]
        duration = _num(m.group("d")) * scale
        base, groups = _split_name(m.group("name"))
        kind = _kind(base, groups, collector)
        end = deco.get("time")
        wall = wall and end is not None
        uptime = deco.get("uptime")
        heap = [size_bytes(m.group(k)) if m.group(k) else None for k in ("b", "a", "t")]
        heap, promoted = _unified_sizes(sizes.pop(gc_id, {}), heap, kind, region)
        pauses.append(Pause(
            ts=None if end is None else end - duration / 1000.0,
            uptime_s=None if uptime is None else max(0.0, uptime - duration / 1000.0),
            gc_id=gc_id, kind=kind, cause=_cause(groups), duration_ms=duration,
            heap_before=heap[0], heap_after=heap[1], heap_total=heap[2], promoted=promoted))
    return GcLog(LogFormat.UNIFIED, collector, tuple(pauses), skipped, wall)


def _unified_sizes(gens: dict[str, tuple[int, ...]], heap: list[int | None], kind: PauseKind,
                   region: int | None) -> tuple[list[int | None], int | None]:
    """The heap (bytes before, after, total) -- from the generation lines when they give it to
    the KB, else the pause line's whole MB -- and what a young pause promoted."""
    young = next((gens[g] for g in _YOUNG_GENS if g in gens), None)
    old = next((gens[g] for g in _OLD_GENS if g in gens), None)
    if young is not None and old is not None:
        heap = [young[0] + old[0], young[1] + old[1], young[2] + old[2]]
    promoted = None
    if kind is PauseKind.YOUNG:
        if old is not None:
            promoted = max(0, old[1] - old[0])
        elif "Old" in gens and region:
            promoted = max(0, gens["Old"][1] - gens["Old"][0]) * region
    return heap, promoted


# ---- JDK 8 (-XX:+PrintGCDetails -XX:+PrintGCDateStamps -Xloggc) -------------------------------

_STAMPS = re.compile(
    r"^(?:(?P<date>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.,]\d+[+-]\d{4}): )?"
    r"(?:(?P<up>\d+[.,]\d+): )?(?P<body>\[.*)$"
)
_SECS = re.compile(r"(\d+[.,]\d+) secs\]")
_TIMES = re.compile(r"\s*\[Times: [^\]]*\]\s*$")
_LABELLED = re.compile(rf"(?:([A-Za-z][\w-]*(?: [\w-]+)*): )?({_SIZE})->({_SIZE})\(({_SIZE})\)")
_G1_HEAP = re.compile(rf"Heap: ({_SIZE})\(({_SIZE})\)->({_SIZE})\(({_SIZE})\)")
_G1_EDEN = re.compile(rf"Eden: ({_SIZE})\(({_SIZE})\)->({_SIZE})\(({_SIZE})\)")
_G1_SURVIVORS = re.compile(rf"Survivors: ({_SIZE})->({_SIZE})")
_OCCUPANCY = re.compile(rf"\] ({_SIZE})\(({_SIZE})\), \d+[.,]\d+ secs\]")
_JDK8_FLAGS = re.compile(r"-XX:\+Use(G1|Parallel|ParallelOld|Serial|ConcMarkSweep|ParNew)GC\b")
_JDK8_COLLECTORS = {"G1": "G1", "Parallel": "Parallel", "ParallelOld": "Parallel",
                    "Serial": "Serial", "ConcMarkSweep": "CMS", "ParNew": "CMS"}


def _entries(lines: Iterable[str]) -> Iterable[list[str]]:
    """Lines grouped into entries: a line that does not start with white space starts one."""
    entry: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and entry:
            entry.append(line)
            continue
        if entry:
            yield entry
        entry = [line] if line.strip() else []
    if entry:
        yield entry


def _jdk8_kind(body: str) -> tuple[PauseKind, str] | None:
    """Kind and cause of an entry's first line (after its stamps); None: no pause."""
    if re.match(r"\[(?:GC concurrent|CMS-concurrent)", body):
        return None
    if m := re.match(r"\[GC pause((?: \([^()]*\))*)", body):  # G1
        groups = re.findall(r"\(([^()]*)\)", m.group(1))
        kind = PauseKind.MIXED if "mixed" in groups else PauseKind.YOUNG
        return kind, _cause(groups)
    if body.startswith("[GC remark"):
        return PauseKind.REMARK, ""
    if body.startswith("[GC cleanup"):
        return PauseKind.CLEANUP, ""
    if m := re.match(r"\[Full GC(?: \(([^()]*(?:\(\))?)\))?", body):
        return PauseKind.FULL, m.group(1) or ""
    if m := re.match(r"\[GC(?:--)?(?: \(([^()]*(?:\(\))?)\))?", body):
        cause = m.group(1) or ""
        if cause == "CMS Initial Mark":
            return PauseKind.INITIAL_MARK, cause
        if cause == "CMS Final Remark":
            return PauseKind.REMARK, cause
        return PauseKind.YOUNG, cause
    return None


def _jdk8_pause(entry: list[str]) -> Pause | None | bool:
    """One entry as a Pause; None when it is no pause; False when it is one but unreadable."""
    m = _STAMPS.match(entry[0])
    if m is None:
        return None
    body = _TIMES.sub("", m.group("body"))
    what = _jdk8_kind(body)
    if what is None:
        return None
    kind, cause = what
    secs = _SECS.findall(body)
    if not secs:
        return False  # cut off before its duration: a live log's last line
    ts = _epoch(m.group("date")) if m.group("date") else None
    uptime = _num(m.group("up")) if m.group("up") else None
    heap: list[int | None] = [None, None, None]
    young = None
    for label, b, a, t in _LABELLED.findall(body):
        values = (size_bytes(b), size_bytes(a), size_bytes(t))
        if not label:
            heap = list(values)
        elif label in _YOUNG_GENS:
            young = values
        elif label in _OLD_GENS and kind is PauseKind.YOUNG:
            kind = PauseKind.FULL  # promotion failed: the old generation was collected too
    details = " ".join(entry[1:])
    if (g := _G1_HEAP.search(details)) is not None:
        heap = [size_bytes(g.group(1)), size_bytes(g.group(3)), size_bytes(g.group(4))]
        eden = _G1_EDEN.search(details)
        surv = _G1_SURVIVORS.search(details)
        if eden and surv:
            young = (size_bytes(eden.group(1)) + size_bytes(surv.group(1)),
                     size_bytes(eden.group(3)) + size_bytes(surv.group(2)), 0)
    if heap[0] is None and (o := _OCCUPANCY.search(body)) is not None:  # CMS marks
        heap = [size_bytes(o.group(1)), size_bytes(o.group(1)), size_bytes(o.group(2))]
    promoted = None
    if kind is PauseKind.YOUNG and young is not None and heap[0] is not None \
            and heap[1] is not None:
        promoted = max(0, (young[0] - young[1]) - (heap[0] - heap[1]))
    return Pause(ts, uptime, None, kind, cause, _num(secs[-1]) * 1000.0, heap[0], heap[1],
                 heap[2], promoted)


def _parse_jdk8(lines: Iterable[str]) -> GcLog:
    collector: str | None = None
    pauses: list[Pause] = []
    skipped = 0
    for entry in _entries(lines):
        if collector is None and entry[0].startswith("CommandLine flags:"):
            flags = _JDK8_FLAGS.findall(entry[0])
            collector = _JDK8_COLLECTORS[flags[-1]] if flags else None
            continue
        pause = _jdk8_pause(entry)
        if pause is False:
            skipped += 1
        elif isinstance(pause, Pause):
            pauses.append(pause)
            if collector is None:
                collector = _guess_jdk8_collector(entry[0])
    wall = all(p.ts is not None for p in pauses)
    return GcLog(LogFormat.JDK8, collector, tuple(pauses), skipped, wall)


def _guess_jdk8_collector(line: str) -> str | None:
    for key, name in (("GC pause", "G1"), ("ParNew", "CMS"), ("CMS", "CMS"),
                      ("PSYoungGen", "Parallel"), ("DefNew", "Serial")):
        if key in line:
            return name
    return None


def parse_gc_log(text: str) -> GcLog:
    """The pauses of a GC log in either format (unified logging's lines start with their
    decorations, then `GC(N)` or, first of all, `Using <collector>`)."""
    lines = text.splitlines()
    if _UNIFIED_EVENT.search(text):
        return _parse_unified(lines)
    return _parse_jdk8(lines)


# ---- where a JVM writes its GC log ------------------------------------------------------------

_XLOG = re.compile(r"-Xlog:(?P<what>[^:]*):(?P<out>\"[^\"]*\"|[^:]*)")


def gc_log_path(args: Iterable[str], home: str | None = None) -> str | None:
    """The GC log file a JVM's arguments name (`-Xloggc:PATH`, or an `-Xlog` of gc tags to a
    file); `$CARBON_HOME` and a relative path resolve against `home`. None: no GC log file."""
    found = None
    for arg in args:
        if arg.startswith("-Xloggc:"):
            found = arg[len("-Xloggc:"):]
        elif (m := _XLOG.match(arg)) and re.match(r"gc\b|gc[*+=,]", m.group("what")):
            out = m.group("out").strip('"')
            out = out.removeprefix("file=")
            if out and out not in ("stdout", "stderr"):
                found = out
    if not found:
        return None
    if home is not None:
        found = re.sub(r"^\$\{?CARBON_HOME\}?", home.rstrip("/"), found.strip('"'))
        if not found.startswith("/"):
            found = f"{home.rstrip('/')}/{found}"
    return found


# ---- figures and gc.parquet -------------------------------------------------------------------


def node_rates(pauses: Sequence[Pause], start: float | None, end: float | None
               ) -> dict[str, float | None]:
    """GC throughput (%), allocation and promotion rates (bytes/s) of one node's pauses over
    the window [start, end) (module docstring); None where they cannot be computed."""
    out: dict[str, float | None] = {"throughput_pct": None, "allocation_rate_bytes_s": None,
                                    "promotion_rate_bytes_s": None}
    timed = sorted(((p.ts, p) for p in pauses if p.ts is not None), key=lambda tp: tp[0])
    if start is None or end is None or end <= start or len(timed) < len(pauses):
        return out
    span = end - start
    paused = sum(max(0.0, min(end, ts + p.duration_ms / 1000.0) - max(start, ts))
                 for ts, p in timed)
    out["throughput_pct"] = 100.0 * (1.0 - min(paused, span) / span)
    inside = [(ts, p) for ts, p in timed if start <= ts < end]
    sized = [(ts, p.heap_before, p.heap_after) for ts, p in inside
             if p.heap_before is not None and p.heap_after is not None]
    if len(sized) >= 2 and sized[-1][0] > sized[0][0]:
        grown = sum(max(0, later[1] - earlier[2])
                    for earlier, later in zip(sized, sized[1:], strict=False))
        out["allocation_rate_bytes_s"] = grown / (sized[-1][0] - sized[0][0])
    promoted = [p.promoted for _, p in inside if p.kind is PauseKind.YOUNG]
    if any(x is not None for x in promoted):  # a young pause that freed nothing may not say
        out["promotion_rate_bytes_s"] = sum(x or 0 for x in promoted) / span
    return out


def gc_schema():
    """pyarrow schema of gc.parquet (imported lazily: pyarrow is heavy)."""
    import pyarrow as pa

    return pa.schema([
        ("node", pa.string()),
        ("ts", pa.float64()),              # pause start, epoch s (null: the log has no time)
        ("uptime_s", pa.float64()),        # the JVM's uptime at the pause's start
        ("gc_id", pa.int64()),             # unified logging's GC(N); null on JDK 8
        ("collector", pa.string()),        # G1, Parallel, Serial, CMS, ZGC, Shenandoah
        ("kind", pa.string()),             # PauseKind
        ("cause", pa.string()),            # "G1 Evacuation Pause", "Allocation Failure", ...
        ("duration_ms", pa.float64()),
        ("heap_before_bytes", pa.int64()),
        ("heap_after_bytes", pa.int64()),
        ("heap_total_bytes", pa.int64()),  # committed heap after the pause
        ("promoted_bytes", pa.int64()),    # young pauses: moved to the old generation
        ("in_window", pa.bool_()),         # inside the run's measured window
    ])


def pause_rows(node: str, log: GcLog, pauses: Iterable[Pause], start: float | None,
               end: float | None) -> list[dict[str, Any]]:
    """gc.parquet rows of one node's pauses."""
    rows = []
    for p in pauses:
        inside = (p.ts is not None and start is not None and end is not None
                  and start <= p.ts < end)
        rows.append({"node": node, "ts": p.ts, "uptime_s": p.uptime_s, "gc_id": p.gc_id,
                     "collector": log.collector, "kind": p.kind.value, "cause": p.cause,
                     "duration_ms": p.duration_ms, "heap_before_bytes": p.heap_before,
                     "heap_after_bytes": p.heap_after, "heap_total_bytes": p.heap_total,
                     "promoted_bytes": p.promoted, "in_window": inside})
    return rows


def write_gc_file(path: Path, rows: list[dict[str, Any]], nodes: dict[str, NodeGc]) -> None:
    """gc.parquet, atomically: the rows and each node's facts in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = gc_schema()
    meta = json.dumps({n: asdict(v) for n, v in nodes.items()}, allow_nan=False,
                      sort_keys=True)
    table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(
        {GC_META_KEY: meta.encode("utf-8")})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    atomic_write_bytes(Path(path), buf.getvalue())


def read_gc_file(path: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """gc.parquet as (pyarrow table, {node: facts}); FileNotFoundError when it is missing."""
    import pyarrow.parquet as pq

    table = pq.read_table(Path(path))
    raw = (table.schema.metadata or {}).get(GC_META_KEY, b"{}")
    return table, json.loads(raw.decode("utf-8"))


def clean_number(value: float | None) -> float | None:
    """None for NaN/inf (JSON has neither)."""
    return None if value is None or not math.isfinite(value) else float(value)
