"""A sweep's trials folded over their repetitions, ranked, and the best configuration.

The one ranking of eiperf: `eiperf sweep` (the engine's live best and final table),
`eiperf report`, `eiperf compare` and the notebooks all rank with `ranked` and name the
best with `best_of`, so they cannot name different best configurations.

Folding (`aggregate`): a trial is complete when every repetition is complete; partial when
some are complete and some failed (objective and SLO over the complete ones); failed when
none completed; running while a repetition runs. The objective is the mean over complete
repetitions; the SLO is met when every complete repetition met it.

Ranking (`ranked`): complete trials that met the SLO, best objective first; then complete
trials that missed it; then partial trials (SLO met first, best objective first); failed and
running trials last, unranked. The best is the first ranked trial if it is complete and met
the SLO, else there is none.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eicore.sweeps import TrialRow, TrialState


@dataclass(frozen=True)
class TrialResult:
    """A trial over its repetitions."""

    trial: int
    params: dict[str, str]
    state: TrialState
    objective: float | None
    slo_ok: bool | None
    run_ids: list[str]
    error: str | None
    constraints: tuple[float, ...] = ()
    repetitions: int = 1
    #: the run that shows this trial: its first complete repetition's, else its first run
    run_id: str | None = None
    started: float = 0.0


def aggregate(rows: list[TrialRow]) -> list[TrialResult]:
    """One result per trial number (repetitions folded), in trial order."""
    by_trial: dict[int, list[TrialRow]] = {}
    for r in rows:
        by_trial.setdefault(r.trial, []).append(r)
    out = []
    for number in sorted(by_trial):
        reps = sorted(by_trial[number], key=lambda r: r.repetition)
        done = [r for r in reps if r.state is TrialState.COMPLETE and r.objective is not None]
        failed = [r for r in reps if r.state is TrialState.FAILED
                  or (r.state is TrialState.COMPLETE and r.objective is None)]
        if any(r.state is TrialState.RUNNING for r in reps):
            state = TrialState.RUNNING
        elif done and failed:
            state = TrialState.PARTIAL
        elif done:
            state = TrialState.COMPLETE
        else:
            state = TrialState.FAILED
        objective = sum(r.objective for r in done) / len(done) \
            if done and state is not TrialState.RUNNING else None
        slo_ok = all(bool(r.slo_ok) for r in done) if objective is not None else None
        constraints: tuple[float, ...] = ()
        if done and all(r.constraints for r in done):
            constraints = tuple(max(c) for c in zip(*(r.constraints for r in done)))
        error = next((r.error for r in failed if r.error), None)
        run_ids = [r.run_id for r in reps if r.run_id]
        shown = next((r.run_id for r in done if r.run_id), run_ids[0] if run_ids else None)
        out.append(TrialResult(number, dict(reps[0].params), state, objective, slo_ok, run_ids,
                               error, constraints, len(reps), shown, reps[0].started))
    return out


def rank_group(t: TrialResult) -> int | None:
    """0 complete and SLO met, 1 complete and SLO missed, 2 partial; None: not ranked."""
    if t.objective is None:
        return None
    if t.state is TrialState.COMPLETE:
        return 0 if t.slo_ok else 1
    if t.state is TrialState.PARTIAL:
        return 2
    return None


def ranked(results: list[TrialResult], direction: str) -> list[TrialResult]:
    """The trials in ranking order (see the module's docstring); unranked ones last."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction {direction!r} is neither maximize nor minimize")
    sign = -1.0 if direction == "maximize" else 1.0

    def key(t: TrialResult):
        group = rank_group(t)
        if group is None:
            return (9, 0, math.inf, t.trial)
        return (group, 0 if t.slo_ok else 1, sign * t.objective, t.trial)

    return sorted(results, key=key)


def best_of(results: list[TrialResult], direction: str) -> TrialResult | None:
    """The best complete trial that met the SLO, or None."""
    first = next(iter(ranked(results, direction)), None)
    if first is None or rank_group(first) != 0:
        return None
    return first


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tune_apply_args(params: Mapping[str, Any]) -> list[str]:
    """`--set name=value` arguments of `eiperf tune apply` for a parameter set."""
    args: list[str] = []
    for name, value in params.items():
        args += ["--set", f"{name}={_cli_value(value)}"]
    return args


def tune_apply_command(params: Mapping[str, Any]) -> str:
    """The whole `eiperf tune apply` command line that puts a configuration in place."""
    return shlex.join(["eiperf", "tune", "apply", *tune_apply_args(params)])
