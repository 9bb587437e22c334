"""Sweep strategies: which configuration to try next, given what finished so far.

A strategy is asked for a `Proposal` (trial number + parameter values), runs nothing itself,
and is told each outcome. Resuming a sweep replays the finished trials into a fresh strategy
before the first ask, so nothing finished is proposed again. Two implementations:

* `GridStrategy` -- every combination of the grid, in an order shuffled with the spec's seed
  (slow drift of the machine -- page cache, JIT, thermals -- spreads over all configurations
  instead of favouring the first ones); `budget.trials` caps it.
* `OptunaStrategy` -- Optuna's TPE sampler through ask-and-tell; the SLO is a constraint (one
  value per rule, <= 0 when met), also stored in each trial's user attrs. Optuna 5 deprecated
  TPESampler's `constraints_func` for `Trial.set_constraint`, which the TPE sampler reads the
  same way (infeasible trials rank below feasible ones); eiperf uses the new call.

A sweep shared through an Optuna storage uses a third, `tuning.sweep_study.StudyStrategy`:
the storage, not this process, decides which configuration runs next; it shares the helpers
below (`tpe_sampler`, `suggest_params`) so a configuration is named the same way everywhere.
"""

from __future__ import annotations

import random
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

from analysis.slo import parse_rule
from eicore.errors import EiperfError
from eicore.results import SloVerdict
from tuning.sweep_spec import Axis, SweepSpec

CONSTRAINTS_ATTR = "constraints"
#: user attr of an Optuna trial: the eiperf trial number it runs
TRIAL_ATTR = "eiperf_trial"


@dataclass(frozen=True)
class Proposal:
    """A configuration to run: its trial number and parameter values (normalised text)."""

    trial: int
    params: dict[str, str]


@dataclass(frozen=True)
class Finished:
    """A trial that already ran: replayed into a strategy when a sweep resumes."""

    trial: int
    params: dict[str, str]
    objective: float | None  # None: the trial failed
    constraints: tuple[float, ...] = ()


class SweepStrategy(ABC):
    """Contract: `replay` the finished trials (once, before any ask), then alternate `ask` and
    `tell`. `ask` returns None when the strategy has nothing left (its budget of trials or its
    grid used up); time budgets are the engine's business. Trial numbers are unique and stable:
    a resumed grid sweep gives a configuration the number it had."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    @abstractmethod
    def replay(self, finished: list[Finished]) -> None:
        """Learn the trials an earlier, interrupted run of this sweep finished."""

    @abstractmethod
    def ask(self) -> Proposal | None:
        """The next configuration to run, or None when done."""

    @abstractmethod
    def tell(self, trial: int, objective: float | None, constraints: tuple[float, ...]) -> None:
        """The outcome of a proposed trial (objective None: it failed)."""

    @abstractmethod
    def planned(self) -> int | None:
        """How many trials the sweep will run in all, when known (for the progress bar)."""


class GridStrategy(SweepStrategy):
    """Every grid combination once, in an order shuffled with the seed."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        order = spec.grid()
        random.Random(spec.seed).shuffle(order)
        if spec.budget.trials is not None:
            order = order[: spec.budget.trials]
        self.order = order
        self._next = 0
        self._done: set[int] = set()

    def replay(self, finished: list[Finished]) -> None:
        for f in finished:
            if f.trial < len(self.order) and self.order[f.trial] == f.params:
                self._done.add(f.trial)
            elif f.params in self.order:  # numbered differently (should not happen): by value
                self._done.add(self.order.index(f.params))

    def ask(self) -> Proposal | None:
        while self._next < len(self.order):
            number = self._next
            self._next += 1
            if number not in self._done:
                return Proposal(number, dict(self.order[number]))
        return None

    def tell(self, trial: int, objective: float | None, constraints: tuple[float, ...]) -> None:
        self._done.add(trial)

    def planned(self) -> int | None:
        return len(self.order)


