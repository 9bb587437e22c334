"""The sweep engine: many load tests, one configuration each, and the best one under an SLO.

Each trial: `apply_settings` (through one change journal; nodes restart only for JVM or
pass-through changes, nginx-only changes just reload) -> the profile's warm-up and measured
run (`run_load_test`, a normal run folder) -> the objective and SLO verdict from the run's
summary -> a row in trials.parquet (`tuning.sweep_folder`; layout and states: `eicore.sweeps`;
ranking and best: `eicore.trials`). A trial whose JVM refuses its flags, or whose node does not
start, is recorded as failed with the JVM's own words; the cluster is restored and the sweep
goes on; so is a trial whose settings a file refuses (e.g. a worker pool core above the
file's max). The originals come back at the end, on Ctrl-C / SIGTERM and on error; after a SIGKILL
the journal stays open and the next eiperf command (or `eiperf tune restore`) restores it.

`--resume <id>` reruns nothing finished: trials in state complete, partial or failed are kept
and replayed into a fresh strategy (grid: their configurations are skipped; optuna: told to a
new study before the first ask); rows left "running" by an interruption are dropped and run
again.

A sweep shared by several workers through an Optuna storage (`--storage`, `--join`) runs the
same trials through `tuning.sweep_shared.SharedSweepRun`, which replaces the bookkeeping hooks
(`_prepare`, `_put`, `_result`, `_release`, `_close`) and keeps everything else.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.record import record_figures
from analysis.slo import SloRule, parse_rules
from eicore.cluster import Cluster
from eicore.errors import EiperfError
from eicore.results import RunRecord, RunStatus, SloVerdict, new_run_id, read_run_record
from eicore.sweeps import SweepStatus, TrialRow, TrialState, objective_value
from eicore.trials import TrialResult, aggregate, best_of
from loadtests.run import run_load_test
from tuning.apply import apply_settings
from tuning.changes import ApplyError
from tuning.edit import EditorError
from tuning.journal import Journal
from tuning.params import ParameterError, ParamSet
from tuning.restore import restore_cluster
from tuning.settings import cluster_settings
from tuning.strategies import Finished, Proposal, SweepStrategy, make_strategy, slo_constraints
from tuning.sweep_folder import SweepFolder
from tuning.sweep_spec import SweepSpec


def slo_text(slo_results: list[SloVerdict]) -> str:
    """`p95<200ms: 12.3 met; errors<0.1%: 0 met` -- the verdict of each rule, one line."""
    parts = []
    for r in slo_results:
        actual = r.get("actual")
        shown = "n/a" if actual is None else f"{actual:.4g}"
        parts.append(f"{r['rule']}: {shown} {r.get('verdict', 'met' if r.get('ok') else 'BROKEN')}")
    return "; ".join(parts)


class SweepUI:
    """What the engine tells its caller; the CLI draws a progress bar, tests pass this no-op."""

    def start(self, sweep_id: str, total: int | None, done: int) -> None: ...

    def trial_started(self, proposal: Proposal, repetition: int) -> None: ...

    def trial_finished(self, row: TrialRow, best: TrialResult | None) -> None: ...

    def note(self, message: str) -> None: ...

    def total_done(self, done: int) -> None:
        """Trials finished in the whole sweep (a shared study: every worker's)."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SweepOutcome:
    """How a sweep execution ended: its folder, status, trials (folded) and best trial."""

    path: Path
    status: SweepStatus
    results: list[TrialResult]
    best: TrialResult | None


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _hold_during_restore(signum, frame) -> None:
    """SIGINT/SIGTERM while the original settings come back: the restore finishes first.

    A handler, not SIG_IGN: an ignored signal stays ignored across exec, so node JVMs the
    restore restarts would ignore SIGTERM for life and `integrator.sh stop` would hang until
    SIGKILL. A caught signal goes back to its default in every child."""


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
        self._noted: set[str] = set()
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self._t0 = time.monotonic()

    # -- journal

    def _begin_journal(self) -> None:
        self.journal = Journal.begin(self.results_dir, Path(self.cluster.source),
                                     f"sweep {self.folder.id}")

    def _restore(self) -> None:
        if self.journal is None:
            return
        journal, self.journal = self.journal, None
        if journal.changed_files():
            self.ui.note("restoring the original settings ...")
        restore_cluster(self.cluster, journal, progress=self.ui.note)
        journal.close()

    def _note_once(self, message: str) -> None:
        """Progress of an apply; a note (a block left alone, a JDK warning) is said once."""
        if message.startswith("note: "):
            if message in self._noted:
                return
            self._noted.add(message)
        self.ui.note(message)

    # -- bookkeeping

    def _put(self, row: TrialRow) -> None:
        """Record a row (a repetition's state) where the sweep keeps its trials."""
        rows = [r for r in self.folder.rows
                if (r.trial, r.repetition) != (row.trial, row.repetition)]
        self.folder.rows = [*rows, row]
        best = best_of(aggregate(self.folder.rows), self.spec.objective.direction)
        self.folder.info["best"] = None if best is None else {
            "trial": best.trial, "params": best.params, "objective": best.objective,
            "run_ids": best.run_ids}
        self.folder.save()

    def _best(self) -> TrialResult | None:
        return best_of(aggregate(self.folder.rows), self.spec.objective.direction)

    def _result(self, trial: int) -> TrialResult:
        """The trial as it stands after this process's last row for it."""
        return next(t for t in aggregate(self.folder.rows) if t.trial == trial)

    def finished(self) -> list[Finished]:
        return [Finished(t.trial, t.params, t.objective, t.constraints)
                for t in aggregate(self.folder.rows)
                if t.state is not TrialState.RUNNING]

    def _reload_constraints(self) -> None:
        """SLO constraint values of resumed rows, from their runs' run.json (not in parquet)."""
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
        started = time.time()
        try:
            params = ParamSet(p.params)
        except ParameterError as e:
            return self._fail(p, started, str(e))
        self.ui.trial_started(p, 0)
        try:
            apply_settings(self.cluster, params, self.journal, progress=self._note_once)
        except (ApplyError, EditorError) as e:  # the JVM, nginx or the files refuse this trial
            self.ui.note(f"trial {p.trial} failed: {e}")
            self._restore()
            self._begin_journal()
            return self._fail(p, started, getattr(e, "jvm_message", None) or str(e))
        for rep in range(self.spec.repetitions):
            if rep:
                self.ui.trial_started(p, rep)
            self._run_once(p, rep, started if rep == 0 else time.time())
        return self._result(p.trial)

    def _fail(self, p: Proposal, started: float, error: str) -> TrialResult:
        row = TrialRow(p.trial, 0, TrialState.FAILED, p.params, error=error, started=started,
                       duration_s=time.time() - started, worker=self.worker)
        self._put(row)
        self.ui.trial_finished(row, self._best())
        return self._result(p.trial)

    def _run_once(self, p: Proposal, rep: int, started: float) -> None:
        rules = _rules(self.spec)
        run_id = new_run_id()
        self._put(TrialRow(p.trial, rep, TrialState.RUNNING, p.params, run_id=run_id,
                           started=started, worker=self.worker))

        def finalize(run_dir: Path, record: RunRecord) -> RunRecord:
            if record.generator.get("requests", 0) == 0:
                return record
            return record_figures(run_dir, record, rules)[0]

        labels = {"sweep": self.folder.id, "trial": p.trial, "repetition": rep,
                  "params": p.params}
        try:
            outcome = run_load_test(self.cluster, self.spec.load, self.results_dir,
                                    slo=list(self.spec.slo), finalize=finalize,
                                    settings=cluster_settings, progress=self.ui.note, run_id=run_id, labels=labels)
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
                    constraints=slo_constraints(rec.slo_results),
                    steady=(rec.summary.get("steady_state") or {}).get("verdict"))
        self._put(replace(row, worker=self.worker))
        self.ui.trial_finished(row, self._best())

    # -- the loop

    def _prepare(self) -> SweepStrategy:
        """The strategy, told what already finished; the folder marked running."""
        folder = self.folder
        # rows an interruption left "running" run again; their run folders stay as incomplete runs
        folder.rows = [r for r in folder.rows if r.state is not TrialState.RUNNING]
        self._reload_constraints()
        strategy = make_strategy(self.spec)
        strategy.replay(self.finished())
        folder.info.update(status=SweepStatus.RUNNING.value, finished=None)
        folder.save()
        return strategy

    def _done(self) -> int:
        return len(self.finished())

    def _time_left(self) -> bool:
        """Whether the spec's time budget (counted from this execution's start) allows more."""
        return self.spec.budget.time_s is None or \
            time.monotonic() - self._t0 < self.spec.budget.time_s

    def _release(self, strategy: SweepStrategy, status: SweepStatus) -> None:
        """Before the originals come back: give back what the strategy holds (nothing here)."""

    def _close(self, status: SweepStatus, error: BaseException | None) -> None:
        """The folder's final word: status, finish time, the error if any."""
        self.folder.info.update(status=status.value,
                                finished=datetime.now(UTC).isoformat(timespec="seconds"))
        if error is not None:
            self.folder.info["error"] = str(error)
        self.folder.save()

    def execute(self) -> SweepOutcome:
        folder = self.folder
        self._t0 = time.monotonic()
        strategy = self._prepare()
        self.ui.start(folder.id, strategy.planned(), self._done())
        status = SweepStatus.FAILED
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        error: BaseException | None = None
        try:
            self._begin_journal()
            while True:
                if not self._time_left():
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
            signal.signal(signal.SIGTERM, _hold_during_restore)
            old_int = signal.signal(signal.SIGINT, _hold_during_restore)
            try:
                try:
                    self._release(strategy, status)
                finally:
                    self._restore()
            finally:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
                self.ui.stop()
                self._close(status, error)
        if error is not None:
            raise error
        results = aggregate(folder.rows)
        best = best_of(results, self.spec.objective.direction)
        return SweepOutcome(folder.path, status, results, best)


