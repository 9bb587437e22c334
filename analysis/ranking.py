"""A sweep's ranking as tables for reports and notebooks, and its consistency checks.

The ranking itself -- repetitions folded, the order, the best configuration -- is
``eicore.trials`` (the one the sweep engine uses too): complete trials that met the SLO, best
objective first (the sweep's direction); then complete trials that missed the SLO; then partial
trials (some repetitions failed); failed and running trials are listed unranked (a failed
trial shows its error, e.g. the JVM refusing a flag). The best configuration is given as the
arguments of ``eiperf tune apply``. Trials repeated with the same parameters give the run-to-run noise of the
objective (``analysis.compare.noise_estimate``); trials within that noise of the best are tied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.compare import noise_estimate, snapshot_diff
from analysis.keyfigures import format_table
from analysis.loading import Sweep, sweep_records
from eicore.results import SteadyVerdict
from eicore.sweeps import PARAM_PREFIX, TrialState
from eicore.trials import TrialResult, aggregate, best_of, rank_group, ranked, tune_apply_command

#: Snapshot keys derived from a swept parameter's group (the JVM's command line changes with
#: any jvm.* parameter), so they do not count as unswept differences.
DERIVED_KEYS = {"jvm": ("jvm.flags", "jvm.options_line", "input_arguments", "heap_max_bytes",
                        "jvm.args", "jvm.java_opts", "jvm.mem_opts")}


def _param_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def trial_params(row: pd.Series | Mapping[str, Any], params: tuple[str, ...]) -> dict[str, Any]:
    """The parameters of one trial row, by name."""
    return {p: _param_value(row[f"{PARAM_PREFIX}{p}"]) for p in params
            if not pd.isna(row[f"{PARAM_PREFIX}{p}"])}


def _frame(results: list[TrialResult], params: tuple[str, ...]) -> pd.DataFrame:
    """Folded trials as rows: trial, state, objective, slo_ok, run_id, repetitions, error,
    started and the ``param.<name>`` columns."""
    records = []
    for r in results:
        rec: dict[str, Any] = {
            "trial": r.trial, "state": r.state.value,
            "objective": np.nan if r.objective is None else r.objective,
            "slo_ok": bool(r.slo_ok), "run_id": r.run_id, "repetitions": r.repetitions,
            "error": r.error, "started": r.started}
        rec.update({f"{PARAM_PREFIX}{p}": r.params.get(p) for p in params})
        records.append(rec)
    columns = ["trial", "state", "objective", "slo_ok", "run_id", "repetitions", "error",
               "started", *(f"{PARAM_PREFIX}{p}" for p in params)]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["objective"] = frame["objective"].astype(float)
    return frame


def trial_table(sweep: Sweep) -> pd.DataFrame:
    """One row per trial, its repetitions folded as ``eicore.trials.aggregate`` says: objective
    = mean over complete repetitions, slo_ok = every complete repetition met the SLO, state
    complete / partial / failed / running, run_id = the first complete repetition's run,
    ``repetitions`` = how many rows the trial has, ``error`` = the first error seen."""
    return _frame(aggregate(list(sweep.rows)), sweep.params)


def rank_trials(sweep: Sweep) -> pd.DataFrame:
    """Trials (folded) in ranking order with a ``rank`` column (NA for unranked trials)."""
    order = ranked(aggregate(list(sweep.rows)), sweep.direction)
    trials = _frame(order, sweep.params)
    ranks = [i + 1 if rank_group(t) is not None else None for i, t in enumerate(order)]
    trials["rank"] = pd.array(ranks, dtype="Int64")
    return trials


def best_trial(sweep: Sweep) -> pd.Series | None:
    """The best complete trial that met the SLO (``eicore.trials.best_of``), or None."""
    best = best_of(aggregate(list(sweep.rows)), sweep.direction)
    if best is None:
        return None
    return _frame([best], sweep.params).iloc[0]


def objective_noise(sweep: Sweep) -> float | None:
    """Largest run-to-run spread of the objective over repeated parameter sets, or None."""
    done = sweep.trials[(sweep.trials["state"] == TrialState.COMPLETE.value)
                        & sweep.trials["objective"].notna()]
    columns = [f"{PARAM_PREFIX}{p}" for p in sweep.params]
    if not columns or done.empty:
        return None
    spreads = []
    for _, group in done.groupby(columns, sort=False, dropna=False):
        if len(group) >= 2:
            spread = noise_estimate([[v] for v in group["objective"]], statistic="mean")
            if spread is not None:
                spreads.append(spread)
    return max(spreads) if spreads else None


#: |Spearman ρ| between trial order and objective from which a sweep is said to drift.
TREND_RHO = 0.8
#: Complete trials needed before a trend is judged.
TREND_MIN_TRIALS = 4


def order_trend(sweep: Sweep) -> str | None:
    """A warning when the objective follows the order the trials ran in (Spearman ρ of start
    time against objective, |ρ| ≥ ``TREND_RHO`` over ``TREND_MIN_TRIALS`` complete trials or
    more): warm-up or drift of the machine, not the parameters, may explain the ranking.
    None when there is no such trend or it cannot be judged."""
    from scipy.stats import spearmanr

    done = sweep.trials[(sweep.trials["state"] == TrialState.COMPLETE.value)
                        & sweep.trials["objective"].notna()]
    if "started" not in done.columns or len(done) < TREND_MIN_TRIALS:
        return None
    started = pd.to_numeric(done["started"], errors="coerce")
    if started.isna().any() or done["objective"].nunique() < 2:
        return None
    rho = float(spearmanr(started, done["objective"]).statistic)
    if not abs(rho) >= TREND_RHO:
        return None
    way = "rose" if rho > 0 else "fell"
    return (f"the objective {way} with the order the trials ran in (Spearman ρ = {rho:+.2f} over "
            f"{len(done)} trials): warm-up or drift, not the parameters, may explain the ranking; "
            "use a longer warm-up or repetitions (the grid order is shuffled with its seed)")


def snapshot_flags(sweep: Sweep, records: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Per trial run: snapshot keys that differ from the first trial's run beyond the swept
    parameters (and the keys derived from them). Empty lists are left out."""
    records = sweep_records(sweep) if records is None else records
    if len(records) < 2:
        return {}
    swept = list(sweep.params)
    for group, keys in DERIVED_KEYS.items():
        if any(p.split(".")[0] == group for p in swept):
            swept += keys
    ids = list(records)
    base = records[ids[0]].cluster
    flags = {}
    for run_id in ids[1:]:
        diff = snapshot_diff(base, records[run_id].cluster, swept)
        if diff:
            flags[run_id] = diff
    return flags


