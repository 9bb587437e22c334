"""A sweep's folder as the engine keeps it: sweep.json and trials.parquet rewritten atomically
after every trial, and the lock held while a sweep runs (layout: eicore.sweeps).

One process runs a plain sweep and holds `lock`. A shared study may have several workers in one
folder: each holds its own `workers/<id>.lock`, and every rewrite (`sync`, `leave`) happens
under `write.lock` with the rows read from the storage inside it, so the last file written is
always the newest. The last worker to leave the folder writes its final status; one that leaves
while another still runs here leaves it "running"."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text, lock_held
from eicore.sweeps import (
    SWEEP_JSON,
    SWEEP_LOCK,
    SWEEP_SCHEMA_VERSION,
    SWEEP_WRITE_LOCK,
    TRIALS_FILE,
    WORKERS_DIR,
    SweepStatus,
    TrialRow,
    new_sweep_id,
    read_sweep_info,
    read_trials,
    sweep_running,
    sweeps_root,
    write_trials,
)
from tuning.sweep_spec import SweepSpec, parse_spec_data


class SweepFolder:
    """results/sweeps/<id>/: sweep.json and trials.parquet, and a lock while a sweep runs."""

    def __init__(self, path: Path, info: dict[str, Any], rows: list[TrialRow]) -> None:
        self.path = path
        self.info = info
        self.rows = rows
        self._lock_fd: int | None = None
        self._worker_lock: Path | None = None

    @property
    def id(self) -> str:
        return self.info["id"]

    @classmethod
    def create(cls, results_dir: Path, spec: SweepSpec, cluster_file: str, *,
               sweep_id: str | None = None, storage: str | None = None,
               created: str | None = None) -> SweepFolder:
        """A new folder (a new id, or `sweep_id` of a shared study; `storage` its URL without
        password)."""
        sid = sweep_id or new_sweep_id()
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
        if storage is not None:
            info.update(storage=storage, workers={}, synced=None, running_elsewhere=0)
            info["created"] = created or info["created"]
        folder = cls(sweeps_root(results_dir) / sid, info, [])
        folder.path.mkdir(parents=True)
        return folder

    @property
    def storage(self) -> str | None:
        """The storage URL of a shared study (no password), None for a plain sweep."""
        return self.info.get("storage")

    @classmethod
    def open(cls, results_dir: Path, sweep_id: str) -> SweepFolder:
        path = sweeps_root(results_dir) / sweep_id
        if not (path / SWEEP_JSON).exists():
            raise EiperfError(f"no sweep {sweep_id!r} under {sweeps_root(results_dir)}; "
                              "give the id of a folder there (or the right --results)")
        return cls(path, read_sweep_info(path), read_trials(path / TRIALS_FILE))

    def spec(self) -> SweepSpec:
        data = self.info["spec"]
        return parse_spec_data(data, data.get("source") or self.id)

    def check_free(self) -> None:
        """EiperfError when another eiperf process runs this sweep (a lock is held)."""
        if sweep_running(self.path):
            raise self._busy()

    def _busy(self) -> EiperfError:
        return EiperfError(f"sweep {self.id} is running in another eiperf process; "
                           "wait for it or stop it first")

    def lock(self) -> None:
        fd = os.open(self.path / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        self._lock_fd = fd
        if any(lock_held(p) for p in (self.path / WORKERS_DIR).glob("*.lock")):
            self.unlock()  # workers of a shared study run it
            raise self._busy()

    def lock_worker(self, worker_id: str) -> None:
        """Mark this process as one worker of a shared study running from this folder."""
        if lock_held(self.path / SWEEP_LOCK):
            raise self._busy()
        (self.path / WORKERS_DIR).mkdir(exist_ok=True)
        path = self.path / WORKERS_DIR / f"{worker_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # its own file: nobody else takes it
        self._lock_fd, self._worker_lock = fd, path

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._worker_lock is not None:
            self._worker_lock.unlink(missing_ok=True)
            self._worker_lock = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold write.lock: one process at a time rewrites sweep.json and trials.parquet."""
        fd = os.open(self.path / SWEEP_WRITE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _merge(self, rows: list[TrialRow], fields: dict[str, Any]) -> None:
        if (self.path / SWEEP_JSON).exists():
            self.info = read_sweep_info(self.path)
        self.info.update(fields, schema_version=SWEEP_SCHEMA_VERSION)
        self.rows = rows
        self.save()

    def sync(self, rows: list[TrialRow], fields: dict[str, Any]) -> None:
        """Rewrite both files (a shared study): these rows, sweep.json as on disk plus `fields`.
        Call it with rows read under `writing()` so an older view never lands last."""
        self._merge(rows, fields)

    def leave(self, rows: list[TrialRow], fields: dict[str, Any],
              final: dict[str, Any]) -> bool:
        """This worker stops (under `writing()`): its lock is released, and `final` (status,
        finished) is written too when no other process runs the sweep from this folder.
        True when it was the last."""
        self.unlock()
        last = not sweep_running(self.path)
        self._merge(rows, {**fields, **final} if last else fields)
        return last

    def save(self) -> None:
        names = list(self.info["parameters"])
        write_trials(self.path / TRIALS_FILE, self.rows, names)
        atomic_write_text(self.path / SWEEP_JSON, json.dumps(self.info, indent=2) + "\n")