def _rules(spec: SweepSpec) -> list[SloRule]:
    return parse_rules(list(spec.slo))


def resumable(results_dir: Path, sweep_id: str, spec: SweepSpec | None = None
              ) -> tuple[SweepFolder, SweepSpec]:
    """The folder and stored spec of a sweep that `--resume` can continue; EiperfError (one
    line, nothing touched) when there is no such sweep, it is complete, another eiperf runs
    it, or `spec` is not the one it started with. Cheap: callers check before starting anything."""
    folder = SweepFolder.open(Path(results_dir), sweep_id)
    if folder.storage:  # its trials are in the storage: only a worker of the study may run it
        raise EiperfError(f"sweep {sweep_id} is shared through {folder.storage}; continue it "
                          f"with 'eiperf sweep --join {sweep_id}'")
    stored = folder.spec()
    if spec is not None and _comparable(spec) != _comparable(stored):
        raise EiperfError(f"{spec.source} differs from the spec sweep {sweep_id} started with; "
                          f"resume without the spec file, or start a new sweep")
    if folder.info.get("status") == SweepStatus.COMPLETE.value:
        raise EiperfError(f"sweep {sweep_id} is complete; nothing to resume")
    folder.check_free()
    return folder, stored


def run_sweep(spec: SweepSpec | None, cluster: Cluster, results_dir: Path, *,
              resume: str | None = None, ui: SweepUI | None = None) -> SweepOutcome:
    """Run a new sweep (`spec`) or resume one (`resume` id; `spec`, when given, must match)."""
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file")
    results_dir = Path(results_dir)
    if resume:
        folder, spec = resumable(results_dir, resume, spec)
        folder.lock()
    else:
        if spec is None:
            raise EiperfError("give a sweep spec file, or --resume <id>")
        folder = SweepFolder.create(results_dir, spec, str(cluster.source))
        folder.lock()
    try:
        return SweepRun(spec, cluster, results_dir, folder, ui or SweepUI()).execute()
    finally:
        folder.unlock()


def _comparable(spec: SweepSpec) -> dict[str, Any]:
    data = spec.as_data()
    data.pop("source", None)
    data.pop("seed", None)  # a spec without a seed gets a new one each time it is read
    return data

