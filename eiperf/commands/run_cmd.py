"""`eiperf run`: one headless load test, a summary table, and SLO verdicts for CI.

Composes loadtests (the run and its result folder) with analysis (summary, SLOs): the
summary and SLO results are written into run.json once, when the run is final.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.record import record_figures
from analysis.slo import SloError, SloRule, parse_rules
from eicore.cluster import Cluster
from eicore.errors import ConfigError
from eicore.results import DoctorSummary, RunRecord, RunStatus, results_dir
from eiperf.cli import WEB_PORT
from eiperf.context import resolve_cluster
from loadtests.generators import WORKER_WAIT_S
from loadtests.profile import LoadProfile, parse_duration, parse_warmup
from loadtests.run import run_load_test
from tuning.doctor.diagnose import diagnose
from tuning.doctor.table import run_summary
from tuning.settings import cluster_settings

EXIT_SLO_BROKEN = 1
EXIT_INCOMPLETE = 3


def profile_from_args(args: argparse.Namespace) -> LoadProfile:
    warmup, auto = parse_warmup(args.warmup, "--warmup")
    bound = getattr(args, "warmup_max", None)
    if bound is not None and not auto:
        raise ConfigError("--warmup-max bounds an automatic warm-up: give it with --warmup auto")
    return LoadProfile.from_text(
        weights=args.weights, users=args.users,
        spawn_rate=float(args.spawn_rate or args.users),
        duration=parse_duration(args.duration, "--duration"),
        warmup=warmup, warmup_auto=auto, shape=args.shape,
        **({"warmup_max": parse_duration(bound, "--warmup-max")} if bound is not None else {}),
        step_users=args.step_users,
        step_time=parse_duration(args.step_time, "--step-time") if args.step_time else None,
        spike_users=args.spike_users, arrival_rate=args.arrival_rate,
        rate_profile=args.rate_profile, arrivals=args.arrivals,
        max_concurrency=args.max_concurrency,
        message_size=args.message_size,
        processes=args.workers,
    )


def slo_rules(texts: list[str] | None) -> list[SloRule]:
    """The --slo rules, checked; a bad one is a ConfigError naming it."""
    try:
        return parse_rules(texts or [])
    except SloError as e:
        raise ConfigError(str(e)) from None


def cmd_run(args: argparse.Namespace) -> int:
    profile = profile_from_args(args)  # bad input fails here, before anything starts
    if args.web_port is not None and not args.web:
        raise ConfigError("--web-port is the port of the live view: give it with --web")
    rules = slo_rules(args.slo)
    cluster = resolve_cluster(args)
    code, _ = execute_run(cluster, profile, results_dir(args.results), rules,
                          collect=not args.no_collect, interval=args.interval,
                          master_host=args.master_host, master_port=args.master_port,
                          worker_wait=args.worker_wait or WORKER_WAIT_S,
                          web_port=(args.web_port or WEB_PORT) if args.web else None,
                          doctor=None if args.no_doctor else preflight_checks(cluster))
    return code


def preflight_checks(cluster: Cluster) -> DoctorSummary:
    """`eiperf doctor` before the load (reads only; an unreadable host is a failed row), its
    one-line summary printed; what run.json records as `doctor`."""
    notes = run_summary(diagnose(cluster))
    c = notes["counts"]
    print(f"configuration checks: {c['ok']} ok, {c['warn']} warn, {c['fail']} fail"
          + (" (`eiperf doctor` shows them; recorded in run.json)" if notes["findings"] else ""),
          flush=True)
    return notes  # type: ignore[return-value]


def execute_run(cluster: Cluster, profile: LoadProfile, out_dir: Path,
                rules: list[SloRule] | None = None, *, collect: bool = True,
                interval: float = 1.0, master_host: str | None = None,
                master_port: int | None = None, worker_wait: float = WORKER_WAIT_S,
                web_port: int | None = None, doctor: DoctorSummary | None = None
                ) -> tuple[int, Path]:
    """Run into `out_dir`, print the summary and SLO verdicts; (exit code, result folder).
    `eiperf run` and `eiperf demo` both run through it; `doctor`: the configuration checks
    to record (`preflight_checks`)."""
    rules = rules or []
    printed: list[str] = []

    def finalize(run_dir: Path, record: RunRecord) -> RunRecord:
        if record.generator.get("requests", 0) == 0:
            return record
        record, lines = record_figures(run_dir, record, rules)
        printed.extend(lines)
        return record

    outcome = run_load_test(cluster, profile, out_dir, slo=[r.text for r in rules],
                            finalize=finalize, settings=cluster_settings,
                            progress=lambda m: print(m, flush=True), collect=collect,
                            interval=interval, master_host=master_host,
                            master_port=master_port, worker_wait=worker_wait,
                            web_port=web_port, preflight_notes=doctor)
    rec = outcome.record
    print()
    for line in printed:
        print(line)
    print(f"\nresult: {outcome.run_dir}  ({rec.status.value})")
    if rec.status is RunStatus.FAILED:
        print(f"run failed: {rec.error}")
        return 2, outcome.run_dir
    if rec.status is RunStatus.INCOMPLETE:
        print(f"run incomplete: {rec.error}")
        return EXIT_INCOMPLETE, outcome.run_dir
    broken = [r for r in rec.slo_results if not r["ok"]]
    if broken:
        print("SLO broken: " + ", ".join(f"{r['rule']} ({r['verdict']})" for r in broken))
        return EXIT_SLO_BROKEN, outcome.run_dir
    return 0, outcome.run_dir
