"""`eiperf sweep SPEC.toml`: run a tuning sweep with a progress bar, then rank its trials.

The engine is `tuning.sweep` (one process) and `tuning.sweep_shared` (`--storage`: an Optuna
study that `--join`ed workers share, each on its own cluster; `--sync` rewrites a folder from
it); this module is the edge: it reads the spec (bad spec: one line, exit 2, nothing created),
checks --resume/--join before the testbed starts, prints the plan for --dry-run, draws the rich
progress bar on stderr, and prints the ranked table and the best configuration as
`eiperf tune apply` arguments.
Exit codes: 0 complete, 1 no trial met the SLO, 2 error, 3 interrupted (resume it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.loading import load_sweep
from analysis.ranking import format_ranking
from eicore.errors import ConfigError
from eicore.results import SteadyVerdict, results_dir
from eicore.sweeps import SWEEP_JSON, SweepStatus, read_sweep_info, sweeps_root
from eicore.trials import tune_apply_command
from eiperf.context import resolve_cluster
from tuning.strategies import GridStrategy
from tuning.sweep import resumable, run_sweep
from tuning.sweep_shared import (
    check_grace,
    join_sweep,
    prepare_join,
    run_shared_sweep,
    sync_sweep,
)
from tuning.sweep_spec import SweepSpec, load_spec
from tuning.sweep_study import public_url, storage_url

EXIT_NO_TRIAL_MET_SLO = 1
EXIT_INCOMPLETE = 3


class RichSweepUI:
    """Progress bar on stderr: trial n/N, its parameters, the best so far, elapsed and ETA."""

    def __init__(self, objective: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.objective = objective
        self.console = Console(stderr=True, soft_wrap=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
            MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self.task = None
        self.reps = 1
        self._absolute = False  # a shared sweep counts every worker's trials (total_done)

    def start(self, sweep_id: str, total: int | None, done: int) -> None:
        self.console.print(f"sweep {sweep_id}: {total if total is not None else '?'} trial(s)"
                           + (f", {done} already finished" if done else ""))
        self.progress.start()
        self.task = self.progress.add_task("starting", total=total, completed=done, best="")

    def trial_started(self, proposal, repetition: int) -> None:
        shown = " ".join(f"{k}={v}" for k, v in proposal.params.items())
        rep = f" rep {repetition + 1}" if repetition else ""
        self.progress.update(self.task, description=f"trial {proposal.trial}{rep}: {shown}")

    def trial_finished(self, row, best) -> None:
        value = "-" if row.objective is None else f"{row.objective:.4g}"
        verdict = "" if row.slo_ok is None else (" SLO met" if row.slo_ok else " SLO BROKEN")
        why = f" ({row.error})" if row.error else ""
        if row.steady in (SteadyVerdict.WARMING_UP, SteadyVerdict.DEGRADING):
            why += f", not steady: {row.steady}"
        self.console.print(f"trial {row.trial}: {row.state.value}, {self.objective} {value}"
                           f"{verdict}{why}")
        best_text = "" if best is None else \
            f"best {self.objective} {best.objective:.4g} (trial {best.trial})"
        self.progress.update(self.task, advance=0 if self._absolute else 1, best=best_text)

    def total_done(self, done: int) -> None:
        self._absolute = True
        if self.task is not None:
            self.progress.update(self.task, completed=done)

    def note(self, message: str) -> None:
        if message.startswith("  "):  # the run's periodic "12/35 s, ... req/s" tick
            return
        self.console.print(f"  {message}", highlight=False)

    def stop(self) -> None:
        self.progress.stop()


def plan_lines(spec: SweepSpec) -> list[str]:
    """What a sweep would run, without running it (for --dry-run)."""
    load = spec.load
    per_run = load.total_seconds  # an automatic warm-up: its bound
    lines = [f"spec {spec.source}: strategy {spec.strategy}, seed {spec.seed}, "
             f"{spec.repetitions} repetition(s), objective {spec.objective.direction} "
             f"{spec.objective.metric}, SLO {', '.join(spec.slo) or 'none'}",
             f"load: {load.users} users, {load.shape}, "
             f"{', '.join(f'{k}={v}' for k, v in load.weights.items())}, "
             + (f"warm-up until stable (at most {load.warmup_max:g}s)" if load.warmup_auto
                else f"{load.warmup:g}s warm-up") + f" + {load.duration:g}s per run"]
    if spec.strategy == "grid":
        order = GridStrategy(spec).order
        lines.append(f"{len(order)} trial(s), in this order:")
        for i, config in enumerate(order):
            lines.append(f"  trial {i}: " + " ".join(f"{k}={v}" for k, v in config.items()))
        runs = len(order) * spec.repetitions
    else:
        lines.append("search space:")
        for name, axis in spec.parameters.items():
            lines.append(f"  {name}: {axis.as_data()}")
        runs = (spec.budget.trials or 0) * spec.repetitions
        lines.append(f"budget: {spec.budget.trials or 'no'} trial limit, "
                     f"{f'{spec.budget.time_s:g}s' if spec.budget.time_s else 'no'} time limit")
    if runs:
        lines.append(f"load time alone: {runs} run(s) x {per_run:g}s = {runs * per_run / 60:.1f} min "
                     "(plus apply/restart per trial)")
    lines.append("dry run: nothing was changed")
    return lines


def _shared(out: Path, sweep_id: str) -> bool:
    """Whether results/sweeps/ID is a shared sweep's folder (its sweep.json names a storage)."""
    folder = sweeps_root(out) / sweep_id
    return (folder / SWEEP_JSON).exists() and bool(read_sweep_info(folder).get("storage"))


