"""A sweep run by several workers, each on its own cluster, sharing one Optuna study.

`run_shared_sweep` creates the study (`tuning.sweep_study`) and the first worker's folder;
`join_sweep` adds a worker (`eiperf sweep --join ID`), on this machine or another one that
reaches the same storage; `sync_sweep` rewrites a folder from the storage without running
anything. A worker is a normal sweep execution (`SweepRun`: journal, apply, load, restore)
whose bookkeeping goes to the storage:

* its claimed trial's rows go to the trial's user attrs; after each, the worker rewrites its
  sweep folder from the storage (every worker's rows) under the folder's write lock;
* it stops when nothing is left (it waits while other workers' trials run: one may die and be
  queued again), on Ctrl-C / SIGTERM (its trial is queued again for the others) or at its own
  time budget; the last worker to leave a folder writes its final status;
* killed (SIGKILL), it leaves its change journal open (the next eiperf command on its results
  folder, or `eiperf tune restore`, restores its cluster), its run folder incomplete, its
  worker lock file unlocked, and its trial running in the storage until another worker finds
  the heartbeat stale and queues it again (or records it failed after RETRIES).

Workers on several machines each have their own results folder: runs (run folders, journals)
stay where they ran, and every folder's trials.parquet holds the whole study's rows as of its
last rewrite; `eiperf sweep --sync ID` brings a folder up to date, and `eiperf report` of it
then ranks the whole study.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from eicore.cluster import Cluster
from eicore.errors import EiperfError
from eicore.fsutil import lock_held
from eicore.sweeps import (
    SWEEP_JSON,
    WORKERS_DIR,
    SweepStatus,
    TrialRow,
    TrialState,
    read_sweep_info,
    sweep_running,
    sweeps_root,
)
from eicore.trials import TrialResult, aggregate, best_of
from tuning.strategies import SweepStrategy
from tuning.sweep import SweepOutcome, SweepRun, SweepUI, _comparable
from tuning.sweep_folder import SweepFolder
from tuning.sweep_spec import SweepSpec
from tuning.sweep_study import (
    DEFAULT_GRACE_S,
    MIN_GRACE_S,
    WORKER_ATTR,
    StudyStrategy,
    SweepStudy,
    WorkerInfo,
    storage_url,
    this_worker,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SharedSweepRun(SweepRun):
    """One worker's execution of a shared sweep on its cluster."""

    def __init__(self, spec: SweepSpec, cluster: Cluster, results_dir: Path,
                 folder: SweepFolder, ui: SweepUI, study: SweepStudy, me: WorkerInfo) -> None:
        super().__init__(spec, cluster, results_dir, folder, ui)
        self.study = study
        self.me = me
        self.worker = me.id
        self.strategy: StudyStrategy | None = None
        self._attempt: dict[tuple[int, int], TrialRow] = {}
        self._waiting_for = 0

    # -- bookkeeping: the storage is the truth, the folder its copy

    def _fields(self, rows: list[TrialRow]) -> dict:
        best = best_of(aggregate(rows), self.spec.objective.direction)
        workers = self.study.workers()
        here = {w for w, info in workers.items()
                if info.get("host") == self.me.host and info.get("results") == self.me.results}
        elsewhere = sum(1 for t in self.study.running()
                        if t.user_attrs.get(WORKER_ATTR) not in here)
        return {"best": None if best is None else {
                    "trial": best.trial, "params": best.params, "objective": best.objective,
                    "run_ids": best.run_ids},
                "workers": workers, "synced": _now(), "running_elsewhere": elsewhere,
                "storage": self.study.public_url}

    def _sync(self, **fields) -> None:
        with self.folder.writing():
            rows = self.study.rows()
            self.folder.sync(rows, {**self._fields(rows), **fields})
        self.ui.total_done(self._done())

    def _prepare(self) -> SweepStrategy:
        self.study.register(self.me)
        self.strategy = StudyStrategy(self.spec, self.study, self.me.id, wait=self._wait)
        self._sync(status=SweepStatus.RUNNING.value, finished=None, error=None)
        self.ui.note(f"shared study {self.folder.id} in {self.study.public_url}; add a worker "
                     f"with: eiperf sweep --join {self.folder.id} --storage "
                     f"{self.study.public_url} --cluster OTHER.toml")
        return self.strategy

    def _done(self) -> int:
        return sum(1 for t in aggregate(self.folder.rows) if t.state is not TrialState.RUNNING)

    def run_trial(self, p) -> TrialResult:
        self._attempt = {}
        self._waiting_for = 0
        return super().run_trial(p)

    def _put(self, row: TrialRow) -> None:
        row = replace(row, worker=self.me.id)
        self._attempt[(row.trial, row.repetition)] = row
        assert self.strategy is not None
        if not self.strategy.record(row.trial, list(self._attempt.values())):
            self._note_once(f"note: trial {row.trial} was taken from this worker (no heartbeat "
                            f"for {self.study.grace_s}s) and runs elsewhere; its result here "
                            "is dropped")
        self._sync()

    def _result(self, trial: int) -> TrialResult:
        return aggregate([r for r in self._attempt.values() if r.trial == trial])[0]

    def _wait(self, running: int) -> bool:
        """Nothing to claim, `running` trials run elsewhere: wait for them (one may die and
        come back) unless the time budget is used up."""
        if not self._time_left():
            return False
        if running != self._waiting_for:
            self._waiting_for = running
            self.ui.note(f"waiting: {running} trial(s) running on other workers")
        self._sync()
        return True

    def _release(self, strategy: SweepStrategy, status: SweepStatus) -> None:
        if self.strategy is None:
            return
        reason = "was interrupted" if status is SweepStatus.INCOMPLETE else "stopped on an error"
        try:
            self.strategy.release(reason)
        except Exception as e:  # the storage is away: the trial goes stale, another retries it
            self.ui.note(f"could not give the trial back to the storage ({e}); after "
                         f"{self.study.grace_s}s another worker runs it again")

    def _close(self, status: SweepStatus, error: BaseException | None) -> None:
        final = {"status": status.value, "finished": _now()}
        if error is not None:
            final["error"] = str(error)
        with self.folder.writing():
            try:
                rows = self.study.rows()
                fields = self._fields(rows)
            except Exception:  # the storage is away: the folder keeps the rows it last had
                rows, fields = self.folder.rows, {}
            self.folder.leave(rows, fields, final)


