"""The ranking of a sweep's trials, its best configuration, and its consistency checks.

Ranking: complete trials that met the SLO, best objective first (the sweep's direction); then
complete trials that missed the SLO; failed, skipped and running trials are listed unranked
(a failed trial shows its error, e.g. the JVM refusing a flag). Repetitions of a trial are
merged first (``trial_table``).
The best configuration is the first ranked trial that met the SLO, given as the arguments of
``eiperf tune apply``. Trials repeated with the same parameters give the run-to-run noise of the
objective (``analysis.compare.noise_estimate``); trials within that noise of the best are tied.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.compare import noise_estimate, snapshot_diff
from analysis.loading import PARAM_PREFIX, Sweep, sweep_records

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


def trial_table(sweep: Sweep) -> pd.DataFrame:
    """One row per trial, its repetitions merged: objective = mean over complete repetitions,
    slo_ok = every complete repetition met the SLO, state = complete when one repetition
    completed (else the first repetition's), run_id = the first complete repetition's run,
    ``repetitions`` = how many rows the trial has, ``error`` = the first error seen."""
    trials = sweep.trials
    if "repetition" not in trials.columns or trials["trial"].is_unique:
        out = trials.copy()
        out["repetitions"] = 1
        return out
    rows = []
    for _, group in trials.groupby("trial", sort=True):
        done = group[group["state"] == "complete"]
        first = (done if len(done) else group).iloc[0].copy()
        if len(done):
            first["objective"] = done["objective"].mean()
            first["slo_ok"] = bool(done["slo_ok"].all())
        first["repetitions"] = len(group)
        if "error" in group.columns and group["error"].notna().any():
            first["error"] = group["error"].dropna().iloc[0]
        rows.append(first)
    return pd.DataFrame(rows).reset_index(drop=True)


def rank_trials(sweep: Sweep) -> pd.DataFrame:
    """Trials (repetitions merged, ``trial_table``) in ranking order with a ``rank`` column
    (NA for unranked trials)."""
    trials = trial_table(sweep)
    complete = (trials["state"] == "complete") & trials["objective"].notna()
    ascending = sweep.direction == "minimize"
    key = trials["objective"] if ascending else -trials["objective"]
    trials["_group"] = np.where(complete & trials["slo_ok"], 0, np.where(complete, 1, 2))
    trials["_key"] = key.fillna(np.inf)
    trials = trials.sort_values(["_group", "_key", "trial"], kind="stable")
    ranked = trials["_group"] < 2
    trials["rank"] = pd.array([pd.NA] * len(trials), dtype="Int64")
    trials.loc[ranked, "rank"] = np.arange(1, int(ranked.sum()) + 1)
    return trials.drop(columns=["_group", "_key"]).reset_index(drop=True)


def best_trial(sweep: Sweep) -> pd.Series | None:
    """The best complete trial that met the SLO, or None."""
    ranked = rank_trials(sweep)
    best = ranked[(ranked["state"] == "complete") & ranked["slo_ok"] & ranked["rank"].notna()]
    return None if best.empty else best.iloc[0]


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tune_apply_args(params: Mapping[str, Any]) -> list[str]:
    """``--set name=value`` arguments of ``eiperf tune apply`` for a parameter set."""
    args: list[str] = []
    for name, value in params.items():
        args += ["--set", f"{name}={_cli_value(value)}"]
    return args


def tune_apply_command(params: Mapping[str, Any]) -> str:
    """The whole ``eiperf tune apply`` command line, shell-quoted."""
    return shlex.join(["eiperf", "tune", "apply", *tune_apply_args(params)])


def objective_noise(sweep: Sweep) -> float | None:
    """Largest run-to-run spread of the objective over repeated parameter sets, or None."""
    done = sweep.trials[(sweep.trials["state"] == "complete") & sweep.trials["objective"].notna()]
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

    done = sweep.trials[(sweep.trials["state"] == "complete") & sweep.trials["objective"].notna()]
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
        rows.append([
            "" if pd.isna(rank) else str(int(rank)), str(series["trial"]),
            *(str(params.get(p, "")) for p in sweep.params),
            _fmt(series["objective"]),
            ("met" if series["slo_ok"] else "missed") if series["state"] == "complete" else "",
            str(series["state"]), "" if pd.isna(series["run_id"]) else str(series["run_id"]), note,
        ])
    return header, rows


def format_ranking(sweep: Sweep, top: int | None = 10) -> list[str]:
    """The best configuration and the ranking as lines (uses ``keyfigures.format_table``)."""
    from analysis.keyfigures import format_table

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