def optuna_module():
    """Optuna, imported on first use (an install hint when missing), quiet below warnings."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - a declared dependency
        raise EiperfError("strategy = \"optuna\" needs Optuna: .venv/bin/pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tpe_sampler(spec: SweepSpec, seed: int, constant_liar: bool = False):
    """The TPE sampler of an optuna sweep (`constant_liar`: for workers sharing a study, so
    trials still running elsewhere push a worker away from their region)."""
    optuna = optuna_module()
    budget = spec.budget.trials
    startup = 10 if budget is None else max(2, min(10, budget // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                          constant_liar=constant_liar)


def distribution(axis: Axis, grid: bool = False):
    """The Optuna distribution of an axis (`grid`: its grid values, as categorical text)."""
    d = optuna_module().distributions
    if grid:
        return d.CategoricalDistribution(list(axis.grid_values()))
    if axis.kind != "range":
        return d.CategoricalDistribution(list(axis.values))
    return d.IntDistribution(axis.low, axis.high, log=axis.log, step=axis.step or 1)


def suggest_params(trial, spec: SweepSpec, grid: bool = False) -> dict[str, str]:
    """The configuration of an Optuna trial: each parameter suggested (sampled, or the value a
    queued trial fixes) and given back in the normalised text form `--set` takes."""
    params = {}
    for name, axis in spec.parameters.items():
        if grid:
            params[name] = trial.suggest_categorical(name, list(axis.grid_values()))
        elif axis.kind == "range":
            number = trial.suggest_int(name, axis.low, axis.high, step=axis.step or 1,
                                       log=axis.log)
            params[name] = axis.decode(number)
        else:
            params[name] = trial.suggest_categorical(name, list(axis.values))
    return params


class OptunaStrategy(SweepStrategy):
    """Optuna TPE via ask-and-tell; the SLO verdict is a constraint (<= 0: met)."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        optuna = optuna_module()
        self._optuna = optuna
        self.study = optuna.create_study(direction=spec.objective.direction,
                                         sampler=tpe_sampler(spec, spec.seed))
        self._pending: dict[int, object] = {}
        self._next = 0
        self._count = 0

    def _distribution(self, axis: Axis):
        return distribution(axis)

    def replay(self, finished: list[Finished]) -> None:
        optuna = self._optuna
        dists = {n: self._distribution(a) for n, a in self.spec.parameters.items()}
        for f in sorted(finished, key=lambda f: f.trial):
            self._next = max(self._next, f.trial + 1)
            self._count += 1
            try:
                params = {n: self.spec.parameters[n].encode(f.params[n]) for n in dists}
                state = (optuna.trial.TrialState.COMPLETE if f.objective is not None
                         else optuna.trial.TrialState.FAIL)
                frozen = optuna.trial.create_trial(
                    params=params, distributions=dists, state=state,
                    value=f.objective if f.objective is not None else None,
                    user_attrs={CONSTRAINTS_ATTR: list(f.constraints), TRIAL_ATTR: f.trial},
                    constraints=self._named(f.constraints) if f.objective is not None else None)
            except (KeyError, ValueError):
                continue  # a value outside the space as written now: counts, teaches nothing
            self.study.add_trial(frozen)

    def ask(self) -> Proposal | None:
        if self.spec.budget.trials is not None and self._count >= self.spec.budget.trials:
            return None
        trial = self.study.ask()
        params = suggest_params(trial, self.spec)
        number = self._next
        self._next += 1
        self._count += 1
        trial.set_user_attr(TRIAL_ATTR, number)
        self._pending[number] = trial
        return Proposal(number, params)

    def tell(self, trial: int, objective: float | None, constraints: tuple[float, ...]) -> None:
        t = self._pending.pop(trial)
        t.set_user_attr(CONSTRAINTS_ATTR, list(constraints))
        if objective is not None:
            for key, value in self._named(constraints).items():
                t.set_constraint(key, value)
        if objective is None:
            self.study.tell(t, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(t, objective)

    def planned(self) -> int | None:
        return self.spec.budget.trials

    def _named(self, constraints: tuple[float, ...]) -> dict[str, float]:
        return named_constraints(self.spec, constraints)


def named_constraints(spec: SweepSpec, constraints: tuple[float, ...]) -> dict[str, float]:
    """The SLO constraint values keyed by their rule (what `Trial.set_constraint` takes)."""
    return {rule: float(v) for rule, v in zip(spec.slo, constraints)}


def slo_constraints(slo_results: list[SloVerdict]) -> tuple[float, ...]:
    """One value per SLO rule, <= 0 when met: the relative distance to its threshold.

    `slo_results` are run.json's entries (rule, actual, ok); an unknown figure counts as broken.
    """
    out = []
    for r in slo_results:
        rule = parse_rule(r["rule"])
        actual = r.get("actual")
        if actual is None:
            out.append(1.0)
            continue
        scale = abs(rule.threshold) or 1.0
        gap = (actual - rule.threshold) if rule.op in ("<", "<=") else (rule.threshold - actual)
        value = gap / scale
        if not r.get("ok") and value <= 0:  # strict rule exactly at its threshold
            value = 1e-9
        if r.get("ok") and value > 0:
            value = 0.0
        out.append(value)
    return tuple(out)


def make_strategy(spec: SweepSpec) -> SweepStrategy:
    """The strategy a spec names."""
    return OptunaStrategy(spec) if spec.strategy == "optuna" else GridStrategy(spec)
