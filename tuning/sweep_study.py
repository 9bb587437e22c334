"""A sweep shared through an Optuna storage: one study, several workers, each on its own cluster.

`eiperf sweep SPEC --storage URL` creates the study (named after the sweep id) in an Optuna RDB
storage -- a plain path is a SQLite file, any SQLAlchemy URL works (postgresql://...) -- and
`eiperf sweep --join ID` adds workers. The storage is the truth; each worker's sweep folder is
rewritten from it (`rows`). What eiperf keeps in the study (layout STUDY_LAYOUT):

* study user attrs: `eiperf.spec` (the spec as plain data, seed fixed; written last, so a study
  without it is still being set up), `eiperf.layout`, `eiperf.grace_s`, `eiperf.created`, and
  `eiperf.workers.<id>` (host, pid, cluster file, results folder, started) for each worker.
* one Optuna trial per attempt at a configuration, with user attrs `eiperf_trial` (the eiperf
  trial number: a grid point's place in the seeded order, else the first attempt's Optuna
  number; a retry keeps it), `eiperf.rows` (its repetitions as trials.parquet records),
  `eiperf.worker`, `constraints`; its state, value and SLO constraints as Optuna keeps them.

Claims. A worker runs only a trial it moved from WAITING to RUNNING in the storage. The grid's
points are enqueued (`enqueue_trial`, in the seeded order, capped by the budget) when the study
is created; a TPE trial is asked for (`Study.ask`) while the trial budget lasts; a retry is an
enqueued copy. The move is Optuna's own compare-and-set (`set_trial_state_values` refuses a
trial no longer WAITING), under a row lock (SELECT ... FOR UPDATE) on PostgreSQL and MySQL.
SQLite ignores FOR UPDATE, and pysqlite begins a transaction only at the first write, so two
workers can both read WAITING and both claim one trial (measured: 300 queued trials, two
racing workers, a trial run twice). `open_storage` makes every SQLite transaction BEGIN
IMMEDIATE (SQLAlchemy's recipe for pysqlite): read and write of a claim are one serialized
transaction (the same race: each of the 300 claimed once). Two workers asking TPE for the last
trial of the budget: the later trial is marked surplus and failed at once, never run.

Dead workers. A worker records a heartbeat (Optuna's, in the storage's clock) every grace/4 s
while it holds a trial, the first one before it claims. Before each claim, and while it waits,
a worker fails the trials whose heartbeat is older than the grace period
(`optuna.storages.fail_stale_trials`) and each is enqueued again under its trial number
(`RetryHeartbeatStaleTrialCallback`, at most RETRIES times; then it stays failed). A worker
interrupted mid-trial (Ctrl-C, SIGTERM, an error) fails its trial and enqueues it again itself.
A worker stops only when nothing waits and nothing runs anywhere in the study (or its own time
budget is used up), so the last worker runs the retries. A worker stopped longer than the
grace period (SIGSTOP, a suspended VM) loses its trial: another runs it, and its own result is
dropped when it comes back.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eicore.errors import ConfigError, EiperfError
from eicore.sweeps import TrialRow, TrialState, row_from_record, row_record
from tuning.strategies import (
    CONSTRAINTS_ATTR,
    TRIAL_ATTR,
    GridStrategy,
    Proposal,
    SweepStrategy,
    named_constraints,
    optuna_module,
    suggest_params,
    tpe_sampler,
)
from tuning.sweep_spec import SweepSpec, parse_spec_data

#: version of what eiperf keeps in a study (the attrs named below)
STUDY_LAYOUT = 1
ATTR_LAYOUT = "eiperf.layout"
ATTR_SPEC = "eiperf.spec"
ATTR_GRACE = "eiperf.grace_s"
ATTR_CREATED = "eiperf.created"
ATTR_WORKERS = "eiperf.workers."
ROWS_ATTR = "eiperf.rows"
WORKER_ATTR = "eiperf.worker"
SURPLUS_ATTR = "eiperf.surplus"
REQUEUED_ATTR = "eiperf.requeued"
#: how often a trial whose worker died is run again before it is recorded failed
RETRIES = 2
DEFAULT_GRACE_S = 60
MIN_GRACE_S = 2
#: how long SQLite waits for another worker's transaction before giving up
SQLITE_TIMEOUT_S = 60
#: how long a joining worker waits for a study still being set up
READY_WAIT_S = 15.0


# ---- the storage --------------------------------------------------------------------------------


def storage_url(text: str) -> str:
    """The SQLAlchemy URL a `--storage` value names: a URL as it is, a plain path a SQLite file.
    ConfigError (one line) for an empty value, a folder, a missing folder or a bad URL."""
    text = (text or "").strip()
    if not text:
        raise ConfigError("--storage: give a file (a SQLite storage) or a URL such as "
                          "postgresql://user@host/eiperf")
    if "://" not in text:
        path = Path(text).expanduser().absolute()
        if path.is_dir():
            raise ConfigError(f"--storage {text}: is a folder; give a file in it, e.g. "
                              f"{path / 'sweeps.db'}")
        if not path.parent.is_dir():
            raise ConfigError(f"--storage {text}: folder {path.parent} does not exist")
        return f"sqlite:///{path}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(f"--storage: {text.split('://')[0]}://...: not a database URL; give "
                          "e.g. postgresql://user@host/eiperf or a file path") from None
    return text


def public_url(url: str) -> str:
    """`url` without its password: what sweep.json, the study and messages show."""
    from sqlalchemy.engine import URL, make_url

    try:
        parsed = make_url(url)
    except Exception:  # never show what could not be parsed
        return url.split("://")[0] + "://..."
    if parsed.password is not None:  # (URL.set(password=None) keeps it)
        parsed = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port,
                            parsed.database, parsed.query)
    return parsed.render_as_string(hide_password=False)


def _begin_immediate(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(url: str, existing: bool = False):
    """An Optuna RDBStorage for `url`; SQLite transactions serialized (BEGIN IMMEDIATE) so
    claims are atomic there too. EiperfError (one line, no password) when it cannot be opened,
    or (`existing`) when it is a SQLite file that is not there: nothing is created then."""
    optuna = optuna_module()
    sqlite = url.startswith("sqlite")
    if sqlite and existing:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).is_file():
            raise EiperfError(f"no storage {database}: give the file the sweep was started "
                              "with (--storage)")
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S, "isolation_level": None}} \
        if sqlite else {}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError:
        raise EiperfError(f"storage {public_url(url)}: its database driver is not installed "
                          "(PostgreSQL: .venv/bin/pip install psycopg2-binary; MySQL: pymysql)"
                          ) from None
    except Exception as e:  # SQLAlchemy/driver errors: one line
        reason = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise EiperfError(f"storage {public_url(url)}: cannot open it ({reason})") from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "begin", _begin_immediate)
    return storage


@contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's notes that its heartbeat API is experimental and meant for `optimize`."""
    optuna = optuna_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


