"""Loading results: a run folder into a ``Run``, a sweep folder into a ``Sweep``, and the
resolution of a command-line argument (a run folder, a sweep folder, or an id under results/).

Layout and schema: ``eicore.results``. Parquet is read with pyarrow, only the columns analysis
needs, string columns dictionary-encoded (pandas categoricals), so a million request rows load
in about 25 ms. Numeric columns are pyarrow's own buffers, not copies: read-only (copy a column
before writing into it). An unknown schema version is refused with ``SchemaError`` (one
line); an interrupted run loads but is flagged ``incomplete`` with the reasons in ``problems``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eicore.errors import EiperfError
from eicore.results import (
    METRICS_FILE,
    REQUESTS_FILE,
    RESULTS_ENV,
    RUN_JSON,
    TIMELINE_JSON,
    RunRecord,
    RunStatus,
    SchemaError,
    metrics_schema,
    read_run_record,
    requests_schema,
    results_dir,
)
from eicore.sweeps import (
    PARAM_PREFIX,
    SWEEP_JSON,
    TRIALS_FILE,
    SweepStatus,
    TrialRow,
    read_sweep_info,
    row_from_record,
    sweep_running,
    sweeps_root,
)

#: Columns of requests.parquet that analysis reads by default (``bytes`` and ``name`` are not).
#: ``worker`` is schema 2's; a schema 1 run loads with it all missing (not recorded then).
REQUEST_COLUMNS: tuple[str, ...] = ("ts", "scenario", "latency_us", "status", "ok", "error", "node",
                                    "worker")
METRIC_COLUMNS: tuple[str, ...] = ("ts", "node", "source", "metric", "value")

@dataclass(frozen=True)
class Run:
    """One run as loaded: its record, requests and metrics frames, and where it came from.

    ``incomplete`` is True when the run did not end normally (status incomplete or failed) or a
    data file is missing; ``problems`` says why, one line each.
    """

    record: RunRecord
    requests: pd.DataFrame
    metrics: pd.DataFrame
    path: Path
    problems: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> RunStatus:
        return self.record.status

    @property
    def incomplete(self) -> bool:
        return bool(self.problems)

    @property
    def window(self) -> tuple[float, float] | None:
        """The measured window (measure_start, measure_end), warm-up excluded.

        An interrupted run may lack ``measure_end``: its window then ends just after its last
        request. None (meaning: all rows) when the run has no measure_start.
        """
        start, end = self.record.measure_start, self.record.measure_end
        if start is None:
            return None
        if end is None:
            ts = self.requests["ts"].to_numpy(dtype=np.float64)
            end = float(np.nextafter(ts.max(), np.inf)) if ts.size else None
            end = end if end is not None else self.record.ended_at
        if end is None or end <= start:
            return None
        return (float(start), float(end))

    @property
    def start_ts(self) -> float:
        """Origin of the run's time axis: started_at, else the first request."""
        if self.record.started_at:
            return float(self.record.started_at)
        ts = self.requests["ts"].to_numpy(dtype=np.float64)
        return float(ts.min()) if ts.size else 0.0

    @property
    def processes(self) -> int:
        """Load-generator processes (for the saturation check); 1 when not recorded."""
        try:
            return max(1, int(self.record.generator.get("processes", 1)))
        except (TypeError, ValueError):
            return 1