def cmd_sweep(args: argparse.Namespace) -> int:
    # All input is checked before the testbed starts or anything is written: the spec, and for
    # --resume the sweep folder (there, not complete, not running elsewhere, the same spec);
    # for --join the storage and its study (there, not complete, the same spec).
    modes = [f"--{m}" for m in ("resume", "join", "sync") if getattr(args, m, None)]
    if len(modes) > 1:
        raise ConfigError(f"give one of --resume, --join and --sync, not {' and '.join(modes)}")
    if not args.spec and not modes:
        raise ConfigError("give a sweep spec file (e.g. sweeps/heap_gc.toml) or --resume <id>")
    out = results_dir(args.results)
    if args.sync:
        if args.spec:
            raise ConfigError("--sync takes no spec file: the storage holds the sweep's spec")
        return _sync(out, args)
    spec = load_spec(args.spec) if args.spec else None
    join = args.join or (args.resume if args.resume and _shared(out, args.resume) else None)
    study = stored = None
    if join:
        study = prepare_join(out, join, args.storage, spec)
        stored = study.spec
    elif args.resume:
        stored = resumable(out, args.resume, spec)[1]
    elif args.storage:
        storage_url(args.storage)
        check_grace(args.grace)
    shown = spec or stored
    assert shown is not None
    if args.dry_run:
        for line in plan_lines(shown):
            print(line)
        if study is not None:
            print(f"join: sweep {study.id} in {study.public_url}: {study.waiting()} trial(s) "
                  f"queued, {len(study.running())} running, {len(study.workers())} worker(s)")
        elif args.storage and not args.resume:
            print(f"shared through {public_url(storage_url(args.storage))}: other workers "
                  "--join it")
        return 0
    cluster = resolve_cluster(args)
    ui = RichSweepUI(shown.objective.metric)
    if study is not None:
        outcome = join_sweep(study, cluster, out, ui=ui)
    elif args.storage and not args.resume:
        assert spec is not None
        outcome = run_shared_sweep(spec, cluster, out, args.storage, grace_s=args.grace, ui=ui)
    else:
        outcome = run_sweep(spec, cluster, out, resume=args.resume, ui=ui)
    print()
    for line in format_ranking(load_sweep(outcome.path), top=None):
        print(line)
    print(f"\nsweep: {outcome.path}  ({outcome.status.value})")
    if outcome.status is SweepStatus.INCOMPLETE:
        again = "--join" if study is not None or (args.storage and not args.resume) \
            else "--resume"
        print(f"interrupted: the original settings are back; continue with "
              f"'eiperf sweep {again} {outcome.path.name}'")
        return EXIT_INCOMPLETE
    if outcome.best is None:
        print("no trial met the SLO" if shown.slo else "no trial completed")
        return EXIT_NO_TRIAL_MET_SLO
    print(f"best: trial {outcome.best.trial}, {shown.objective.metric} "
          f"{outcome.best.objective:.4g}; the original settings are back. To keep the best:")
    print(f"  {tune_apply_command(outcome.best.params)}")
    return 0


def _sync(out: Path, args: argparse.Namespace) -> int:
    """`--sync ID`: the folder rewritten from the storage, then its ranking."""
    path = sync_sweep(out, args.sync, args.storage)
    sweep = load_sweep(path)
    for line in format_ranking(sweep, top=None):
        print(line)
    print(f"\nsweep: {path}  ({sweep.state}; synced from {sweep.info.get('storage')})")
    return 0