# ---- a worker -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """One eiperf process running a shared sweep: who, on which cluster, writing where."""

    id: str
    host: str
    pid: int
    cluster: str
    results: str
    started: str

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


def this_worker(cluster_file: str | Path, results_dir: Path) -> WorkerInfo:
    """This process as a worker: id `<host>-<pid>`."""
    host = socket.gethostname()
    return WorkerInfo(f"{host}-{os.getpid()}", host, os.getpid(), str(Path(cluster_file).resolve()),
                      str(Path(results_dir).resolve()),
                      datetime.now(UTC).isoformat(timespec="seconds"))


class _Heartbeat:
    """Records a trial's heartbeat every `interval` s in a thread, until stopped."""

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # the storage is away: try again next beat
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Claim:
    """A trial this worker moved to RUNNING: its eiperf number, configuration, Optuna trial."""

    number: int
    params: dict[str, str]
    trial: Any
    heartbeat: _Heartbeat


# ---- the study ----------------------------------------------------------------------------------


class SweepStudy:
    """One sweep's study in a shared storage: claims, heartbeats, outcomes and the rows view."""

    def __init__(self, url: str, storage, study, spec: SweepSpec, grace_s: int,
                 created: str = "") -> None:
        self.url = url
        self.storage = storage
        self.study = study
        self.spec = spec
        self.grace_s = grace_s
        self.created = created
        self._optuna = optuna_module()
        self._study_id = storage.get_study_id_from_name(study.study_name)
        storage.heartbeat_interval = max(1, grace_s // 4)
        storage.grace_period = grace_s
        with _quiet():
            retry = self._optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
        storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = retry

    @property
    def id(self) -> str:
        return self.study.study_name

    @property
    def public_url(self) -> str:
        return public_url(self.url)

    @property
    def grid(self) -> bool:
        return self.spec.strategy == "grid"

    # -- creating and opening

    @classmethod
    def create(cls, url: str, sweep_id: str, spec: SweepSpec,
               grace_s: int = DEFAULT_GRACE_S) -> SweepStudy:
        """A new study for sweep `sweep_id`: the grid's points queued, the spec written last."""
        optuna = optuna_module()
        storage = open_storage(url)
        study = optuna.create_study(storage=storage, study_name=sweep_id,
                                    direction=spec.objective.direction)
        if spec.strategy == "grid":
            for number, config in enumerate(GridStrategy(spec).order):
                study.enqueue_trial(config, user_attrs={TRIAL_ATTR: number})
        created = datetime.now(UTC).isoformat(timespec="seconds")
        study.set_user_attr(ATTR_LAYOUT, STUDY_LAYOUT)
        study.set_user_attr(ATTR_GRACE, int(grace_s))
        study.set_user_attr(ATTR_CREATED, created)
        study.set_user_attr(ATTR_SPEC, spec.as_data())
        return cls(url, storage, study, spec, int(grace_s), created)

    @classmethod
    def open(cls, url: str, sweep_id: str) -> SweepStudy:
        """The study of sweep `sweep_id`; EiperfError (one line) when the storage has none."""
        optuna = optuna_module()
        storage = open_storage(url, existing=True)
        try:
            study = optuna.load_study(study_name=sweep_id, storage=storage)
        except KeyError:
            raise EiperfError(f"no sweep {sweep_id!r} in the storage {public_url(url)}; give "
                              "the id 'eiperf sweep --storage' printed") from None
        deadline = time.monotonic() + READY_WAIT_S
        attrs = study.user_attrs
        while ATTR_SPEC not in attrs:
            if ATTR_LAYOUT not in attrs and time.monotonic() >= deadline:
                raise EiperfError(f"study {sweep_id!r} in {public_url(url)} is not an eiperf "
                                  "sweep (no eiperf.spec)")
            if time.monotonic() >= deadline:
                raise EiperfError(f"sweep {sweep_id} in {public_url(url)} is still being set up;"
                                  " try again in a moment")
            time.sleep(0.2)
            attrs = study.user_attrs
        if attrs.get(ATTR_LAYOUT) != STUDY_LAYOUT:
            raise EiperfError(f"sweep {sweep_id} in {public_url(url)} was written with study "
                              f"layout {attrs.get(ATTR_LAYOUT)!r}; this eiperf reads "
                              f"{STUDY_LAYOUT}: use the eiperf that created it")
        data = attrs[ATTR_SPEC]
        spec = parse_spec_data(data, data.get("source") or sweep_id)
        return cls(url, storage, study, spec, int(attrs[ATTR_GRACE]),
                   str(attrs.get(ATTR_CREATED, "")))

    def use_sampler(self, worker: str) -> None:
        """This worker's sampler: TPE (constant liar) seeded from the spec's seed and the worker,
        so two workers never draw the same start-up configurations; the grid samples nothing."""
        if self.grid:
            self.study.sampler = self._optuna.samplers.RandomSampler(seed=self.spec.seed)
            return
        seed = random.Random(f"{self.spec.seed}:{worker}").randrange(1 << 31)
        self.study.sampler = tpe_sampler(self.spec, seed, constant_liar=True)

    # -- workers

    def register(self, worker: WorkerInfo) -> None:
        self.study.set_user_attr(ATTR_WORKERS + worker.id, worker.as_data())

    def workers(self) -> dict[str, dict[str, Any]]:
        """Every worker that ever joined: id -> host, pid, cluster, results, started."""
        return {k[len(ATTR_WORKERS):]: v for k, v in sorted(self.study.user_attrs.items())
                if k.startswith(ATTR_WORKERS)}

    # -- claims

    def _trials(self, states=None) -> list[Any]:
        return [t for t in self.study.get_trials(deepcopy=False, states=states)
                if not t.user_attrs.get(SURPLUS_ATTR)]

    def fail_stale(self) -> None:
        """Fail the trials whose worker stopped beating; each is queued again (RETRIES)."""
        with _quiet():
            self._optuna.storages.fail_stale_trials(self.study)

    def claim(self, worker: str) -> Claim | None:
        """The next trial for `worker`, moved to RUNNING in the storage (no other worker gets
        it), heartbeat running; None when nothing can be claimed now."""
        TrialState_ = self._optuna.trial.TrialState
        self.fail_stale()
        for frozen in self._trials((TrialState_.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self._study_id, frozen.number)
            # A heartbeat before the claim: a worker killed right after claiming leaves a trial
            # that goes stale (and is retried), never one that looks alive for ever.
            self.storage.record_heartbeat(trial_id)
            try:
                if not self.storage.set_trial_state_values(trial_id, TrialState_.RUNNING):
                    continue
            except self._optuna.exceptions.UpdateFinishedTrialError:
                continue
            return self._start(self._optuna.Trial(self.study, trial_id), worker)
        if self.grid or self.budget_used():
            return None
        with _quiet():
            trial = self.study.ask()  # a retry queued meanwhile, else a new TPE trial
        self.storage.record_heartbeat(_trial_id(trial))
        if self._surplus(trial):
            return None
        return self._start(trial, worker)

    def _start(self, trial, worker: str) -> Claim:
        number = trial.user_attrs.get(TRIAL_ATTR)
        if number is None:
            number = trial.number
            trial.set_user_attr(TRIAL_ATTR, number)
        trial.set_user_attr(WORKER_ATTR, worker)
        trial.set_user_attr(ROWS_ATTR, [])
        beat = _Heartbeat(self.storage, _trial_id(trial), self.storage.heartbeat_interval)
        try:
            params = suggest_params(trial, self.spec, grid=self.grid)
        except BaseException:
            beat.stop()
            raise
        return Claim(int(number), params, trial, beat)

    def budget_used(self) -> bool:
        """Whether the trial budget is used up by the trials the study holds (any worker's)."""
        budget = self.spec.budget.trials
        return budget is not None and len({_number(t) for t in self._trials()}) >= budget

    def _surplus(self, trial) -> bool:
        """A new TPE trial past the budget (another worker took the last one): failed at once."""
        budget = self.spec.budget.trials
        if budget is None:
            return False
        mine = trial.user_attrs.get(TRIAL_ATTR, trial.number)
        earlier = {_number(t) for t in self._trials() if t.number < trial.number}
        if mine in earlier or len(earlier) < budget:
            return False
        trial.set_user_attr(SURPLUS_ATTR, True)
        self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        return True

    # -- outcomes

    def record(self, claim: Claim, rows: list[TrialRow]) -> bool:
        """Keep the claim's rows (its repetitions so far) in the storage; False when the trial
        is no longer this worker's (it was failed as stale and runs elsewhere)."""
        try:
            claim.trial.set_user_attr(ROWS_ATTR, [row_record(r, self.spec.names) for r in rows])
        except self._optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def finish(self, claim: Claim, objective: float | None,
               constraints: tuple[float, ...]) -> bool:
        """Tell the outcome (objective None: failed); False when the trial was taken away."""
        claim.heartbeat.stop()
        fail = self._optuna.trial.TrialState.FAIL
        try:
            claim.trial.set_user_attr(CONSTRAINTS_ATTR, list(constraints))
            if objective is None:
                self.study.tell(claim.trial, state=fail)
            else:
                for key, value in named_constraints(self.spec, constraints).items():
                    claim.trial.set_constraint(key, value)
                self.study.tell(claim.trial, objective)
        except (self._optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return False
        return True

    def release(self, claim: Claim, reason: str) -> None:
        """Give an unfinished claim back (this worker was interrupted; `reason` says so, e.g.
        "was interrupted"): failed, and queued again under its number for the next worker."""
        claim.heartbeat.stop()
        optuna = self._optuna
        try:
            claim.trial.set_user_attr(REQUEUED_ATTR, reason)
            self.study.tell(claim.trial, state=optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return  # already failed as stale by another worker, who queued it again
        frozen = self.storage.get_trial(_trial_id(claim.trial))
        system = {k: v for k, v in frozen.system_attrs.items()
                  if k not in ("failed_trial", "retry_history")}
        self.study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, params=frozen.params,
            distributions=frozen.distributions, user_attrs={TRIAL_ATTR: claim.number},
            system_attrs=system))

    # -- what the study holds

    def running(self) -> list[Any]:
        """Trials running now (on any worker)."""
        return self._trials((self._optuna.trial.TrialState.RUNNING,))

    def waiting(self) -> int:
        return len(self._trials((self._optuna.trial.TrialState.WAITING,)))

    def complete(self) -> bool:
        """Nothing waits, nothing runs, and (optuna) the trial budget is used: nothing is left
        for a worker to do. (An optuna sweep bounded by time alone is never complete here:
        each worker's time budget is its own.)"""
        if self.running() or self.waiting():
            return False
        return self.grid or self.budget_used()

    def planned(self) -> int | None:
        return len(GridStrategy(self.spec).order) if self.grid else self.spec.budget.trials

    def rows(self) -> list[TrialRow]:
        """Every trial's rows from its latest attempt (what trials.parquet holds): an attempt
        whose worker died or was interrupted shows failed, saying why and whether it runs again;
        a queued trial nobody started yet has no row."""
        optuna = self._optuna
        waiting = optuna.trial.TrialState.WAITING
        attempts: dict[int, list[Any]] = {}
        for t in self._trials():
            attempts.setdefault(_number(t), []).append(t)
        out: list[TrialRow] = []
        for number in sorted(attempts):
            tries = sorted(attempts[number], key=lambda t: t.number)
            started = [t for t in tries if t.state is not waiting]
            if started:
                last = started[-1]
                queued = any(t.state is waiting and t.number > last.number for t in tries)
                out += self._attempt_rows(number, last, queued)
        return out

    def _attempt_rows(self, number: int, t, queued: bool) -> list[TrialRow]:
        optuna = self._optuna
        worker = t.user_attrs.get(WORKER_ATTR)
        rows = [row_from_record(r) for r in t.user_attrs.get(ROWS_ATTR) or []]
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        if not rows:
            rows = [TrialRow(number, 0, TrialState.RUNNING, self._params(t), started=started,
                             worker=worker)]
        if t.state is not optuna.trial.TrialState.FAIL:
            return rows
        if t.user_attrs.get(REQUEUED_ATTR):
            why = f"worker {worker} {t.user_attrs[REQUEUED_ATTR]}"
        else:
            why = f"worker {worker} stopped mid-trial (no heartbeat for {self.grace_s}s)"
        why += "; queued to run again" if queued else ""
        return [replace(r, state=TrialState.FAILED, error=why) if r.state is TrialState.RUNNING
                else r for r in rows]

    def _params(self, t) -> dict[str, str]:
        """An attempt's configuration as text, from its suggested or its queued values."""
        if not t.params:
            return {k: str(v) for k, v in (t.system_attrs.get("fixed_params") or {}).items()}
        out = {}
        for name, value in t.params.items():
            axis = self.spec.parameters.get(name)
            out[name] = axis.decode(value) if axis and axis.kind == "range" and not self.grid \
                else str(value)
        return out


def _trial_id(trial) -> int:
    """The storage's id of a live Optuna trial (Optuna's own ask/tell read it the same way)."""
    return trial._trial_id


def _number(t) -> int:
    """The eiperf trial number of an Optuna trial (its own number before it was set)."""
    return int(t.user_attrs.get(TRIAL_ATTR, t.number))


# ---- the strategy -------------------------------------------------------------------------------


class StudyStrategy(SweepStrategy):
    """The strategy of a shared study: the storage says what runs next (grid: its queued
    points; optuna: TPE over every worker's trials; first, retries of dead workers' trials).

    `ask` returns None only when nothing is left: while nothing can be claimed but trials run
    on other workers it waits (calling `wait(running)` every `poll_s`; False stops waiting), as
    one of them may die and be queued again. `replay` has nothing to do: the storage holds
    every finished trial."""

    def __init__(self, spec: SweepSpec, study: SweepStudy, worker: str,
                 wait: Callable[[int], bool] | None = None, poll_s: float = 1.0) -> None:
        super().__init__(spec)
        self.study = study
        self.worker = worker
        self.wait = wait or (lambda running: True)
        self.poll_s = poll_s
        self._claims: dict[int, Claim] = {}
        study.use_sampler(worker)

    def replay(self, finished) -> None:
        return None

    def ask(self) -> Proposal | None:
        while True:
            claim = self.study.claim(self.worker)
            if claim is not None:
                self._claims[claim.number] = claim
                return Proposal(claim.number, claim.params)
            running = len(self.study.running())
            if not running or not self.wait(running):
                return None
            time.sleep(self.poll_s)

    def tell(self, trial: int, objective: float | None, constraints: tuple[float, ...]) -> None:
        claim = self._claims.pop(trial, None)
        if claim is not None:
            self.study.finish(claim, objective, constraints)

    def record(self, trial: int, rows: list[TrialRow]) -> bool:
        """Keep a claimed trial's rows in the storage; False when it was taken away."""
        claim = self._claims.get(trial)
        return claim is not None and self.study.record(claim, rows)

    def release(self, reason: str) -> None:
        """Give every unfinished claim back to the study (queued again)."""
        while self._claims:
            _, claim = self._claims.popitem()
            self.study.release(claim, reason)

    def planned(self) -> int | None:
        return self.study.planned()
