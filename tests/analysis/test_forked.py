"""analysis.forked: jobs really run in forked children, results come back in order, and a job
that fails or a child that dies costs time, never a result or a stray process."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from analysis.forked import ForkedJobs, _balance


def pid_of(tag: int) -> tuple[int, int]:
    return tag, os.getpid()


def children_left() -> list[multiprocessing.Process]:
    return multiprocessing.active_children()


def test_jobs_run_in_children_and_come_back_in_order():
    jobs = [lambda i=i: pid_of(i) for i in range(6)]
    with ForkedJobs(jobs, workers=3) as forked:
        results = forked.results()
    assert [tag for tag, _ in results] == list(range(6))
    pids = {pid for _, pid in results}
    assert os.getpid() in pids  # this process took its share
    assert len(pids) == 3  # and two children took theirs
    assert not children_left()


def test_one_worker_runs_everything_here():
    with ForkedJobs([lambda i=i: pid_of(i) for i in range(3)], workers=1) as forked:
        assert {pid for _, pid in forked.results()} == {os.getpid()}


def test_a_job_that_fails_in_a_child_raises_here():
    parent = os.getpid()

    def fails() -> None:
        raise ValueError(f"failed in {'child' if os.getpid() != parent else 'parent'}")

    with ForkedJobs([fails], workers=2, own_weight=10) as forked, pytest.raises(ValueError,
                                                                 match="failed in parent"):
        forked.results()
    assert not children_left()


def test_a_child_that_dies_costs_time_not_results():
    parent = os.getpid()

    def dies(tag: int) -> tuple[int, int]:
        if os.getpid() != parent:
            os._exit(3)  # killed mid-job: no result is sent
        return pid_of(tag)

    with ForkedJobs([lambda i=i: dies(i) for i in range(4)], workers=2) as forked:
        results = forked.results()
    assert results == [(i, parent) for i in range(4)]
    assert not children_left()


def test_leaving_early_reaps_the_children():
    with pytest.raises(RuntimeError), ForkedJobs([lambda: time.sleep(30)] * 2, workers=3,
                                                  own_weight=10):
        assert len(children_left()) == 2
        raise RuntimeError("the caller's own work failed")
    assert not children_left()


def test_balance_puts_the_heaviest_jobs_on_the_least_loaded_process():
    # the caller already carries 1.0 of its own work
    assert _balance([2.0, 1.0, 1.0], 2, own_weight=1.0) == [[1, 2], [0]]
    assert _balance([1.0], 3, own_weight=0.0) == [[0], [], []]