def _fmt(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.4g}"


def ranking_table(sweep: Sweep, top: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the ranking (``top`` ranked trials, then the unranked)."""
    ranked = rank_trials(sweep)
    best = ranked["objective"].iloc[0] if len(ranked) and pd.notna(ranked["rank"].iloc[0]) else None
    noise = objective_noise(sweep)
    header = ["rank", "trial", *sweep.params, sweep.objective, "SLO", "state", "run", "note"]
    unsteady = _unsteady(sweep)
    rows = []
    shown = 0
    for _, series in ranked.iterrows():
        rank = series["rank"]
        if pd.notna(rank):
            shown += 1
            if top is not None and shown > top:
                continue
        params = trial_params(series, sweep.params)
        error = series.get("error")
        note = "" if error is None or pd.isna(error) else " ".join(str(error).split())[:160]
        if (noise is not None and best is not None and pd.notna(rank) and rank > 1
                and series["slo_ok"] and abs(series["objective"] - best) <= noise * abs(best)):
            note = f"tied with #1 (within the {noise:.1%} run-to-run noise)"
        if series["trial"] in unsteady:
            note = "; ".join(filter(None, (note, unsteady[series["trial"]])))
        rows.append([
            "" if pd.isna(rank) else str(int(rank)), str(series["trial"]),
            *(str(params.get(p, "")) for p in sweep.params),
            _fmt(series["objective"]),
            ("met" if series["slo_ok"] else "missed") if pd.notna(rank) else "",
            str(series["state"]), "" if pd.isna(series["run_id"]) else str(series["run_id"]), note,
        ])
    return header, rows


def _unsteady(sweep: Sweep) -> dict[int, str]:
    """Trial -> a flag saying how its runs were not steady (warming up, degrading:
    ``analysis.steady``); trials whose runs were all steady or unjudged are left out."""
    flagged = (SteadyVerdict.WARMING_UP.value, SteadyVerdict.DEGRADING.value)
    verdicts: dict[int, list[str]] = {}
    for row in sweep.rows:
        if row.steady in flagged:
            verdicts.setdefault(row.trial, []).append(row.steady)
    return {t: f"not steady: {', '.join(sorted(set(v)))}" for t, v in verdicts.items()}


def format_ranking(sweep: Sweep, top: int | None = 10) -> list[str]:
    """The best configuration and the ranking as lines (uses ``keyfigures.format_table``)."""
    best = best_trial(sweep)
    lines = [f"sweep {sweep.id} ({sweep.strategy}, {sweep.state}): {len(sweep.trials)} trials, "
             f"{sweep.direction} {sweep.objective}"]
    if best is None:
        lines.append("best configuration: none (no complete trial met the SLO)")
    else:
        lines.append(f"best configuration (trial {best['trial']}, {sweep.objective} "
                     f"{_fmt(best['objective'])}): "
                     f"{tune_apply_command(trial_params(best, sweep.params))}")
    header, rows = ranking_table(sweep, top)
    trend = order_trend(sweep)
    return lines + format_table(header, rows) + ([f"check: {trend}"] if trend else [])
