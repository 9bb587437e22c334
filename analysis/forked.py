"""Run independent jobs in forked child processes while the caller goes on with its own work.

Why: matplotlib draws in pure Python (~30 ms per axes here), so a report's plots cost more than
loading and summarizing a million requests, and threads do not help (the GIL). Forked children
share the loaded run copy-on-write, so they start in milliseconds without pickling it; only each
job's result (a few hundred KB of SVG text) comes back through a pipe.

Every job must be deterministic and side-effect free: a job that fails in a child, or a child
that dies, is run again in the calling process, so a real error surfaces there with its own
traceback, and a crash costs time, never a result. Where ``fork`` does not exist (Windows) or
only one CPU is usable, the jobs simply run in the caller when their results are asked for.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

Job = Callable[[], Any]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Processes to share jobs between by default, this one included: one per usable CPU, only
    this one without ``fork``."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return usable_cpus()


def _balance(weights: Sequence[float], workers: int, own_weight: float) -> list[list[int]]:
    """Job indices per process (the first is the caller, already loaded with ``own_weight``):
    heaviest job first onto the least-loaded process (LPT scheduling)."""
    loads = [own_weight] + [0.0] * (workers - 1)
    groups: list[list[int]] = [[] for _ in range(workers)]
    for index in sorted(range(len(weights)), key=lambda i: -weights[i]):
        target = loads.index(min(loads))
        groups[target].append(index)
        loads[target] += weights[index]
    return [sorted(g) for g in groups]


def _child(conn: Connection, jobs: list[tuple[int, Job]]) -> None:
    out: list[tuple[int, bool, Any]] = []
    for index, job in jobs:
        try:
            out.append((index, True, job()))
        except Exception:  # noqa: BLE001 - the parent runs it again and raises there
            out.append((index, False, None))
    conn.send(out)
    conn.close()


class ForkedJobs:
    """Jobs shared out at construction between this process and forked children; the children
    start at once, this process runs its share when ``results()`` is called (after its own
    work, whose cost ``own_weight`` is counted against it in the sharing).

    Use as a context manager: leaving it (also on an exception in the caller's own work) reaps
    every child, so none outlives the call.
    """

    def __init__(self, jobs: Sequence[Job], *, workers: int | None = None,
                 weights: Sequence[float] | None = None, own_weight: float = 0.0) -> None:
        self._jobs = list(jobs)
        self._pending: list[tuple[multiprocessing.Process, Connection, list[int]]] = []
        workers = default_workers() if workers is None else workers
        if workers < 2 or not self._jobs:
            return
        weights = list(weights) if weights is not None else [1.0] * len(self._jobs)
        context = multiprocessing.get_context("fork")
        # Frozen objects are never scanned by the children's garbage collector: scanning would
        # write to every object's header and copy the whole parent heap page by page.
        gc.freeze()
        try:
            for group in _balance(weights, workers, own_weight)[1:]:
                if not group:
                    continue
                receive, send = context.Pipe(duplex=False)
                child = context.Process(target=_child, name="eiperf-plots", daemon=True,
                                        args=(send, [(i, self._jobs[i]) for i in group]))
                try:
                    with warnings.catch_warnings():
                        # Python >= 3.12 warns about forking a process with threads (pyarrow's
                        # pool); the children never use those threads.
                        warnings.simplefilter("ignore", DeprecationWarning)
                        child.start()
                except (OSError, AssertionError):  # no fork left, or we are a daemon ourselves
                    receive.close()
                    send.close()
                    break
                send.close()
                self._pending.append((child, receive, group))
        finally:
            gc.unfreeze()

    def results(self) -> list[Any]:
        """Every job's result, in the order the jobs were given."""
        done: dict[int, Any] = {}
        for child, receive, _ in self._pending:
            try:
                for index, ok, value in receive.recv():
                    if ok:
                        done[index] = value
            except (EOFError, OSError):
                pass  # the child died: its jobs run below
            finally:
                receive.close()
                child.join()
        self._pending = []
        return [done[i] if i in done else job() for i, job in enumerate(self._jobs)]

    def close(self) -> None:
        """Stop and reap children whose results were not collected."""
        for child, receive, _ in self._pending:
            receive.close()
            child.terminate()
            child.join()
        self._pending = []

    def __enter__(self) -> ForkedJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