# ---- starting, joining, syncing -----------------------------------------------------------------


def check_grace(grace_s: int) -> int:
    if grace_s < MIN_GRACE_S:
        raise EiperfError(f"--grace {grace_s}: give at least {MIN_GRACE_S} seconds")
    return int(grace_s)


def run_shared_sweep(spec: SweepSpec, cluster: Cluster, results_dir: Path, storage: str, *,
                     grace_s: int = DEFAULT_GRACE_S, ui: SweepUI | None = None) -> SweepOutcome:
    """Create a shared study for `spec` in `storage` and run it here as its first worker."""
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file")
    url = storage_url(storage)
    grace_s = check_grace(grace_s)
    folder = SweepFolder.create(Path(results_dir), spec, str(cluster.source), storage="")
    try:
        study = SweepStudy.create(url, folder.id, spec, grace_s)
    except BaseException:
        _drop(folder)
        raise
    folder.info.update(storage=study.public_url, created=study.created)
    return _run_worker(study, folder, cluster, Path(results_dir), ui)


def _drop(folder: SweepFolder) -> None:
    """A folder whose study could not be created: nothing may be left."""
    for p in sorted(folder.path.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    folder.path.rmdir()


def _open_study(results_dir: Path, sweep_id: str, storage: str | None,
                unshared: str) -> SweepStudy:
    """The study of `sweep_id` in `storage`, else in the storage this results folder's copy of
    the sweep names; EiperfError (one line) when there is none (`unshared` ends that line for a
    sweep that is not shared)."""
    if storage is None:
        folder_json = sweeps_root(results_dir) / sweep_id / SWEEP_JSON
        if not folder_json.exists():
            raise EiperfError(f"no sweep {sweep_id!r} under {sweeps_root(results_dir)}: "
                              "give --storage URL, the storage the sweep shares")
        storage = read_sweep_info(folder_json.parent).get("storage")
        if not storage:
            raise EiperfError(f"sweep {sweep_id} is not shared through a storage{unshared}")
    return SweepStudy.open(storage_url(storage), sweep_id)


def prepare_join(results_dir: Path, sweep_id: str, storage: str | None = None,
                 spec: SweepSpec | None = None) -> SweepStudy:
    """The study a worker joins: from `storage`, else the storage this results folder's copy of
    the sweep names. EiperfError (one line, nothing touched) when there is no such sweep, it is
    complete, or `spec` is not the one it started with. Cheap: callers check before starting
    anything."""
    study = _open_study(Path(results_dir), sweep_id, storage,
                        f"; continue it with 'eiperf sweep --resume {sweep_id}'")
    if spec is not None and _comparable(spec) != _comparable(study.spec):
        raise EiperfError(f"{spec.source} differs from the spec sweep {sweep_id} started with; "
                          "join without the spec file")
    if study.complete():
        raise EiperfError(f"sweep {sweep_id} is complete; nothing to join")
    return study


def _check_cluster_free(study: SweepStudy, me: WorkerInfo) -> None:
    """Refuse a second worker on a cluster a live worker of this sweep (on this host) uses."""
    for wid, info in study.workers().items():
        if info.get("host") != me.host or info.get("cluster") != me.cluster:
            continue
        lock = sweeps_root(Path(info.get("results", ""))) / study.id / WORKERS_DIR / f"{wid}.lock"
        if lock_held(lock):
            raise EiperfError(f"worker {wid} already runs sweep {study.id} on {me.cluster}; give "
                              "each worker its own cluster (--cluster OTHER.toml)")


def _local_folder(study: SweepStudy, results_dir: Path, cluster: Cluster) -> SweepFolder:
    """This results folder's copy of the sweep: the one there, or a new one."""
    path = sweeps_root(results_dir) / study.id
    if (path / SWEEP_JSON).exists():
        folder = SweepFolder.open(results_dir, study.id)
        if folder.storage and folder.storage != study.public_url:
            raise EiperfError(f"{path} belongs to the sweep in {folder.storage}, not to "
                              f"{study.public_url}; use another --results")
        return folder
    return SweepFolder.create(results_dir, study.spec, str(cluster.source), sweep_id=study.id,
                              storage=study.public_url, created=study.created)


def join_sweep(study: SweepStudy, cluster: Cluster, results_dir: Path, *,
               ui: SweepUI | None = None) -> SweepOutcome:
    """Run `study` (from `prepare_join`) here as one more worker, on `cluster`."""
    if not cluster.source or not Path(cluster.source).exists():
        raise EiperfError("the cluster must come from a cluster.toml file")
    results_dir = Path(results_dir)
    _check_cluster_free(study, this_worker(cluster.source, results_dir))
    folder = _local_folder(study, results_dir, cluster)
    return _run_worker(study, folder, cluster, results_dir, ui)


def _run_worker(study: SweepStudy, folder: SweepFolder, cluster: Cluster, results_dir: Path,
                ui: SweepUI | None) -> SweepOutcome:
    me = this_worker(cluster.source or "", results_dir)
    folder.lock_worker(me.id)
    try:
        run = SharedSweepRun(study.spec, cluster, results_dir, folder, ui or SweepUI(), study, me)
        return run.execute()
    finally:
        folder.unlock()


def sync_sweep(results_dir: Path, sweep_id: str, storage: str | None = None) -> Path:
    """Rewrite this results folder's copy of a shared sweep from the storage (created when
    missing); nothing runs. The folder says running while trials run on any worker."""
    results_dir = Path(results_dir)
    folder_json = sweeps_root(results_dir) / sweep_id / SWEEP_JSON
    study = _open_study(results_dir, sweep_id, storage, ": its folder is all there is")
    if folder_json.exists():
        folder = SweepFolder.open(results_dir, sweep_id)
    else:
        folder = SweepFolder.create(results_dir, study.spec, "", sweep_id=sweep_id,
                                    storage=study.public_url, created=study.created)
    with folder.writing():
        rows = study.rows()
        best = best_of(aggregate(rows), study.spec.objective.direction)
        running = len(study.running())
        fields = {"best": None if best is None else {
                      "trial": best.trial, "params": best.params, "objective": best.objective,
                      "run_ids": best.run_ids},
                  "workers": study.workers(), "synced": _now(), "storage": study.public_url,
                  "running_elsewhere": running}
        if not sweep_running(folder.path):  # no worker here: the study's own state
            if study.complete():
                fields.update(status=SweepStatus.COMPLETE.value)
            elif running:
                fields.update(status=SweepStatus.RUNNING.value)
            else:
                fields.update(status=SweepStatus.INCOMPLETE.value)
        folder.sync(rows, fields)
    return folder.path
