"""The sweep engine: many load tests, one configuration each, and the best one under an SLO.

Each trial: `apply_settings` (through one change journal; nodes restart only for JVM or
pass-through changes, nginx-only changes just reload) -> the profile's warm-up and measured
run (`run_load_test`, a normal run folder) -> the objective and SLO verdict from the run's
summary -> a row in trials.parquet. A trial whose JVM refuses its flags, or whose node does not
start, is recorded as failed with the JVM's own words; the cluster is restored and the sweep
goes on. The originals come back at the end, on Ctrl-C / SIGTERM and on error; after a SIGKILL
the journal stays open and the next eiperf command (or `eiperf tune restore`) restores it.

Results (`results/sweeps/<sweep-id>/`, read by `analysis.loading.load_sweep`), both rewritten
atomically after every trial:

* `sweep.json` -- SWEEP_SCHEMA_VERSION; id, status (running|complete|incomplete|failed),
  created/finished, strategy, the spec as plain data, objective, slo, parameters, best, cluster.
* `trials.parquet` -- one row per trial and repetition (`TRIAL_COLUMNS`, plus `param.<name>`).

Schema history: 1 -- first version.

`--resume <id>` reruns nothing finished: rows in state complete or failed are kept and replayed
into a fresh strategy (grid: their configurations are skipped; optuna: told to a new study
before the first ask); rows left "running" by an interruption are dropped and run again.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from eiperf.cluster import Cluster
from eiperf.errors import EiperfError
from eiperf.fsutil import atomic_write_bytes, atomic_write_text
from eiperf.results import RunStatus, new_run_id
from tuning.params import ParameterError, ParamSet
from tuning.strategies import Finished, Proposal, make_strategy, slo_constraints
from tuning.sweep_spec import SweepSpec, parse_spec_data

SWEEP_SCHEMA_VERSION = 1
SWEEPS_DIR = "sweeps"
SWEEP_JSON = "sweep.json"
#: Held (flock) by the process running the sweep: a "running" sweep without it was killed.
SWEEP_LOCK = "lock"
TRIALS_FILE = "trials.parquet"
PARAM_PREFIX = "param."


class TrialState(StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"
    RUNNING = "running"
    SKIPPED = "skipped"


class SweepStatus(StrEnum):
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
    constraints: tuple[float, ...] = field(default=(), compare=False)


# name -> arrow type; `param.<name>` string columns follow
TRIAL_COLUMNS = (
    ("trial", "int64"), ("repetition", "int64"), ("state", "string"), ("run_id", "string"),
    ("objective", "float64"), ("slo_ok", "bool"), ("slo_detail", "string"),
    ("error", "string"), ("started", "float64"), ("duration_s", "float64"),
)


def sweeps_root(results_dir: Path) -> Path:
    return Path(results_dir) / SWEEPS_DIR


def new_sweep_id() -> str:
    """Sortable and unique, like run ids: sweep-20261125-121530-3f2a."""
    return f"sweep-{new_run_id()}"


# ---- trials.parquet ----------------------------------------------------------------------------


def trials_table(rows: list[TrialRow], names: list[str]):
    """The rows as an Arrow table with the contract's column types."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {c: [] for c, _ in TRIAL_COLUMNS}
    for name in names:
        columns[PARAM_PREFIX + name] = []
    for r in rows:
        for c, _ in TRIAL_COLUMNS:
            value = getattr(r, c)
            columns[c].append(value.value if isinstance(value, StrEnum) else value)
        for name in names:
            columns[PARAM_PREFIX + name].append(r.params.get(name))
    schema = pa.schema([*(pa.field(c, t) for c, t in TRIAL_COLUMNS),
                        *(pa.field(PARAM_PREFIX + n, "string") for n in names)])
    return pa.table(columns, schema=schema)


def write_trials(path: Path, rows: list[TrialRow], names: list[str]) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(trials_table(rows, names), buf)
    atomic_write_bytes(path, buf.getvalue())


