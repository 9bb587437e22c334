"""Load shapes: users and spawn rate at chosen moments of a test, and what run.json records.

Each shape is a pure schedule (`users_at(t)`, what Locust's `tick()` returns at run time t), so
the tests ask it directly at the moments that matter: the start, just before and at each change,
and the end of the test.
"""

from __future__ import annotations

import json

import pytest

from loadtests.shapes import (
    DRAIN_S,
    SHAPES,
    ArrivalShape,
    ConstantShape,
    Shape,
    SoakShape,
    SpikeShape,
    StepShape,
    build_shape,
)


def schedule(shape: Shape, times: list[float]) -> list[tuple[int, float] | None]:
    return [shape.users_at(t) for t in times]


# ---- each shape at chosen times ----------------------------------------------------------------


def test_constant_holds_its_users_until_the_end():
    shape = ConstantShape(duration=30, users=20, spawn_rate=5)
    assert schedule(shape, [0, 0.5, 29.999, 30, 31]) == [(20, 5), (20, 5), (20, 5), None, None]
    assert shape.describe() == {"shape": "constant", "duration": 30, "users": 20, "spawn_rate": 5}


def test_step_adds_users_each_step_up_to_the_maximum_then_holds():
    shape = StepShape(duration=70, step_users=10, step_time=10, max_users=45, spawn_rate=50)
    times = [0, 9.999, 10, 25, 39.9, 40, 69.9, 70]
    users = [None if r is None else r[0] for r in schedule(shape, times)]
    assert users == [10, 10, 20, 30, 40, 45, 45, None]
    assert shape.users_at(0) == (10, 50)
    assert shape.steps() == [(0.0, 10), (10.0, 20), (20.0, 30), (30.0, 40), (40.0, 45)]
    assert shape.describe() == {
        "shape": "step",
        "duration": 70,
        "step_users": 10,
        "step_time": 10,
        "max_users": 45,
        "spawn_rate": 50,
    }


def test_spike_jumps_to_its_peak_for_its_duration_then_falls_back():
    shape = SpikeShape(duration=60, users=10, spike_users=100, spike_at=20, spike_duration=5)
    times = [0, 19.999, 20, 24.999, 25, 59.999, 60]
    assert schedule(shape, times) == [
        (10, 1000.0),
        (10, 1000.0),
        (100, 1000.0),
        (100, 1000.0),
        (10, 1000.0),
        (10, 1000.0),
        None,
    ]
    assert shape.describe() == {
        "shape": "spike",
        "duration": 60,
        "users": 10,
        "spike_users": 100,
        "spike_at": 20,
        "spike_duration": 5,
        "spawn_rate": 1000.0,
    }


def test_a_spike_past_the_end_is_cut_by_the_duration():
    shape = SpikeShape(duration=30, users=5, spike_users=50, spike_at=25, spike_duration=60)
    assert schedule(shape, [24, 25, 29.9, 30]) == [(5, 1000.0), (50, 1000.0), (50, 1000.0), None]


def test_soak_holds_its_users_reached_over_the_ramp():
    shape = SoakShape(duration=3600, users=60, ramp=30)
    assert schedule(shape, [0, 15, 1800, 3599.9, 3600]) == [(60, 2.0)] * 4 + [None]
    assert shape.describe() == {"shape": "soak", "duration": 3600, "users": 60, "ramp": 30}


@pytest.mark.parametrize(
    ("users", "ramp", "rate"),
    [(60, 30, 2.0), (5, 30, 1.0), (10, 0, 10.0), (10, 0.5, 10.0)],
    ids=["users-over-ramp", "at-least-1-per-s", "no-ramp", "ramp-under-1s"],
)
def test_soak_spawn_rate(users, ramp, rate):
    assert SoakShape(duration=60, users=users, ramp=ramp).users_at(0) == (users, rate)


def test_arrival_runs_its_users_paced_to_the_rate():
    shape = ArrivalShape(duration=45, rate=200, users=50)
    assert schedule(shape, [0, 44.999, 45]) == [(50, 1000.0), (50, 1000.0), None]
    assert shape.per_user_rate == 4.0
    assert shape.describe() == {
        "shape": "arrival",
        "duration": 45,
        "rate": 200,
        "users": 50,
        "spawn_rate": 1000.0,
    }


# ---- built from the command line's options -----------------------------------------------------


@pytest.mark.parametrize("kind", SHAPES)
def test_every_shape_builds_starts_and_ends(kind):
    shape = build_shape(kind, 120, 20, 4, arrival_rate=50)
    assert shape.describe()["shape"] == kind
    assert shape.users_at(0) is not None and shape.users_at(0)[0] >= 1
    assert shape.users_at(119.9) is not None
    # the open model's streams may hear their last answers for DRAIN_S more (then end the test)
    end = 120 + (DRAIN_S if kind == "open" else 0)
    assert shape.users_at(end - 0.1) is not None and shape.users_at(end) is None
    json.dumps(shape.describe())  # run.json stores it


def test_build_defaults_derive_from_users_and_duration():
    assert build_shape("constant", 60, 20, 4) == ConstantShape(60, 20, 4)
    assert build_shape("step", 60, 20, 4) == StepShape(60, 4, 10.0, 20, 4.0)
    assert build_shape("step", 60, 3, 0.5, step_users=1, step_time=5) == StepShape(
        60, 1, 5.0, 3, 1.0
    )
    spike = build_shape("spike", 60, 10, 4)
    assert spike == SpikeShape(60, 10, 50, 20.0, 10.0)
    assert build_shape("spike", 60, 10, 4, spike_users=80).users_at(25) == (80, 1000.0)
    assert build_shape("soak", 1800, 40, 4) == SoakShape(1800, 40, 30.0)
    assert build_shape("soak", 100, 40, 4) == SoakShape(100, 40, 10.0)
    assert build_shape("arrival", 60, 0, 4) == ArrivalShape(60, 100.0, 1)
    assert build_shape("arrival", 60, 25, 4, arrival_rate=75).per_user_rate == 3.0


def test_options_left_unset_take_the_defaults():
    assert build_shape("step", 60, 20, 4, step_users=None, step_time=None) == build_shape(
        "step", 60, 20, 4
    )


def test_an_unknown_shape_names_the_known_ones():
    with pytest.raises(ValueError, match="shape 'ramp': use one of constant, step, spike"):
        build_shape("ramp", 60, 10, 1)
