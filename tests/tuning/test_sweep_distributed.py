"""Distributed sweeps (`eiperf sweep --storage`, `--join`): several workers, each on its own
cluster, share one Optuna study.

First without a cluster: claims are atomic on SQLite (racing processes never claim one trial
twice), a dead worker's trial is queued again under its number, an interrupted one is given
back, TPE workers keep the trial budget together, a folder shared by workers says running while
any of them holds its lock, the last to leave writes the final status, and a schema 1 folder
still loads. Then for real: two loopback testbeds and two `eiperf sweep` processes (the second
with --join) split one grid, none repeated, one ranking; a joined worker SIGKILLed mid-trial
leaves its cluster restorable by `eiperf tune restore`, and its trial is run again by the other
worker. Trials are ~2 s of load, nginx-only parameters (a reload per trial)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest

from analysis.loading import load_sweep
from analysis.ranking import best_trial, format_ranking, rank_trials
from eicore.sweeps import (
    SWEEP_JSON,
    TRIALS_FILE,
    WORKERS_DIR,
    SweepStatus,
    TrialRow,
    TrialState,
    read_trials,
)
from eicore.trials import aggregate, best_of, ranked, tune_apply_command
from testbed import manager
from tests.conftest import start_testbed
from tests.tuning.test_sweep import (
    _kill_tree_except_nodes,
    config_snapshot,
    lb_serves,
    nodes_alive,
    wait_for,
)
from tuning.strategies import TRIAL_ATTR
from tuning.sweep_folder import SweepFolder
from tuning.sweep_spec import parse_spec_data
from tuning.sweep_study import (
    REQUEUED_ATTR,
    StudyStrategy,
    SweepStudy,
    public_url,
    storage_url,
)

ROOT = Path(__file__).resolve().parents[2]
EIPERF = [sys.executable, "-m", "eiperf.cli"]
LOAD = {"users": 2, "duration": "2s", "warmup": "1s"}
FIXTURE_V1 = Path(__file__).parent / "fixtures" / "sweep-v1"


def grid_spec(n: int = 40, seed: int = 1):
    return parse_spec_data({"seed": seed, "slo": ["errors<5%"], "load": LOAD, "parameters": {
        "nginx.upstream_keepalive": {"low": 0, "high": n - 1, "step": 1}}}, "grid.toml")


def optuna_spec(trials: int = 4):
    return parse_spec_data({"strategy": "optuna", "seed": 2, "load": LOAD,
                            "budget": {"trials": trials}, "parameters": {
                                "nginx.upstream_keepalive": {"low": 0, "high": 64}}},
                           "tpe.toml")


def finished_row(number: int, params: dict[str, str], worker: str) -> TrialRow:
    return TrialRow(number, 0, TrialState.COMPLETE, params, run_id=f"run-{number}",
                    objective=100.0 + number, slo_ok=True, started=time.time(), worker=worker)


# ---- the storage and its claims ----------------------------------------------------------------


def test_a_storage_is_a_path_or_a_url_and_no_password_is_shown(tmp_path):
    assert storage_url(str(tmp_path / "s.db")) == f"sqlite:///{tmp_path / 's.db'}"
    url = "postgresql://eiperf:s3cret@db.example:5432/sweeps"
    assert storage_url(url) == url
    assert public_url(url) == "postgresql://eiperf@db.example:5432/sweeps"
    for bad, words in ((str(tmp_path), "is a folder"), (str(tmp_path / "no" / "s.db"),
                                                        "does not exist"), ("", "give a file")):
        with pytest.raises(Exception, match=words):
            storage_url(bad)


CLAIMER = """
import json, sys
from tuning.sweep_study import StudyStrategy, SweepStudy
study = SweepStudy.open(sys.argv[1], "sweep-race")
strategy = StudyStrategy(study.spec, study, sys.argv[2], poll_s=0.1)
got = []
while (p := strategy.ask()) is not None:
    got.append(p.trial)
    strategy.tell(p.trial, float(p.trial), ())
