"""A sweep's folder as the engine keeps it: sweep.json and trials.parquet rewritten atomically
after every trial, and the lock held while a sweep runs (layout: eicore.sweeps)."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text, lock_held
from eicore.sweeps import (
    SWEEP_JSON,
    SWEEP_LOCK,
    SWEEP_SCHEMA_VERSION,
    TRIALS_FILE,
    SweepStatus,
    TrialRow,
    new_sweep_id,
    read_sweep_info,
    read_trials,
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
        if not (path / SWEEP_JSON).exists():
            raise EiperfError(f"no sweep {sweep_id!r} under {sweeps_root(results_dir)}; "
                              "give the id of a folder there (or the right --results)")
        return cls(path, read_sweep_info(path), read_trials(path / TRIALS_FILE))

    def spec(self) -> SweepSpec:
        data = self.info["spec"]
        return parse_spec_data(data, data.get("source") or self.id)

    def check_free(self) -> None:
        """EiperfError when another eiperf process runs this sweep (its lock is held)."""
        if lock_held(self.path / SWEEP_LOCK):
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

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def save(self) -> None:
        names = list(self.info["parameters"])
        write_trials(self.path / TRIALS_FILE, self.rows, names)
        atomic_write_text(self.path / SWEEP_JSON, json.dumps(self.info, indent=2) + "\n")
