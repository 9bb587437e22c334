"""The SweepStrategy contract (tuning.strategies), checked for GridStrategy and OptunaStrategy.

Every test in the first part runs for both strategies on specs built as `eiperf sweep` builds
them (`parse_spec_data`): the ask/tell loop proposes valid, numbered configurations; the seed
makes them reproducible; `budget.trials` caps them; a resumed sweep replays its finished trials
and neither runs them again nor goes over the budget. The last part covers what each strategy
does on its own: the grid's shuffled order, Optuna's study and the SLO as a constraint.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuning.params import ParamSet, format_value, validate
from tuning.strategies import (
    CONSTRAINTS_ATTR,
    Finished,
    GridStrategy,
    OptunaStrategy,
    Proposal,
    SweepStrategy,
    make_strategy,
)
from tuning.sweep_spec import SweepSpec, parse_spec_data

SLO = ["p95<200ms", "errors<1%"]
PARAMETERS = {
    "grid": {
        "jvm.xmx": ["512m", "1g", "2g"],
        "jvm.gc": ["G1", "Parallel"],
        "nginx.upstream_keepalive": {"low": 0, "high": 32, "step": 16},
    },
    "optuna": {
        "jvm.xmx": {"low": "256m", "high": "2g", "log": True},
        "jvm.gc": {"choices": ["G1", "Parallel"]},
        "nginx.upstream_keepalive": {"low": 0, "high": 32, "step": 16},
        "nginx.proxy_read_timeout": {"low": "10s", "high": "120s"},
    },
}
GRID_SIZE = 3 * 2 * 3
CLASSES = {"grid": GridStrategy, "optuna": OptunaStrategy}
MET = (-0.5, -0.1)  # both SLO rules met
BROKEN = (0.4, -0.1)  # p95 40 % over its threshold


def spec_for(kind: str, trials: int | None = 6, seed: int = 11) -> SweepSpec:
    data: dict = {
        "strategy": kind,
        "seed": seed,
        "slo": SLO,
        "parameters": PARAMETERS[kind],
        "load": {"users": 2, "duration": "2s", "warmup": "1s"},
    }
    if trials is not None:
        data["budget"] = {"trials": trials}
    return parse_spec_data(data, "strategies.toml")


@pytest.fixture(params=list(CLASSES))
def kind(request) -> str:
    return request.param


Outcome = Callable[[Proposal], tuple[float | None, tuple[float, ...]]]


def throughput(p: Proposal) -> tuple[float | None, tuple[float, ...]]:
    """A made-up objective: more heap and keepalive, more throughput; all SLOs met."""
    heap = validate("jvm.xmx", p.params["jvm.xmx"])
    mib = int(str(heap)[:-1]) * (1024 if str(heap).endswith("g") else 1)
    return mib / 10 + int(p.params["nginx.upstream_keepalive"]), MET


def run(strategy: SweepStrategy, outcome: Outcome = throughput, limit: int = 100) -> list[Proposal]:
    """Ask and tell until the strategy is done (at most `limit` trials)."""
    out = []
    while (p := strategy.ask()) is not None:
        out.append(p)
        strategy.tell(p.trial, *outcome(p))
        assert len(out) <= limit, "the strategy never stops"
    return out


def assert_valid(spec: SweepSpec, params: dict[str, str]) -> None:
    """One value per parameter, inside its axis, in the normalised form `--set` takes."""
    assert list(params) == spec.names
    for name, value in params.items():
        axis = spec.parameters[name]
        assert format_value(validate(name, value)) == value
        if axis.kind == "range":
            number = axis.encode(value)
            assert isinstance(number, int) and axis.low <= number <= axis.high, (name, value)
            assert (number - axis.low) % (axis.step or 1) == 0, (name, value)
        else:
            assert value in axis.values, (name, value)
    ParamSet(params)  # a combination the cluster can run (-Xms <= -Xmx, ...)


# ---- the contract, for both strategies -----------------------------------------------------------


def test_the_spec_names_the_strategy(kind):
    strategy = make_strategy(spec_for(kind))
    assert type(strategy) is CLASSES[kind] and isinstance(strategy, SweepStrategy)


def test_ask_and_tell_propose_valid_numbered_configurations(kind):
    spec = spec_for(kind)
    strategy = make_strategy(spec)
    strategy.replay([])
    proposals = run(strategy)
    assert [p.trial for p in proposals] == list(range(6))
    for p in proposals:
        assert_valid(spec, p.params)
    assert strategy.ask() is None and strategy.ask() is None  # done stays done
    assert strategy.planned() == 6


def test_the_seed_makes_the_proposals_reproducible(kind):
    one, two = (run(make_strategy(spec_for(kind, seed=5))) for _ in range(2))
    assert one == two
    other = run(make_strategy(spec_for(kind, seed=6)))
    assert [p.params for p in other] != [p.params for p in one]


@pytest.mark.parametrize("trials", [1, 3])
def test_the_trial_budget_caps_the_sweep(kind, trials):
    strategy = make_strategy(spec_for(kind, trials=trials))
    assert strategy.planned() == trials
    assert len(run(strategy)) == trials


def test_a_failed_trial_counts_and_is_not_proposed_again(kind):
    strategy = make_strategy(spec_for(kind, trials=4))
    proposals = run(strategy, lambda p: (None, ()) if p.trial == 1 else throughput(p))
    assert [p.trial for p in proposals] == [0, 1, 2, 3]
    if kind == "optuna":
        states = [t.state.name for t in strategy.study.trials]
        assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


def test_resume_replays_finished_trials_and_keeps_the_budget(kind):
    spec = spec_for(kind, trials=6)
    first = make_strategy(spec)
    finished = []
    for outcome in ((120.0, MET), (None, ()), (300.0, BROKEN)):
        p = first.ask()
        assert p is not None
        first.tell(p.trial, *outcome)
        finished.append(Finished(p.trial, p.params, *outcome))
    lost = first.ask()  # running when the sweep was interrupted: never finished, runs again
    assert lost is not None and lost.trial == 3

    second = make_strategy(spec)
    second.replay(finished)
    if kind == "optuna":  # the study knows the finished trials before the first ask
        assert isinstance(second, OptunaStrategy)
        trials = second.study.trials
        assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
        assert [t.user_attrs["eiperf_trial"] for t in trials] == [0, 1, 2]
        assert [t.value for t in trials] == [120.0, None, 300.0]
        assert trials[2].constraints == dict(zip(SLO, BROKEN, strict=True))
        for t, f in zip(trials, finished, strict=True):
            axes = spec.parameters
            assert t.params == {n: axes[n].encode(v) for n, v in f.params.items()}
    rest = run(second)
    assert [p.trial for p in rest] == [3, 4, 5]  # numbers go on; the lost trial's comes back
    assert len(finished) + len(rest) == 6  # finished trials count against the budget
    for p in rest:
        assert_valid(spec, p.params)
    if kind == "grid":  # the same configurations under the same numbers, none run twice
        assert isinstance(second, GridStrategy)
        assert [p.params for p in rest] == second.order[3:6]
        assert rest[0].params == lost.params
        assert not {str(p.params) for p in rest} & {str(f.params) for f in finished}
    assert second.planned() == 6


def test_a_finished_trial_outside_the_space_teaches_nothing(kind):
    spec = spec_for(kind, trials=4)
    outside = dict(make_strategy(spec).ask().params, **{"jvm.xmx": "4g"})  # type: ignore[union-attr]
    strategy = make_strategy(spec)
    strategy.replay([Finished(0, outside, 500.0, MET)])
    proposals = run(strategy)
    for p in proposals:
        assert_valid(spec, p.params)
    if kind == "optuna":  # counted against the budget, but not given to the sampler
        assert isinstance(strategy, OptunaStrategy)
        assert [p.trial for p in proposals] == [1, 2, 3]
        assert [t.user_attrs["eiperf_trial"] for t in strategy.study.trials] == [1, 2, 3]
    else:  # not one of the grid's configurations: every one still runs
        assert [p.trial for p in proposals] == [0, 1, 2, 3]


def test_broken_slo_constraints_are_told_and_kept(kind):
    spec = spec_for(kind, trials=3)
    strategy = make_strategy(spec)
    told = {0: (100.0, MET), 1: (900.0, BROKEN), 2: (200.0, MET)}
    proposals = run(strategy, lambda p: told[p.trial])
    assert [p.trial for p in proposals] == [0, 1, 2]
    if kind == "grid":  # the grid only records the trial as done: the order does not change
        assert isinstance(strategy, GridStrategy)
        assert [p.params for p in proposals] == strategy.order[:3]
        assert [p.params for p in run(make_strategy(spec))] == strategy.order[:3]
        return
    assert isinstance(strategy, OptunaStrategy)
    trials = {t.user_attrs["eiperf_trial"]: t for t in strategy.study.trials}
    assert trials[1].constraints == dict(zip(SLO, BROKEN, strict=True))
    assert trials[1].user_attrs[CONSTRAINTS_ATTR] == list(BROKEN)
    # The highest throughput broke the SLO: the best feasible trial is the next one.
    assert strategy.study.best_trial.user_attrs["eiperf_trial"] == 2


# ---- each strategy on its own --------------------------------------------------------------------


def test_the_grid_runs_every_configuration_once_in_a_seeded_order():
    spec = spec_for("grid", trials=None)
    strategy = GridStrategy(spec)
    proposals = run(strategy)
    assert len(proposals) == GRID_SIZE == strategy.planned()
    assert sorted(map(str, (p.params for p in proposals))) == sorted(map(str, spec.grid()))
    assert [p.params for p in proposals] != spec.grid()  # shuffled, not in the written order
    assert GridStrategy(spec).order == strategy.order
    assert GridStrategy(spec_for("grid", trials=4)).order == strategy.order[:4]


def test_the_grid_resumes_by_value_when_numbers_moved():
    strategy = GridStrategy(spec_for("grid", trials=None))
    order = list(strategy.order)
    strategy.replay([Finished(7, order[2], 10.0, MET), Finished(0, order[0], None)])
    asked = [p.trial for p in run(strategy)]
    assert asked == [n for n in range(GRID_SIZE) if n not in (0, 2)]


def test_optuna_without_a_feasible_trial_has_no_best():
    strategy = OptunaStrategy(spec_for("optuna", trials=2))
    run(strategy, lambda p: (100.0 + p.trial, BROKEN))
    assert all(t.state.name == "COMPLETE" for t in strategy.study.trials)
    with pytest.raises(ValueError):
        _ = strategy.study.best_trial


def test_optuna_minimizes_when_the_objective_says_so():
    data = spec_for("optuna", trials=2).as_data()
    data["objective"] = {"metric": "p95_ms"}
    strategy = OptunaStrategy(parse_spec_data(data, "p95.toml"))
    run(strategy, lambda p: (50.0 if p.trial == 0 else 80.0, MET))
    assert strategy.study.best_trial.value == 50.0