def _read_parquet(path: Path, columns: Sequence[str], required: Iterable[str],
                  what: str) -> pd.DataFrame:
    """Read ``columns`` of a Parquet file (strings as categoricals); SchemaError on bad files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise SchemaError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise SchemaError(f"{path}: {what} lacks column(s) {', '.join(missing)}; "
                          "was it written by eiperf?")
    wanted = [c for c in columns if c in schema.names]
    strings = [c for c in wanted if pa.types.is_string(schema.field(c).type)
               or pa.types.is_large_string(schema.field(c).type)]
    # ParquetFile.read returns each column in one chunk (read_table: one per 128 Ki rows),
    # which numeric columns then become without a copy.
    table = pq.ParquetFile(path, read_dictionary=strings).read(columns=wanted)
    return pd.DataFrame({name: _categorical(column) if pa.types.is_dictionary(column.type)
                         else column.to_pandas() for name, column in
                         zip(table.column_names, table.columns, strict=True)}, copy=False)


def _categorical(column: Any) -> pd.Categorical:
    """A dictionary-encoded column as a categorical made from its codes, narrowed to the
    smallest integer type in one pass: pyarrow's own conversion takes three times as long."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.unify_dictionaries()  # one dictionary for all chunks
    values = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
    indices = [(pc.fill_null(chunk.indices, -1) if chunk.null_count else chunk.indices).to_numpy()
               for chunk in column.chunks]
    narrow = np.int8 if len(values) < 2**7 else np.int16 if len(values) < 2**15 else np.int32
    codes = (np.concatenate(indices, dtype=narrow, casting="same_kind") if indices
             else np.zeros(0, narrow))
    return pd.Categorical.from_codes(codes, categories=pd.Index(values.to_pylist()),
                                     validate=False)


def _empty(schema: Any, columns: Sequence[str]) -> pd.DataFrame:
    return schema.empty_table().select([c for c in columns if c in schema.names]).to_pandas()


