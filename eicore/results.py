"""The results schema: one place that says what a run and a sweep leave on disk.

    results/<run-id>/run.json          the RunRecord below
    results/<run-id>/requests.parquet  REQUESTS_SCHEMA, one row per request
    results/<run-id>/metrics.parquet   METRICS_SCHEMA, long format
    results/<run-id>/locust/           Locust's own CSV and HTML
    results/<run-id>/timeline.json     the load shape's users over time (TIMELINE_JSON)

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

SCHEMA_VERSION = 2
KNOWN_SCHEMA_VERSIONS = (1, 2)

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
    lazily: pyarrow is heavy). Version 1 has no `worker` column."""
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
