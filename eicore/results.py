"""The results schema: one place that says what a run and a sweep leave on disk.

    results/<run-id>/run.json          the RunRecord below
    results/<run-id>/requests.parquet  REQUESTS_SCHEMA, one row per request
    results/<run-id>/metrics.parquet   METRICS_SCHEMA, long format
    results/<run-id>/locust/           Locust's own CSV and HTML
    results/<run-id>/timeline.json     the load shape's users over time (TIMELINE_JSON)
    results/<run-id>/gc.parquet        each node's GC pauses from its GC log, with per-node
                                       rates in its metadata (eicore.gclog: GC_FILE,
                                       gc_schema); only when a node logs GC to a file

Sweeps: eicore.sweeps.

Schema history (bump SCHEMA_VERSION and keep a golden file of the old one in tests/):
    1  eiperf 0.1 -- first layout.
    2  eiperf 0.1, scale-out (Locust master and workers) -- requests.parquet gains `worker`
       (the Locust worker process that made the request, e.g. `local-1`, `gen2-1`);
       run.json `generator` gains `workers` (WorkerInfo each: name, generator host, pid,
       rows, lost_at) and `master`; metrics.parquet gains each worker's own CPU
       (node "generator", source "locust", metric `worker_cpu_percent.<worker>`); a lost
       worker makes the run incomplete and `error` names it. Golden v1 run:
       tests/analysis/golden/v1/ (read with `worker` all null).
    3  eiperf 0.2, the open model (`--shape open`) -- requests.parquet gains `intended_ts`
       (when an open-model request was meant to start) and `service_us` (its time from the
       send); in open runs `latency_us` is measured from the intended start, so a stall's
       queue counts (no coordinated omission); both are null in closed runs, where
       `latency_us` is from the send as before. run.json `generator.arrivals` holds the
       open model's counts (planned, sent, dropped at the concurrency cap, peak in flight).
       Golden v2 run: tests/analysis/golden/v2/ (read with both columns null).
       GC logs (`jvm.gc_log`): gc.parquet, one row per pause of each node (eicore.gclog),
       and run.json `summary` gains gc_pause_p99_ms, gc_pause_max_ms, gc_throughput_pct
       (None, or absent in older runs, without a GC log).
       Steady state: run.json `summary.steady_state` (SteadyStateRecord; absent in older
       runs); `--warmup auto` runs record in `load` warmup_auto, warmup_max, warmup_stable
       and `warmup` as the seconds it took (timeline.json likewise).
       Configuration checks: run.json `doctor` (DoctorSummary: `eiperf doctor`'s counts and
       its failed and warned rows, taken before the load; {} when skipped or in older runs).
Loaders refuse versions they do not know, with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text

SCHEMA_VERSION = 3
KNOWN_SCHEMA_VERSIONS = (1, 2, 3)

RUN_JSON = "run.json"
REQUESTS_FILE = "requests.parquet"
METRICS_FILE = "metrics.parquet"
LOCUST_DIR = "locust"
#: The load shape's own record of users over time, written by the locustfile next to run.json.
TIMELINE_JSON = "timeline.json"
#: metrics.parquet: one Locust worker's own CPU, `<prefix>.<worker>` (100 = one core busy),
#: node GENERATOR_NODE, source "locust"; written by loadtests, read by analysis.
WORKER_CPU_METRIC = "worker_cpu_percent"
GENERATOR_NODE = "generator"
#: Environment variable naming the results folder (default ``results`` in the current folder).
RESULTS_ENV = "EIPERF_RESULTS"
DEFAULT_RESULTS = "results"
#: Change journals (tuning.journal) live in <results>/.journal/<id>/.
JOURNAL_DIR = ".journal"


def results_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The results folder: `explicit`, else $EIPERF_RESULTS, else ./results (the one place
    that says so; every command and the notebooks use it)."""
    return Path(explicit or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


class RunStatus(StrEnum):
    """complete: ran to its end; incomplete: interrupted (data so far kept); failed: no load ran."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


class NodeShare(TypedDict):
    """One node's part of a run's requests (run.json ``summary.nodes.<name>``)."""

    count: int
    share: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class NodeResources(TypedDict):
    """One node's resources over the measured window (``summary.node_metrics.<name>``)."""

    cpu_percent_mean: float | None
    heap_used_bytes_max: float | None
    heap_max_bytes: float | None
    gc_time_share: float | None


class SteadyVerdict(StrEnum):
    """Whether throughput and latency held still over the measured window (analysis.steady):
    steady; warming up (throughput rose or latency fell); degrading (throughput fell or
    latency rose); unknown (too few bins to judge)."""

    STEADY = "steady"
    WARMING_UP = "warming up"
    DEGRADING = "degrading"
    UNKNOWN = "unknown"


class SteadyStateRecord(TypedDict):
    """run.json ``summary.steady_state``: the verdict, the method as applied, each series'
    change over the window in % of its median (Sen's slope x window) and its Mann-Kendall p."""

    verdict: str                      # a SteadyVerdict value
    method: str
    throughput_slope_pct: float | None
    latency_slope_pct: float | None   # mean latency of successful requests
    p_throughput: float | None
    p_latency: float | None


class OpenModelFigures(TypedDict):
    """An open run's arrivals (``summary.open_model``, schema 3): the rate meant over the
    measured window and the rate achieved; arrivals planned, sent and dropped at the
    concurrency cap over the whole run; service time (from the send) beside the latency
    (from the intended start); send lag p99: how late the generator sent."""

    intended_rps: float | None
    achieved_rps: float | None
    planned: int
    sent: int
    dropped: int
    dropped_share: float | None
    cap: int
    peak_in_flight: int
    service_p50_ms: float | None
    service_p99_ms: float | None
    send_lag_p99_ms: float | None


class RunSummary(TypedDict, total=False):
    """run.json ``summary``: the key figures of the measured window, written once when the run
    is final (by ``analysis.record``) and read by sweeps and reports. JSON-safe: a figure that
    could not be computed is None. The metric keys are present only when metrics were collected.
    """

    count: int
    ok_count: int
    error_rate: float | None          # share 0..1 of failed requests
    throughput_rps: float | None
    duration_s: float | None
    mean_ms: float | None
    max_ms: float | None
    percentiles_ms: dict[str, float | None]   # "p50", "p90", "p95", "p99", "p99.9"
    nodes: dict[str, NodeShare]
    generator_cpu_percent_mean: float | None
    generator_saturated: bool | None
    node_metrics: dict[str, NodeResources]
    open_model: OpenModelFigures      # open runs only (schema 3)
    gc_pause_p99_ms: float | None     # GC pauses of all nodes in the window (gc.parquet)
    gc_pause_max_ms: float | None
    gc_throughput_pct: float | None   # share of the window's wall time not paused, node mean
    steady_state: SteadyStateRecord   # absent in runs recorded before issue 13


class WorkerInfo(TypedDict, total=False):
    """One Locust worker process of a run (run.json ``generator.workers[]``, schema 2).

    ``name`` is what requests.parquet's ``worker`` column holds; ``generator`` the
    ``[[generators]]`` name (``local`` for this machine); ``rows`` the request rows it sent;
    ``lost_at`` (epoch s) when the master last heard from a worker lost mid-run, else None.
    """

    name: str
    generator: str
    host: str
    pid: int | None
    rows: int
    lost_at: float | None


class SloVerdict(TypedDict):
    """One SLO rule's verdict in run.json ``slo_results``."""

    rule: str
    actual: float | None
    ok: bool
    verdict: str


class DoctorFinding(TypedDict):
    """One failed or warned configuration check (run.json ``doctor.findings[]``)."""

    area: str          # os, nginx, cluster
    host: str
    check: str
    current: str
    recommended: str
    verdict: str       # fail or warn


class DoctorSummary(TypedDict):
    """run.json ``doctor``: `eiperf doctor` on the cluster before the load (schema 3, absent in
    older runs): how many checks got each verdict (ok, warn, fail, n/a), whether none failed,
    and the failed and warned ones."""

    counts: dict[str, int]
    ok: bool
    findings: list[DoctorFinding]


class SchemaError(EiperfError):
    """A result written by an eiperf this one cannot read."""


@dataclass(frozen=True)
class RunRecord:
    """run.json: what ran, against what, when, and how it ended. Never edited once final."""

    id: str
    status: RunStatus
    started_at: float
    ended_at: float | None
    measure_start: float | None
    measure_end: float | None
    load: dict[str, Any]
    cluster: dict[str, Any]
    slo: list[str] = field(default_factory=list)
    slo_results: list[SloVerdict] = field(default_factory=list)
    summary: RunSummary = field(default_factory=dict)  # type: ignore[assignment]
    generator: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    doctor: DoctorSummary = field(default_factory=dict)  # type: ignore[assignment]
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["status"] = self.status.value
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "run.json") -> RunRecord:
        version = data.get("schema_version")
        if version not in KNOWN_SCHEMA_VERSIONS:
            raise SchemaError(
                f"{where}: results schema version {version!r} is unknown to this eiperf "
                f"(it reads {', '.join(map(str, KNOWN_SCHEMA_VERSIONS))}); upgrade eiperf to read it"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["status"] = RunStatus(kwargs["status"])
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as e:
            raise SchemaError(f"{where}: not a valid run record ({e})") from None


def journal_root(results: Path) -> Path:
    """Where change journals live: `<results>/.journal`."""
    return Path(results) / JOURNAL_DIR


def new_run_id(now: float | None = None) -> str:
    """Sortable and unique: 20261125-121530-3f2a."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def write_run_record(run_dir: Path, record: RunRecord) -> Path:
    path = Path(run_dir) / RUN_JSON
    atomic_write_text(path, record.to_json())
    return path


def read_json_file(folder: Path, name: str, kind: str) -> dict[str, Any]:
    """`folder/name` parsed; SchemaError (one line) when it is missing or not JSON."""
    path = Path(folder) / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaError(f"{folder}: no {name}; is this an eiperf {kind} folder?") from None
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e})") from None


def read_run_record(run_dir: Path) -> RunRecord:
    data = read_json_file(run_dir, RUN_JSON, "run")
    return RunRecord.from_dict(data, str(Path(run_dir) / RUN_JSON))


def requests_schema(version: int = SCHEMA_VERSION):
    """pyarrow schema of requests.parquet as results schema `version` writes it (imported
    lazily: pyarrow is heavy). Version 1 has no `worker` column; versions before 3 have no
    `intended_ts` and `service_us`."""
    import pyarrow as pa

    columns = [
        ("ts", pa.float64()),          # request start, epoch seconds
        ("scenario", pa.string()),
        ("name", pa.string()),
        ("latency_us", pa.int64()),    # microseconds
        ("bytes", pa.int64()),
        ("status", pa.int32()),
        ("ok", pa.bool_()),
        ("error", pa.string()),
        ("node", pa.string()),         # from nginx's upstream header
    ]
    if version >= 2:
        columns.append(("worker", pa.string()))  # the Locust worker process that sent it
    if version >= 3:
        columns.append(("intended_ts", pa.float64()))  # open model: intended start, epoch s
        columns.append(("service_us", pa.int64()))     # open model: from the send, µs
    return pa.schema(columns)


def metrics_schema():
    import pyarrow as pa

    return pa.schema([
        ("ts", pa.float64()),
        ("node", pa.string()),         # node name, or "host" / "generator" / "lb"
        ("source", pa.string()),       # psutil | proc (over SSH) | jmx | nginx | locust
        ("metric", pa.string()),
        ("value", pa.float64()),
    ])


def host_facts() -> dict[str, Any]:
    import platform

    return {"hostname": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