print(json.dumps(got))
"""


def test_racing_workers_never_claim_one_trial_twice(tmp_path):
    """Three processes claim a 40-point grid as fast as they can (SQLite, BEGIN IMMEDIATE)."""
    url = storage_url(str(tmp_path / "race.db"))
    SweepStudy.create(url, "sweep-race", grid_spec(40), grace_s=60)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, f"w{i}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    claimed = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        claimed.append(json.loads(out))
    every = [n for got in claimed for n in got]
    assert sorted(every) == list(range(40)), claimed  # each grid point exactly once
    study = SweepStudy.open(url, "sweep-race")
    assert len(study.study.trials) == 40  # no retries, no extra trials
    assert all(t.state.name == "COMPLETE" for t in study.study.trials)
    assert study.complete()


HOLDER = """
import sys, time
from tuning.sweep_study import SweepStudy
study = SweepStudy.open(sys.argv[1], sys.argv[2])
claim = study.claim("doomed")
print(claim.number, flush=True)
time.sleep(600)
"""


def test_a_dead_workers_trial_is_queued_again_under_its_number(tmp_path):
    url = storage_url(str(tmp_path / "stale.db"))
    SweepStudy.create(url, "sweep-stale", grid_spec(3), grace_s=2)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, "sweep-stale"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        number = int(holder.stdout.readline())
    finally:
        holder.kill()
        holder.wait(10)
    study = SweepStudy.open(url, "sweep-stale")
    (row,) = study.rows()
    assert (row.trial, row.state, row.worker) == (number, TrialState.RUNNING, "doomed")
    time.sleep(3.5)  # > grace (2 s; the storage clock counts whole seconds)
    strategy = StudyStrategy(study.spec, study, "survivor", poll_s=0.1)
    seen = []
    while (p := strategy.ask()) is not None:
        if not seen:  # the dead trial: failed, and queued again behind the grid's points
            (dead,) = [r for r in study.rows() if r.trial == number]
            assert dead.state is TrialState.FAILED
            assert "worker doomed stopped mid-trial" in dead.error and "queued" in dead.error
        seen.append(p.trial)
        strategy.record(p.trial, [finished_row(p.trial, p.params, "survivor")])
        strategy.tell(p.trial, 100.0 + p.trial, ())
    assert sorted(seen) == [0, 1, 2] and seen[-1] == number
    rows = study.rows()
    assert [(r.trial, r.state, r.worker) for r in rows] == \
        [(n, TrialState.COMPLETE, "survivor") for n in range(3)]
    attempts = [t for t in study.study.trials if t.user_attrs[TRIAL_ATTR] == number]
    assert [t.state.name for t in attempts] == ["FAIL", "COMPLETE"]


def test_an_interrupted_claim_is_given_back(tmp_path):
    url = storage_url(str(tmp_path / "release.db"))
    study = SweepStudy.create(url, "sweep-release", grid_spec(2), grace_s=60)
    one = StudyStrategy(study.spec, study, "one")
    p = one.ask()
    one.release("was interrupted")
    (row,) = study.rows()
    assert row.state is TrialState.FAILED and "worker one was interrupted" in row.error
    assert "queued to run again" in row.error
    other = StudyStrategy(study.spec, study, "other")
    asked = [other.ask(), other.ask()]
    assert sorted(q.trial for q in asked) == [0, 1]
    assert next(q for q in asked if q.trial == p.trial).params == p.params
    assert study.study.trials[0].user_attrs[REQUEUED_ATTR] == "was interrupted"


def test_tpe_workers_keep_the_trial_budget_together(tmp_path):
    url = storage_url(str(tmp_path / "tpe.db"))
    SweepStudy.create(url, "sweep-tpe", optuna_spec(trials=4), grace_s=60)
    a, b = (SweepStudy.open(url, "sweep-tpe") for _ in range(2))
    seen = []
    sa = StudyStrategy(a.spec, a, "a")
    sb = StudyStrategy(b.spec, b, "b", wait=lambda running: seen.append(running) or False)
    pa, pb = sa.ask(), sb.ask()
    assert pa.trial != pb.trial and pa.params != pb.params  # seeded per worker
    sa.tell(pa.trial, 10.0, ())
    sb.tell(pb.trial, 20.0, ())
    rest = [sa.ask(), sb.ask()]
    numbers = sorted([pa.trial, pb.trial] + [p.trial for p in rest])
    assert numbers == [0, 1, 2, 3]
    sa.tell(rest[0].trial, 30.0, ())
    # the budget is used; b waits while a trial runs (it may die and come back): here it stops
    assert sb.ask() is None and seen == [1]
    sb.tell(rest[1].trial, 30.0, ())
    assert sa.ask() is None  # 4 trials in all, none running: done
    assert a.complete() and len(a.study.trials) == 4
    # a worker that asks for a fifth trial anyway (a race for the last slot) never runs it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Heartbeat of storage is meant for optimize"
        late = a.study.ask()
    assert a._surplus(late) and len(a.rows()) == 4


# ---- the folder: several workers, one copy ---------------------------------------------------------


def _hold(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_folder_runs_while_any_worker_holds_its_lock_and_the_last_writes_the_end(tmp_path):
    spec = grid_spec(2)
    one = SweepFolder.create(tmp_path, spec, "/c1.toml", sweep_id="sweep-shared",
                             storage="sqlite:////x.db")
    one.save()
    two = SweepFolder.open(tmp_path, "sweep-shared")
    one.lock_worker("host-1")
    two.lock_worker("host-2")
    rows = [finished_row(0, {"nginx.upstream_keepalive": "0"}, "host-1")]
    with one.writing():
        one.sync(rows, {"status": "running"})
    assert load_sweep(one.path).state == "running"
    with pytest.raises(Exception, match="running in another eiperf process"):
        SweepFolder.open(tmp_path, "sweep-shared").lock()  # no plain --resume meanwhile
    with one.writing():
        assert one.leave(rows, {}, {"status": "complete"}) is False  # host-2 still runs
    assert load_sweep(one.path).state == "running"
    assert not (one.path / WORKERS_DIR / "host-1.lock").exists()
    with two.writing():
        assert two.leave(rows * 2, {}, {"status": "complete"}) is True
    sweep = load_sweep(one.path)
    assert (sweep.state, sweep.storage, len(sweep.rows)) == ("complete", "sqlite:////x.db", 2)

    # killed workers: running, no lock held -> interrupted; unless trials run elsewhere
    info = json.loads((one.path / SWEEP_JSON).read_text())
    (one.path / SWEEP_JSON).write_text(json.dumps({**info, "status": "running"}))
    assert load_sweep(one.path).interrupted
    fd = _hold(one.path / WORKERS_DIR / "host-9.lock")
    try:
        assert not load_sweep(one.path).interrupted
    finally:
        os.close(fd)
    (one.path / SWEEP_JSON).write_text(json.dumps({**info, "status": "running",
                                                   "running_elsewhere": 1}))
    assert load_sweep(one.path).state == "running"


def test_a_schema_1_folder_still_loads(tmp_path):
    folder = tmp_path / "results" / "sweeps" / "sweep-20250301-101500-0001"
    shutil.copytree(FIXTURE_V1, folder)
    assert json.loads((folder / SWEEP_JSON).read_text())["schema_version"] == 1
    rows = read_trials(folder / TRIALS_FILE)
    assert [r.worker for r in rows] == [None, None, None]
    sweep = load_sweep(folder)
    assert (sweep.state, sweep.storage, sweep.interrupted) == ("complete", None, False)
    assert int(best_trial(sweep)["trial"]) == sweep.info["best"]["trial"] == 1
    resumed = SweepFolder.open(tmp_path / "results", sweep.id)
    assert resumed.spec().strategy == "grid" and resumed.storage is None


def test_join_and_sync_refuse_bad_input_in_one_line(tmp_path):
    out = tmp_path / "results"
    other = tmp_path / "other.db"
    SweepStudy.create(storage_url(str(other)), "sweep-other", grid_spec(2))
    cases = [
        (["--join", "sweep-x"], "give --storage URL"),
        (["--join", "sweep-x", "--storage", str(tmp_path / "none.db")], "no storage"),
        (["--join", "sweep-x", "--storage", str(other)], "no sweep 'sweep-x'"),
        (["--resume", "a", "--join", "b"], "give one of --resume, --join and --sync"),
        (["--sync", "sweep-x"], "give --storage URL"),
        ([str(ROOT / "sweeps" / "nginx_timeouts.toml"), "--storage",
          str(tmp_path / "no" / "s.db")], "does not exist"),
    ]
    for args, words in cases:
        r = subprocess.run([*EIPERF, "sweep", *args, "--results", str(out), "--cluster",
                            "/nonexistent.toml"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert not (out / "sweeps").exists() and not (tmp_path / "none.db").exists()


def test_a_shared_sweep_is_joined_by_id_and_resume_means_join(tmp_path):
    """--join finds the storage in the folder's sweep.json; --resume of a shared sweep joins it;
    --dry-run says what a worker would join and changes nothing."""
    out, url = tmp_path / "results", storage_url(str(tmp_path / "s.db"))
    study = SweepStudy.create(url, "sweep-dry", grid_spec(3), grace_s=60)
    folder = SweepFolder.create(out, study.spec, "/c.toml", sweep_id=study.id,
                                storage=study.public_url)
    folder.save()
    before = (folder.path / SWEEP_JSON).read_bytes()
    for mode in ("--join", "--resume"):
        r = subprocess.run([*EIPERF, "sweep", mode, study.id, "--dry-run", "--results", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"join: sweep {study.id} in {study.public_url}: 3 trial(s) queued" in r.stdout
    assert (folder.path / SWEEP_JSON).read_bytes() == before
    assert len(study.study.trials) == 3


# ---- for real: two clusters, two workers --------------------------------------------------------


@pytest.fixture(scope="module")
def two_testbeds(tmp_path_factory):
    """Two one-node loopback testbeds on different ports, taken down at the end."""
    dirs = [tmp_path_factory.mktemp(f"tb{i}") for i in (1, 2)]
    clusters = []
    try:
        for d in dirs:
            clusters.append(start_testbed(d, nodes=1))
        yield clusters
    finally:
        for d in dirs:
            if (d / "cluster.toml").exists():
                manager.down(d, progress=lambda m: None)


def _spec_file(path: Path, values: list[str]) -> Path:
    shown = ", ".join(f'"{v}"' for v in values)
    path.write_text('seed = 5\nslo = ["errors<5%"]\n[parameters]\n'
                    f'"nginx.proxy_read_timeout" = [{shown}]\n'
                    '[load]\nusers = 2\nduration = "2s"\nwarmup = "1s"\n')
    return path


def _sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*EIPERF, "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    finally:
        if proc.poll() is None:
            _kill_tree_except_nodes(proc)


def _sweep_dir(out: Path) -> Path:
    return wait_for(lambda: next((out / "sweeps").glob("*/sweep.json"), None), 90,
                    "the shared sweep's folder").parent


def _attempts(db: Path, sweep_id: str) -> dict[int, list[str]]:
    study = optuna.load_study(study_name=sweep_id, storage=f"sqlite:///{db}")
    out: dict[int, list[str]] = {}
    for t in study.trials:
        out.setdefault(t.user_attrs[TRIAL_ATTR], []).append(t.state.name)
    return out


def test_two_workers_split_one_grid_with_one_ranking(two_testbeds, tmp_path):
    c1, c2 = two_testbeds
    before = [config_snapshot(c) for c in (c1, c2)]
    values = ["30s", "40s", "50s", "60s", "70s", "80s"]
    spec = _spec_file(tmp_path / "timeouts.toml", values)
    out, db = tmp_path / "results", tmp_path / "study.db"
    first = _sweep([str(spec), "--storage", str(db), "--cluster", c1.source, "--results",
                    str(out)], tmp_path)
    try:
        sweep_id = _sweep_dir(out).name
        second = _sweep(["--join", sweep_id, "--cluster", c2.source, "--results", str(out)],
                        tmp_path)
        outputs = [_finish(second), _finish(first)]
    finally:
        if first.poll() is None:
            _kill_tree_except_nodes(first)
    assert [first.returncode, second.returncode] == [0, 0], "\n----\n".join(outputs)
    assert "--join" in outputs[1]  # the first worker says how to add one

    folder = out / "sweeps" / sweep_id
    rows = read_trials(folder / TRIALS_FILE)
    assert sorted(r.trial for r in rows) == list(range(6))
    assert sorted(r.params["nginx.proxy_read_timeout"] for r in rows) == sorted(values)
    assert all(r.state is TrialState.COMPLETE for r in rows), rows
    workers = {r.worker for r in rows}
    assert workers == {f"{os.uname().nodename}-{p.pid}" for p in (first, second)}, workers
    assert _attempts(db, sweep_id) == {n: ["COMPLETE"] for n in range(6)}  # none ran twice

    # one ranking: the folder, `eiperf report`, the storage (--sync) and eicore.trials agree
    best = best_of(aggregate(rows), "maximize")
    sweep = load_sweep(folder)
    assert sweep.state == "complete" and sweep.info["best"]["trial"] == best.trial
    assert set(sweep.info["workers"]) == workers
    assert list(rank_trials(sweep)["trial"]) == [t.trial for t in ranked(aggregate(rows),
                                                                         "maximize")]
    html = tmp_path / "report.html"
    r = subprocess.run([*EIPERF, "report", str(folder), "-o", str(html)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert tune_apply_command(best.params) in html.read_text()
    elsewhere = tmp_path / "elsewhere"
    r = subprocess.run([*EIPERF, "sweep", "--sync", sweep_id, "--storage", str(db),
                        "--results", str(elsewhere)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    synced = load_sweep(elsewhere / "sweeps" / sweep_id)
    assert synced.state == "complete"
    assert format_ranking(synced, top=None) == format_ranking(sweep, top=None)
    r = subprocess.run([*EIPERF, "sweep", "--join", sweep_id, "--results", str(out),
                        "--cluster", c2.source], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "is complete; nothing to join" in r.stderr

    for cluster, snapshot in zip((c1, c2), before, strict=True):
        assert config_snapshot(cluster) == snapshot
        assert nodes_alive(cluster) and lb_serves(cluster)
    assert not (out / ".journal").exists()


def test_a_joined_worker_killed_mid_trial(two_testbeds, tmp_path):
    c1, c2 = two_testbeds
    before = [config_snapshot(c) for c in (c1, c2)]
    spec = _spec_file(tmp_path / "kill.toml", ["31s", "41s", "51s", "61s"])
    out, db = tmp_path / "results", tmp_path / "study.db"
    first = _sweep([str(spec), "--storage", str(db), "--grace", "5", "--cluster", c1.source,
                    "--results", str(out)], tmp_path)
    second = None
    try:
        folder = _sweep_dir(out)
        second = _sweep(["--join", folder.name, "--storage", str(db), "--cluster", c2.source,
                         "--results", str(out)], tmp_path)
        me = f"{os.uname().nodename}-{second.pid}"

        def running_on_second():
            try:
                rows = read_trials(folder / TRIALS_FILE)
            except Exception:  # noqa: BLE001 - between two rewrites
                return None
            return next((r for r in rows if r.worker == me and r.state is TrialState.RUNNING
                         and r.run_id), None)

        victim = wait_for(running_on_second, 120, "a trial running on the joined worker")
        time.sleep(1.0)  # inside its ~3 s run
        assert second.poll() is None
        _kill_tree_except_nodes(second)
        journals = [j for j in (out / ".journal").iterdir() if not j.name.startswith(".")]
        assert journals  # the killed worker's is still open (and the first worker's)
        r = subprocess.run([*EIPERF, "tune", "restore", "--results", str(out)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "restored 1 journal" in r.stdout  # the killed worker's; the first holds its own
        assert config_snapshot(c2) == before[1]
        assert nodes_alive(c2) and lb_serves(c2)
        output = _finish(first)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                _kill_tree_except_nodes(p)
    assert first.returncode == 0, output

    rows = read_trials(folder / TRIALS_FILE)
    assert sorted(r.trial for r in rows) == [0, 1, 2, 3]
    (again,) = [r for r in rows if r.trial == victim.trial]
    attempts = _attempts(db, folder.name)
    assert attempts[victim.trial][0] == "FAIL"  # the killed worker's attempt: stale
    if again.state is TrialState.COMPLETE:  # run again by the surviving worker
        assert again.worker != me and attempts[victim.trial] == ["FAIL", "COMPLETE"]
    else:
        assert again.state is TrialState.FAILED and "stopped mid-trial" in again.error
    others = {n: a for n, a in attempts.items() if n != victim.trial}
    assert all(a == ["COMPLETE"] for a in others.values()), attempts  # none ran twice
    sweep = load_sweep(folder)
    assert sweep.state == SweepStatus.COMPLETE.value
    assert config_snapshot(c1) == before[0] and config_snapshot(c2) == before[1]
    assert not (out / ".journal").exists()
