"""The sweep schema: one place that says what a sweep leaves on disk and what its states mean.

    results/sweeps/<sweep-id>/sweep.json      SWEEP_SCHEMA_VERSION; id, status (SweepStatus),
                                              created/finished, strategy, the spec as plain
                                              data, objective, slo, parameters, best, cluster;
                                              a shared study adds storage (its URL, never a
                                              password), workers {id: host, pid, cluster,
                                              results, started}, synced, running_elsewhere
    results/sweeps/<sweep-id>/trials.parquet  one TrialRow per trial and repetition
                                              (TRIAL_COLUMNS, then `param.<name>` strings)
    results/sweeps/<sweep-id>/lock            flock held by the one process running the sweep
    results/sweeps/<sweep-id>/workers/<w>.lock  a shared study: flock held by each worker
                                              running it from this folder (WORKERS_DIR)
    results/sweeps/<sweep-id>/write.lock      flock held while a process rewrites the two
                                              files above (several workers share a folder)

Written by the sweep engine (tuning.sweep), read by it on --resume and by analysis.loading.
A sweep shared through an Optuna storage (`eiperf sweep --storage/--join`) keeps its trials
in the storage (tuning.sweep_study); each worker's folder is rewritten from there, so its
trials.parquet holds every worker's rows, and `sweep_running` tells a live folder from one
whose processes were killed.
Schema history (bump SWEEP_SCHEMA_VERSION, keep a golden file of the old one in tests/):
    1  eiperf 0.1 -- first layout.
    2  issue 11 (shared studies) -- trials.parquet column `worker` (who ran the row:
       host-pid); sweep.json storage/workers/synced/running_elsewhere; workers/ and
       write.lock. Version 1 folders load as before (no worker, one process).
       Issue 13 adds the optional column `steady` (the run's steady-state verdict); folders
       without it read as None, and older readers ignore it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_bytes, lock_held
from eicore.results import RunSummary, SchemaError, new_run_id, read_json_file

SWEEP_SCHEMA_VERSION = 2
KNOWN_SWEEP_SCHEMA_VERSIONS = (1, 2)
SWEEPS_DIR = "sweeps"
SWEEP_JSON = "sweep.json"
#: Held (flock) by the process running the sweep: a "running" sweep without it was killed.
SWEEP_LOCK = "lock"
#: A shared study's workers: `<worker-id>.lock`, each held (flock) by one worker while it runs.
WORKERS_DIR = "workers"
#: Held (flock) while a process rewrites sweep.json and trials.parquet.
SWEEP_WRITE_LOCK = "write.lock"
TRIALS_FILE = "trials.parquet"
PARAM_PREFIX = "param."

#: objective metric -> its natural direction (what `[objective] metric` may name)
OBJECTIVES = {
    "throughput_rps": "maximize",
    "p50_ms": "minimize",
    "p95_ms": "minimize",
    "p99_ms": "minimize",
    "mean_ms": "minimize",
    "max_ms": "minimize",
    "error_pct": "minimize",
    "gc_pause_p99_ms": "minimize",    # these three need a GC log (jvm.gc_log=on)
    "gc_pause_max_ms": "minimize",
    "gc_throughput_pct": "maximize",
}


class TrialState(StrEnum):
    """State of one repetition (a row), and of a trial (its repetitions folded together).

    complete: ran and gave the objective; failed: the settings were refused or the run gave no
    objective; running: not finished (an interrupted sweep's row is run again on resume);
    partial: a trial only -- some repetitions complete, some failed (ranked after the complete
    trials, never the best; its failures are shown)."""

    COMPLETE = "complete"
    FAILED = "failed"
    RUNNING = "running"
    PARTIAL = "partial"


class SweepStatus(StrEnum):
    """running: a process runs it (holds the lock); complete: ran to its end; incomplete:
    interrupted, resumable; failed: stopped by an error."""

    RUNNING = "running"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


@dataclass(frozen=True)
class TrialRow:
    """One repetition of one trial, as trials.parquet stores it. Never edited once final."""

    trial: int
    repetition: int
    state: TrialState
    params: dict[str, str]
    run_id: str | None = None
    objective: float | None = None
    slo_ok: bool | None = None
    slo_detail: str = ""
    error: str | None = None
    started: float = 0.0
    duration_s: float = 0.0
    #: who ran it: "<host>-<pid>" of the eiperf process (None in schema 1 folders)
    worker: str | None = None
    #: the run's steady-state verdict (an eicore.results.SteadyVerdict value; None when the run
    #: has none, and in folders written before issue 13, which lack the column)
    steady: str | None = None
    #: SLO constraint values for Optuna (from the run's slo_results; not stored in Parquet)
    constraints: tuple[float, ...] = field(default=(), compare=False)


#: trials.parquet columns: name -> arrow type; `param.<name>` string columns follow
TRIAL_COLUMNS = (
    ("trial", "int64"), ("repetition", "int64"), ("state", "string"), ("run_id", "string"),
    ("objective", "float64"), ("slo_ok", "bool"), ("slo_detail", "string"),
    ("error", "string"), ("started", "float64"), ("duration_s", "float64"),
    ("worker", "string"), ("steady", "string"),
)


def sweeps_root(results_dir: Path) -> Path:
    """Where sweeps live: `<results>/sweeps`."""
    return Path(results_dir) / SWEEPS_DIR


def new_sweep_id() -> str:
    """Sortable and unique, like run ids: sweep-20261125-121530-3f2a."""
    return f"sweep-{new_run_id()}"


def read_sweep_info(folder: Path) -> dict[str, Any]:
    """sweep.json of `folder`; SchemaError (one line) when missing, not JSON, of an unknown
    schema version or not a sweep."""
    info = read_json_file(folder, SWEEP_JSON, "sweep")
    where = Path(folder) / SWEEP_JSON
    version = info.get("schema_version")
    if version not in KNOWN_SWEEP_SCHEMA_VERSIONS:
        raise SchemaError(
            f"{where}: sweep schema version {version!r} is unknown to this eiperf (it reads "
            f"{', '.join(map(str, KNOWN_SWEEP_SCHEMA_VERSIONS))}); use the eiperf that wrote it")
    if info.get("kind", "sweep") != "sweep":
        raise SchemaError(f"{where}: kind {info.get('kind')!r} is not a sweep")
    return info


def sweep_running(folder: Path) -> bool | None:
    """Whether a process runs the sweep in `folder`: its `lock`, or a worker's lock in
    `workers/`, is held. None when it cannot be told (a lock file unreadable)."""
    folder = Path(folder)
    locks = [folder / SWEEP_LOCK]
    try:
        locks += sorted((folder / WORKERS_DIR).glob("*.lock"))
    except OSError:
        return None
    answers = [lock_held(p) for p in locks]
    if any(answers):
        return True
    return None if None in answers else False


def row_record(row: TrialRow, names: list[str]) -> dict[str, Any]:
    """One row as plain data: TRIAL_COLUMNS, then `param.<name>` (what trials.parquet stores
    and a shared study keeps; `row_from_record` reads it back)."""
    out: dict[str, Any] = {}
    for c, _ in TRIAL_COLUMNS:
        value = getattr(row, c)
        out[c] = value.value if isinstance(value, StrEnum) else value
    for name in names:
        out[PARAM_PREFIX + name] = row.params.get(name)
    return out


def trials_table(rows: list[TrialRow], names: list[str]):
    """The rows as an Arrow table with the contract's column types."""
    import pyarrow as pa  # heavy: only when a sweep is written

    columns: dict[str, list[Any]] = {c: [] for c, _ in TRIAL_COLUMNS}
    for name in names:
        columns[PARAM_PREFIX + name] = []
    for r in rows:
        for key, value in row_record(r, names).items():
            columns[key].append(value)
    schema = pa.schema([*(pa.field(c, t) for c, t in TRIAL_COLUMNS),
                        *(pa.field(PARAM_PREFIX + n, "string") for n in names)])
    return pa.table(columns, schema=schema)


def write_trials(path: Path, rows: list[TrialRow], names: list[str]) -> None:
    """trials.parquet, atomically."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(trials_table(rows, names), buf)
    atomic_write_bytes(path, buf.getvalue())


def row_from_record(rec: dict[str, Any], where: str = TRIALS_FILE) -> TrialRow:
    """A TrialRow from one trials.parquet record (a dict of column -> value)."""
    def opt(name: str, default: Any = None) -> Any:
        value = rec.get(name, default)
        return default if value is None or (isinstance(value, float) and math.isnan(value)) \
            else value

    params = {k[len(PARAM_PREFIX):]: str(v) for k, v in rec.items()
              if k.startswith(PARAM_PREFIX) and opt(k) is not None}
    try:
        state = TrialState(opt("state", TrialState.COMPLETE.value))
    except ValueError:
        raise SchemaError(f"{where}: trial {rec.get('trial')} has state {rec.get('state')!r}; "
                          f"known: {', '.join(s.value for s in TrialState)}") from None
    slo_ok = opt("slo_ok")
    return TrialRow(
        trial=int(rec["trial"]), repetition=int(opt("repetition", 0)), state=state,
        params=params, run_id=opt("run_id"), objective=opt("objective"),
        slo_ok=None if slo_ok is None else bool(slo_ok), slo_detail=opt("slo_detail", ""),
        error=opt("error"), started=float(opt("started", 0.0)),
        duration_s=float(opt("duration_s", 0.0)), worker=opt("worker"), steady=opt("steady"))


def read_trials(path: Path) -> list[TrialRow]:
    """trials.parquet as rows ([] when the file does not exist yet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        return []
    try:
        records = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise SchemaError(f"{path}: not a readable Parquet file ({e})") from None
    if records and "trial" not in records[0]:
        raise SchemaError(f"{path}: trials lack column trial")
    return [row_from_record(rec, str(path)) for rec in records]


def objective_value(summary: RunSummary | None, metric: str) -> float | None:
    """The objective figure `metric` (one of OBJECTIVES) from a run's summary; None when it
    could not be computed."""
    if metric not in OBJECTIVES:
        raise EiperfError(f"objective {metric!r} is not one of {', '.join(OBJECTIVES)}")
    if not summary:
        return None
    if metric == "error_pct":
        value = summary.get("error_rate")
        value = None if value is None else value * 100.0
    elif metric in ("throughput_rps", "mean_ms", "max_ms") or metric.startswith("gc_"):
        value = summary.get(metric)
    else:
        value = (summary.get("percentiles_ms") or {}).get(metric.removesuffix("_ms"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)