def load_run(path: str | Path, *, request_columns: Sequence[str] = REQUEST_COLUMNS,
             metric_columns: Sequence[str] = METRIC_COLUMNS) -> Run:
    """Load a run folder (run.json, requests.parquet, metrics.parquet).

    Raises SchemaError for an unknown schema version or a folder that is not a run; a missing
    data file loads as an empty frame and marks the run incomplete.
    """
    path = Path(path)
    if not path.is_dir():
        raise EiperfError(f"{path}: no such run folder")
    record = read_run_record(path)
    problems: list[str] = []
    if record.status is RunStatus.INCOMPLETE:
        problems.append("the run was interrupted (status incomplete): figures cover what ran")
    elif record.status is RunStatus.FAILED:
        problems.append(f"the run failed before load ran: {record.error or 'no reason recorded'}")
    frames = []
    for name, columns, schema, required in (
        (REQUESTS_FILE, request_columns, requests_schema(), ("ts", "latency_us", "ok")),
        (METRICS_FILE, metric_columns, metrics_schema(), ("ts", "node", "metric", "value")),
    ):
        file = path / name
        if file.exists():
            frames.append(_read_parquet(file, columns, required, name))
        else:
            frames.append(_empty(schema, columns))
            if record.status is not RunStatus.FAILED:
                problems.append(f"{name} is missing")
    requests = frames[0]
    if "worker" in request_columns and "worker" not in requests.columns:  # schema 1
        requests["worker"] = pd.Categorical.from_codes(
            np.full(len(requests), -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    return Run(record, requests, frames[1], path, tuple(problems))


@dataclass(frozen=True)
class Sweep:
    """One sweep as loaded: sweep.json and its trials, with parameters as ``param.<name>``."""

    path: Path
    info: dict[str, Any]
    trials: pd.DataFrame
    params: tuple[str, ...]
    direction: str = "maximize"
    objective: str = "objective"
    results: Path = field(default=Path("results"))
    #: sweep.json says running, yet no process held the sweep's lock (or, for a shared study, a
    #: worker's lock in this folder) when it was loaded, and no trial ran on workers elsewhere
    #: when it was last written: the processes running it were killed.
    interrupted: bool = False
    #: the trials as the foundation's records (what ``eicore.trials`` folds and ranks)
    rows: tuple[TrialRow, ...] = ()

    @property
    def id(self) -> str:
        return str(self.info.get("id") or self.path.name)

    @property
    def state(self) -> str:
        """running | complete | incomplete | failed (sweep.json ``status``; a sweep that says
        running but that no eiperf process runs any more is incomplete)."""
        if self.interrupted:
            return SweepStatus.INCOMPLETE.value
        return str(self.info.get("status", "unknown"))

    @property
    def incomplete(self) -> bool:
        """True unless the sweep ran to its end."""
        return self.state != SweepStatus.COMPLETE.value

    @property
    def slo(self) -> list[str]:
        return [str(rule) for rule in self.info.get("slo") or []]

    @property
    def storage(self) -> str | None:
        """The Optuna storage a shared sweep lives in (no password); None for a plain sweep.
        Its folder holds every worker's trials as of ``info["synced"]``."""
        return self.info.get("storage") or None

    @property
    def strategy(self) -> str:
        strategy = self.info.get("strategy", self.info.get("spec", {}).get("strategy", "unknown"))
        return str(strategy.get("name", strategy) if isinstance(strategy, dict) else strategy)

    def run_path(self, run_id: str) -> Path:
        """Where a trial's run folder is (results/<run-id>)."""
        return self.results / str(run_id)


def _direction(info: dict[str, Any]) -> tuple[str, str]:
    """(direction, objective name) from sweep.json: top level, ``spec`` or ``spec.objective``."""
    spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
    objective = info.get("objective", spec.get("objective", "objective"))
    direction = info.get("direction", spec.get("direction"))
    if isinstance(objective, dict):
        direction = direction or objective.get("direction")
        objective = objective.get("name") or objective.get("metric") or "objective"
    direction = str(direction or "maximize").lower()
    if direction not in ("maximize", "minimize"):
        raise SchemaError(f"sweep.json: direction {direction!r} is neither maximize nor minimize")
    return direction, str(objective)


def load_sweep(path: str | Path) -> Sweep:
    """Load a sweep folder (sweep.json and trials.parquet); runs stay on disk (``load_run``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    info = read_sweep_info(path)
    direction, objective = _direction(info)
    file = path / TRIALS_FILE
    if file.exists():
        try:
            trials = pq.read_table(file).to_pandas()
        except (OSError, pa.ArrowException) as e:
            raise SchemaError(f"{file}: not a readable Parquet file ({e})") from None
    else:
        trials = pd.DataFrame({"trial": pd.Series([], dtype="int64")})
    if "trial" not in trials.columns:
        raise SchemaError(f"{file}: trials lack column trial")
    rows = tuple(row_from_record(rec, str(file)) for rec in trials.to_dict("records"))
    for column, default in (("run_id", None), ("objective", np.nan), ("slo_ok", False),
                            ("state", "complete")):
        if column not in trials.columns:
            trials[column] = default
    trials["objective"] = pd.to_numeric(trials["objective"], errors="coerce").astype(float)
    trials["slo_ok"] = trials["slo_ok"].fillna(False).astype(bool)
    trials["state"] = trials["state"].astype(str)
    params = tuple(c[len(PARAM_PREFIX):] for c in trials.columns if c.startswith(PARAM_PREFIX))
    trials = trials.sort_values("trial", kind="stable").reset_index(drop=True)
    interrupted = (info.get("status") == SweepStatus.RUNNING.value
                   and sweep_running(path) is False and not info.get("running_elsewhere"))
    return Sweep(path, info, trials, params, direction, objective, path.parent.parent,
                 interrupted, rows)


def sweep_records(sweep: Sweep) -> dict[str, RunRecord]:
    """run.json of each trial's run that exists (cheap: no Parquet is read)."""
    out = {}
    for run_id in sweep.trials["run_id"].dropna().astype(str):
        if (sweep.run_path(run_id) / RUN_JSON).exists():
            out[run_id] = read_run_record(sweep.run_path(run_id))
    return out


def resolve(target: str | Path, results: str | Path | None = None) -> tuple[str, Path]:
    """("run" | "sweep", folder) for a run folder, a sweep folder, or a run/sweep id under the
    results folder; EiperfError naming what is wrong otherwise."""
    path = Path(target)
    if path.is_dir():
        if (path / RUN_JSON).exists():
            return "run", path
        if (path / SWEEP_JSON).exists():
            return "sweep", path
        raise EiperfError(f"{path}: not an eiperf run folder (no {RUN_JSON}) nor a sweep folder "
                          f"(no {SWEEP_JSON})")
    if path.exists():
        raise EiperfError(f"{path}: is a file; pass a run folder, a sweep folder or a run id")
    base = results_dir(results)
    if len(path.parts) == 1:
        if (base / path / RUN_JSON).exists():
            return "run", base / path
        if (sweeps_root(base) / path / SWEEP_JSON).exists():
            return "sweep", sweeps_root(base) / path
    raise EiperfError(f"{target}: no such run folder, and no run or sweep with that id under "
                      f"{base}/ (pass a path, or set {RESULTS_ENV})")


def load(target: str | Path, results: str | Path | None = None) -> Run | Sweep:
    """``resolve`` then ``load_run`` or ``load_sweep``."""
    kind, path = resolve(target, results)
    return load_run(path) if kind == "run" else load_sweep(path)


def _planned_steps(shape: dict[str, Any], origin: float) -> list[tuple[float, float]] | None:
    """Step boundaries [(epoch s, users)] of a step shape described as the locustfile writes it
    (step_users, step_time, max_users, duration), counted from ``origin``."""
    try:
        step_users, step_time = int(shape["step_users"]), float(shape["step_time"])
        max_users = int(shape.get("max_users") or shape["users"])
        duration = float(shape["duration"])
    except (KeyError, TypeError, ValueError):
        return None
    if step_users < 1 or step_time <= 0 or duration <= 0:
        return None
    out: list[tuple[float, float]] = []
    for i in range(int(np.ceil(duration / step_time))):
        users = min(max_users, (i + 1) * step_users)
        if not out or out[-1][1] != users:
            out.append((origin + i * step_time, float(users)))
    return out


def users_timeline(run: Run) -> pd.DataFrame | None:
    """(ts, users) rows of the load shape, or None when the run does not record one.

    Sources, first found: metric rows named ``users`` in metrics.parquet; ``timeline.json``
    (the locustfile's record: for a step shape its planned step boundaries from the test start,
    which are exact, else the user count it sampled each second); ``load.steps`` in run.json as
    [[start_s, users], ...] or [{"start_s":, "users":}, ...] (seconds since started_at, or epoch
    seconds); a ``load`` of shape ``step`` (step_users, step_time, users, duration).
    """
    metrics = run.metrics
    if len(metrics):
        rows = metrics[metrics["metric"].astype(str) == "users"]
        if len(rows):
            return (rows[["ts", "value"]].rename(columns={"value": "users"})
                    .sort_values("ts", kind="stable").reset_index(drop=True))
    pairs: list[tuple[float, float]] | None = None
    timeline_file = run.path / TIMELINE_JSON
    if timeline_file.exists():
        try:
            timeline = json.loads(timeline_file.read_text())
        except json.JSONDecodeError:
            timeline = {}
        shape = timeline.get("shape") or {}
        if isinstance(shape, dict) and shape.get("shape") == "step" and timeline.get("test_start"):
            pairs = _planned_steps(shape, float(timeline["test_start"]))
        if not pairs and timeline.get("users"):
            try:
                pairs = [(float(t), float(u)) for t, u in timeline["users"]]
            except (TypeError, ValueError):
                pairs = None
    load = run.record.load or {}
    if not pairs and load.get("steps"):
        try:
            pairs = [(float(s["start_s"]), float(s["users"])) if isinstance(s, dict)
                     else (float(s[0]), float(s[1])) for s in load["steps"]]
        except (TypeError, ValueError, IndexError, KeyError):
            return None
        pairs = [(t if t > 1e9 else run.start_ts + t, u) for t, u in pairs]
    if not pairs and str(load.get("shape", "")).lower() == "step":
        total = float(load.get("duration") or 0) + float(load.get("warmup") or 0)
        pairs = _planned_steps({**load, "max_users": load.get("max_users") or load.get("users"),
                                "duration": total or load.get("duration")}, run.start_ts)
    if not pairs:
        return None
    return pd.DataFrame({"ts": [t for t, _ in pairs], "users": [u for _, u in pairs]})