def read_trials(path: Path) -> list[TrialRow]:
    import pyarrow.parquet as pq

    if not path.exists():
        return []
    out = []
    for rec in pq.read_table(path).to_pylist():
        params = {k[len(PARAM_PREFIX):]: v for k, v in rec.items()
                  if k.startswith(PARAM_PREFIX) and v is not None}
        out.append(TrialRow(
            trial=int(rec["trial"]), repetition=int(rec["repetition"]),
            state=TrialState(rec["state"]), params=params, run_id=rec["run_id"],
            objective=rec["objective"], slo_ok=rec["slo_ok"], slo_detail=rec["slo_detail"] or "",
            error=rec["error"], started=rec["started"] or 0.0,
            duration_s=rec["duration_s"] or 0.0))
    return out


# ---- figures from a run ------------------------------------------------------------------------


def objective_value(summary: dict[str, Any] | None, metric: str) -> float | None:
    """The objective figure from run.json's summary (None when it could not be computed)."""
    if not summary:
        return None
    if metric == "error_pct":
        value = summary.get("error_rate")
        value = None if value is None else value * 100.0
    elif metric in ("throughput_rps", "mean_ms", "max_ms"):
        value = summary.get(metric)
    else:
        value = (summary.get("percentiles_ms") or {}).get(metric.removesuffix("_ms"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def slo_text(slo_results: list[dict]) -> str:
    """`p95<200ms: 12.3 met; errors<0.1%: 0 met` -- the verdict of each rule, one line."""
    parts = []
    for r in slo_results:
        actual = r.get("actual")
        shown = "n/a" if actual is None else f"{actual:.4g}"
        parts.append(f"{r['rule']}: {shown} {r.get('verdict', 'met' if r.get('ok') else 'BROKEN')}")
    return "; ".join(parts)


# ---- summary of a sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialResult:
    """A trial over its repetitions: the mean objective, all SLO verdicts met or not."""

    trial: int
    params: dict[str, str]
    state: TrialState
    objective: float | None
    slo_ok: bool | None
    run_ids: list[str]
    error: str | None
    constraints: tuple[float, ...] = ()


def aggregate(rows: list[TrialRow]) -> list[TrialResult]:
    """One result per trial number (repetitions folded), in trial order."""
    out = []
    for number in sorted({r.trial for r in rows}):
        reps = [r for r in rows if r.trial == number]
        done = [r for r in reps if r.state is TrialState.COMPLETE and r.objective is not None]
        failed = [r for r in reps if r.state is TrialState.FAILED]
        if done and not failed:
            state, objective = TrialState.COMPLETE, sum(r.objective for r in done) / len(done)
        elif failed:
            state, objective = TrialState.FAILED, None
        else:
            state, objective = reps[-1].state, None
        slo_ok = all(r.slo_ok for r in done) if state is TrialState.COMPLETE else None
        constraints: tuple[float, ...] = ()
        if done and all(r.constraints for r in done):
            constraints = tuple(max(c) for c in zip(*(r.constraints for r in done)))
        error = next((r.error for r in failed if r.error), None)
        out.append(TrialResult(number, reps[0].params, state, objective, slo_ok,
                               [r.run_id for r in reps if r.run_id], error, constraints))
    return out


def ranked(results: list[TrialResult], direction: str) -> list[TrialResult]:
    """SLO met first, best objective first; then SLO broken; then failed or unfinished."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(t: TrialResult):
        group = 2 if t.state is not TrialState.COMPLETE else (0 if t.slo_ok else 1)
        value = sign * t.objective if t.objective is not None else math.inf
        return (group, value, t.trial)

    return sorted(results, key=key)


def best_of(results: list[TrialResult], direction: str) -> TrialResult | None:
    """The best complete trial that met the SLO, or None."""
    first = next(iter(ranked(results, direction)), None)
    if first is None or first.state is not TrialState.COMPLETE or not first.slo_ok:
        return None
    return first


def tune_apply_command(params: dict[str, str]) -> str:
    """The `eiperf tune apply` command that puts a configuration in place."""
    import shlex

    return "eiperf tune apply " + " ".join(f"--set {shlex.quote(f'{k}={v}')}"
                                          for k, v in params.items())


def format_table(results: list[TrialResult], spec: SweepSpec) -> list[str]:
    """The trials, ranked, as text lines (printing is the caller's)."""
    metric = spec.objective.metric
    names = spec.names
    head = ["#", "trial", *names, metric, "SLO", "state"]
    body = []
    for rank, t in enumerate(ranked(results, spec.objective.direction), 1):
        slo = "-" if t.slo_ok is None else ("met" if t.slo_ok else "BROKEN")
        objective = "-" if t.objective is None else f"{t.objective:.4g}"
        state = t.state.value + (f": {t.error}" if t.error else "")
        body.append([str(rank), str(t.trial), *(t.params.get(n, "") for n in names), objective,
                     slo, state[:90]])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]


# ---- the sweep folder --------------------------------------------------------------------------


class SweepFolder:
    """results/sweeps/<id>/: sweep.json and trials.parquet, and a lock while a sweep runs."""

    def __init__(self, path: Path, info: dict[str, Any], rows: list[TrialRow]) -> None:
        self.path = path
        self.info = info
        self.rows = rows
        self._lock_fd: int | None = None

    @property
    def id(self) -> str:
        return self.info["id"]

    @classmethod
    def create(cls, results_dir: Path, spec: SweepSpec, cluster_file: str) -> SweepFolder:
        sid = new_sweep_id()
        info = {
            "schema_version": SWEEP_SCHEMA_VERSION, "kind": "sweep", "id": sid,
            "status": SweepStatus.RUNNING.value,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "finished": None,
            "strategy": spec.strategy, "spec": spec.as_data(),
            "objective": {"metric": spec.objective.metric,
                          "direction": spec.objective.direction},
            "slo": list(spec.slo), "parameters": spec.names, "best": None,
            "cluster": cluster_file,
        }
        folder = cls(sweeps_root(results_dir) / sid, info, [])
        folder.path.mkdir(parents=True)
        return folder

    @classmethod
    def open(cls, results_dir: Path, sweep_id: str) -> SweepFolder:
        path = sweeps_root(results_dir) / sweep_id
        try:
            info = json.loads((path / SWEEP_JSON).read_text("utf-8"))
        except FileNotFoundError:
            raise EiperfError(f"no sweep {sweep_id!r} under {sweeps_root(results_dir)}; "
                              "give the id of a folder there (or the right --out)") from None
        except ValueError as e:
            raise EiperfError(f"{path / SWEEP_JSON}: not valid JSON ({e})") from None
        if info.get("schema_version") != SWEEP_SCHEMA_VERSION:
            raise EiperfError(f"{path / SWEEP_JSON}: schema_version "
                              f"{info.get('schema_version')!r} is not {SWEEP_SCHEMA_VERSION}; "
                              "resume it with the eiperf version that wrote it")
        return cls(path, info, read_trials(path / TRIALS_FILE))

    def spec(self) -> SweepSpec:
        data = self.info["spec"]
        return parse_spec_data(data, data.get("source") or self.id)

    def lock(self) -> None:
        fd = os.open(self.path / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EiperfError(f"sweep {self.id} is running in another eiperf process; "
                              "wait for it or stop it first") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def save(self) -> None:
        names = list(self.info["parameters"])
        write_trials(self.path / TRIALS_FILE, self.rows, names)
        atomic_write_text(self.path / SWEEP_JSON, json.dumps(self.info, indent=2) + "\n")


# ---- the engine --------------------------------------------------------------------------------


class SweepUI:
    """What the engine tells its caller; the CLI draws a progress bar, tests pass this no-op."""

    def start(self, sweep_id: str, total: int | None, done: int) -> None: ...

    def trial_started(self, proposal: Proposal, repetition: int) -> None: ...

    def trial_finished(self, row: TrialRow, best: TrialResult | None) -> None: ...

    def note(self, message: str) -> None: ...

    def stop(self) -> None: ...


@dataclass
class SweepOutcome:
    path: Path
    status: SweepStatus
    results: list[TrialResult]
    best: TrialResult | None
    lines: list[str] = field(default_factory=list)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class _Interrupted(Exception):
    pass


class SweepRun:
    """One execution of a sweep (new or resumed) on one cluster."""

    def __init__(self, spec: SweepSpec, cluster: Cluster, results_dir: Path,
                 folder: SweepFolder, ui: SweepUI) -> None:
        self.spec = spec
        self.cluster = cluster
        self.results_dir = Path(results_dir)
        self.folder = folder
        self.ui = ui
        self.journal = None

    # -- journal

    def _begin_journal(self) -> None:
        from tuning.journal import Journal

        self.journal = Journal.begin(self.results_dir, Path(self.cluster.source),
                                     f"sweep {self.folder.id}")

    def _restore(self) -> None:
        from tuning.apply import restore_cluster

        if self.journal is None:
            return
        journal, self.journal = self.journal, None
        if journal.changed_files():
            self.ui.note("restoring the original settings ...")
        restore_cluster(self.cluster, journal, progress=self.ui.note)
        journal.close()

    # -- bookkeeping

    def _put(self, row: TrialRow) -> None:
        rows = [r for r in self.folder.rows
                if (r.trial, r.repetition) != (row.trial, row.repetition)]
        self.folder.rows = [*rows, row]
        best = best_of(aggregate(self.folder.rows), self.spec.objective.direction)
        self.folder.info["best"] = None if best is None else {
            "trial": best.trial, "params": best.params, "objective": best.objective,
            "run_ids": best.run_ids}
        self.folder.save()

    def finished(self) -> list[Finished]:
        return [Finished(t.trial, t.params, t.objective, t.constraints)
                for t in aggregate(self.folder.rows)
                if t.state in (TrialState.COMPLETE, TrialState.FAILED)]

    def _reload_constraints(self) -> None:
        """SLO constraint values of resumed rows, from their runs' run.json (not in parquet)."""
        from eiperf.results import read_run_record

        rows = []
        for r in self.folder.rows:
            if r.state is TrialState.COMPLETE and r.run_id and not r.constraints:
                try:
                    rec = read_run_record(self.results_dir / r.run_id)
                    r = replace(r, constraints=slo_constraints(rec.slo_results))
                except (EiperfError, OSError, ValueError, KeyError):
                    pass
            rows.append(r)
        self.folder.rows = rows

    # -- one trial

    def run_trial(self, p: Proposal) -> TrialResult:
        from tuning.apply import ApplyError, apply_settings

        started = time.time()
        try:
            params = ParamSet(p.params)
        except ParameterError as e:
            return self._fail(p, started, str(e))
        self.ui.trial_started(p, 0)
        try:
            apply_settings(self.cluster, params, self.journal, progress=self.ui.note)
        except ApplyError as e:
            self.ui.note(f"trial {p.trial} failed: {e}")
            self._restore()
            self._begin_journal()
            return self._fail(p, started, e.jvm_message or str(e))
        for rep in range(self.spec.repetitions):
            if rep:
                self.ui.trial_started(p, rep)
            self._run_once(p, rep, started if rep == 0 else time.time())
        return next(t for t in aggregate(self.folder.rows) if t.trial == p.trial)

    def _fail(self, p: Proposal, started: float, error: str) -> TrialResult:
        row = TrialRow(p.trial, 0, TrialState.FAILED, p.params, error=error, started=started,
                       duration_s=time.time() - started)
        self._put(row)
        self.ui.trial_finished(row, best_of(aggregate(self.folder.rows),
                                            self.spec.objective.direction))
        return next(t for t in aggregate(self.folder.rows) if t.trial == p.trial)

    def _run_once(self, p: Proposal, rep: int, started: float) -> None:
        from eiperf.commands.run_cmd import analyse
        from loadtests.run import run_load_test

        rules = _rules(self.spec)
        run_id = new_run_id()
        self._put(TrialRow(p.trial, rep, TrialState.RUNNING, p.params, run_id=run_id,
                           started=started))

        def finalize(run_dir: Path, record):
            if record.generator.get("requests", 0) == 0:
                return record
            return analyse(run_dir, record, rules)[0]

        labels = {"sweep": self.folder.id, "trial": p.trial, "repetition": rep,
                  "params": p.params}
        try:
            outcome = run_load_test(self.cluster, self.spec.load, self.results_dir,
                                    slo=list(self.spec.slo), finalize=finalize,
                                    progress=self.ui.note, run_id=run_id, labels=labels)
        except EiperfError as e:
            row = TrialRow(p.trial, rep, TrialState.FAILED, p.params, run_id=None, error=str(e),
                           started=started, duration_s=time.time() - started)
        else:
            rec = outcome.record
            if rec.status is RunStatus.INCOMPLETE and (rec.error or "").startswith("interrupted"):
                raise _Interrupted
            if rec.status is not RunStatus.COMPLETE:
                row = TrialRow(p.trial, rep, TrialState.FAILED, p.params, run_id=run_id,
                               error=rec.error or rec.status.value, started=started,
                               duration_s=time.time() - started)
            else:
                objective = objective_value(rec.summary, self.spec.objective.metric)
                state = TrialState.COMPLETE if objective is not None else TrialState.FAILED
                row = TrialRow(
                    p.trial, rep, state, p.params, run_id=run_id, objective=objective,
                    slo_ok=all(r["ok"] for r in rec.slo_results),
                    slo_detail=slo_text(rec.slo_results),
                    error=None if objective is not None else "the objective could not be computed",
                    started=started, duration_s=time.time() - started,
                    constraints=slo_constraints(rec.slo_results))
        self._put(row)
        self.ui.trial_finished(row, best_of(aggregate(self.folder.rows),
                                            self.spec.objective.direction))

    # -- the loop

    def execute(self) -> SweepOutcome:
        folder = self.folder
        # rows an interruption left "running" run again; their run folders stay as incomplete runs
        folder.rows = [r for r in folder.rows if r.state is not TrialState.RUNNING]
        self._reload_constraints()
        strategy = make_strategy(self.spec)
        strategy.replay(self.finished())
        folder.info.update(status=SweepStatus.RUNNING.value, finished=None)
        folder.save()
        planned = strategy.planned()
        done = len(self.finished())
        self.ui.start(folder.id, planned, done)
        status = SweepStatus.FAILED
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        error: BaseException | None = None
        t0 = time.monotonic()
        try:
            self._begin_journal()
            while True:
                if self.spec.budget.time_s is not None and \
                        time.monotonic() - t0 >= self.spec.budget.time_s:
                    self.ui.note("time budget used up: no new trial")
                    break
                proposal = strategy.ask()
                if proposal is None:
                    break
                result = self.run_trial(proposal)
                objective = result.objective if result.state is TrialState.COMPLETE else None
                strategy.tell(proposal.trial, objective, result.constraints)
            status = SweepStatus.COMPLETE
        except (KeyboardInterrupt, _Interrupted):
            status = SweepStatus.INCOMPLETE
            self.ui.note("interrupted: restoring the original settings, keeping finished trials")
        except BaseException as e:
            error = e
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._restore()
            finally:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
                self.ui.stop()
                folder.info.update(status=status.value,
                                   finished=datetime.now(UTC).isoformat(timespec="seconds"))
                if error is not None:
                    folder.info["error"] = str(error)
                folder.save()
        if error is not None:
            raise error
        results = aggregate(folder.rows)
        best = best_of(results, self.spec.objective.direction)
        return SweepOutcome(folder.path, status, results, best)


def _rules(spec: SweepSpec):
    from analysis.slo import parse_rules

    return parse_rules(list(spec.slo))


def run_sweep(spec: SweepSpec | None, cluster: Cluster, results_dir: Path, *,
              resume: str | None = None, ui: SweepUI | None = None,
              on_folder: Callable[[SweepFolder], None] | None = None) -> SweepOutcome:
    """Run a new sweep (`spec`) or resume one (`resume` id; `spec`, when given, must match)."""
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file")
    results_dir = Path(results_dir)
    if resume:
        folder = SweepFolder.open(results_dir, resume)
        stored = folder.spec()
        if spec is not None and _comparable(spec) != _comparable(stored):
            raise EiperfError(f"{spec.source} differs from the spec sweep {resume} started with; "
                              f"resume without the spec file, or start a new sweep")
        if folder.info.get("status") == SweepStatus.COMPLETE.value:
            raise EiperfError(f"sweep {resume} is complete; nothing to resume")
        spec = stored
        folder.lock()
    else:
        if spec is None:
            raise EiperfError("give a sweep spec file, or --resume <id>")
        folder = SweepFolder.create(results_dir, spec, str(cluster.source))
        folder.lock()
    if on_folder is not None:
        on_folder(folder)
    try:
        return SweepRun(spec, cluster, results_dir, folder, ui or SweepUI()).execute()
    finally:
        folder.unlock()


def _comparable(spec: SweepSpec) -> dict[str, Any]:
    data = spec.as_data()
    data.pop("source", None)
    data.pop("seed", None)  # a spec without a seed gets a new one each time it is read
    return data

