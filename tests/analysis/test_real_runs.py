"""Analysis of short real runs on the testbed: summaries against an independent recomputation
from requests.parquet, comparison verdicts, the knee of a step run and the report in Chromium
(the notebooks run through `eiperf notebook`: tests/eiperf/test_notebooks.py)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analysis.capacity import find_knee
from analysis.keyfigures import key_figures, repetition_noise, run_figures
from analysis.loading import load_run, users_timeline
from analysis.planning import plan_capacity, run_littles_law
from analysis.summary import summarize_metrics, summarize_requests
from tests.analysis.chromium import render
from tests.analysis.conftest import eiperf_cli


def nearest_rank(sorted_values: list[int], tenths_of_percent: int) -> int:
    """x(k), k = ceil(p/100 · n), in integer arithmetic (p given in tenths of a percent)."""
    k = max(1, -(-tenths_of_percent * len(sorted_values) // 1000))
    return sorted_values[k - 1]


def test_summary_matches_an_independent_recomputation_from_parquet(real_runs):
    run_dir = real_runs.repeats[0]
    record = json.loads((run_dir / "run.json").read_text())
    start, end = record["measure_start"], record["measure_end"]
    rows = pq.read_table(run_dir / "requests.parquet").to_pylist()  # plain Python from here
    inside = [r for r in rows if start <= r["ts"] < end]
    ok = sorted(r["latency_us"] for r in inside if r["ok"])
    assert len(inside) > 200 and len(rows) > len(inside)  # warm-up rows exist and are left out

    run = load_run(run_dir)
    summary = summarize_requests(run.requests, run.window)
    assert summary.count == len(inside)
    assert summary.ok_count == len(ok)
    assert summary.throughput_rps == pytest.approx(len(inside) / (end - start), rel=1e-12)
    for percentile, tenths in ((50.0, 500), (90.0, 900), (95.0, 950), (99.0, 990),
                               (99.9, 999)):
        assert summary.percentiles_ms[percentile] == nearest_rank(ok, tenths) / 1000
    assert summary.max_ms == ok[-1] / 1000
    counts = Counter(r["node"] for r in inside)
    assert set(summary.nodes) == set(counts) == {"node1", "node2"}
    for node, n in counts.items():
        assert summary.nodes[node].count == n
        mine = sorted(r["latency_us"] for r in inside if r["ok"] and r["node"] == node)
        assert summary.nodes[node].p95_ms == nearest_rank(mine, 950) / 1000
    # and eiperf run's own summary in run.json says the same
    assert record["summary"]["percentiles_ms"]["p99"] == summary.p99_ms

    # 4 users, one request each at a time: X·R is at most 4, plus the part of requests started
    # in the window that ran past its end (at most the longest latency)
    law = run_littles_law(run, summary)
    edge = summary.max_ms / 1000 / summary.duration_s
    assert 0 < law.in_flight <= 4 * (1 + edge) and law.users == 4

    metrics = summarize_metrics(run.metrics, run.window)
    for node in ("node1", "node2"):
        # JMX heap maximum is what integrator.sh's -Xmx1024m set
        assert metrics.nodes[node].heap_max_bytes == 1024 * 2**20
        assert metrics.nodes[node].cpu_percent_mean > 0


def verdicts(stdout: str) -> dict[tuple[str, str], str]:
    """(figure, run id) -> verdict from eiperf compare's plain table."""
    out = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 3 and cells[0] in ("throughput", "p50", "p95", "p99"):
            out[(cells[0], cells[1])] = " ".join(cells[-2:]) if cells[-1] == "noise" \
                else cells[-1]
    return out


def test_same_configuration_is_within_noise_and_the_delayed_proxy_is_slower(real_runs):
    repeats = [run_figures(load_run(p)) for p in real_runs.repeats]
    noise = repetition_noise(repeats)
    assert noise is not None and noise.median is not None and len(noise.runs) == 3

    a, b, delayed = (p.name for p in (real_runs.a, real_runs.b, real_runs.delayed))
    same = eiperf_cli("compare", a, b, "--noise", f"{noise.median:.4f}",
                      "--results", str(real_runs.results))
    assert same.returncode == 0, same.stderr
    assert verdicts(same.stdout)[("p50", b)] == "within noise", same.stdout

    slower = eiperf_cli("compare", a, delayed, "--noise", f"{noise.median:.4f}",
                        "--results", str(real_runs.results))
    assert slower.returncode == 0, slower.stderr
    table = verdicts(slower.stdout)
    assert table[("p50", delayed)] == "slower" and table[("p95", delayed)] == "slower"
    p50 = next(line for line in slower.stdout.splitlines()
               if line.startswith("p50") and delayed in line)
    assert float(p50.split()[4].lstrip("×")) > 10  # 200 ms backend delay against a few ms


def test_repeated_runs_given_together_measure_their_own_noise(real_runs):
    figures = key_figures([run_figures(load_run(p)) for p in
                           (*real_runs.repeats, real_runs.delayed)])
    assert figures.noise is not None and len(figures.noise.runs) == 3
    assert any(n.startswith("run-to-run noise measured on 3 runs") for n in figures.notes)
    delayed = figures.comparisons[real_runs.delayed.name]
    assert delayed.verdict.value == "slower"


def independent_steps(run_dir: Path, settle_s: float) -> list[tuple[float, float]]:
    """(users, ok requests/s) per step from timeline.json's shape and requests.parquet."""
    timeline = json.loads((run_dir / "timeline.json").read_text())
    shape, start = timeline["shape"], timeline["test_start"]
    rows = pq.read_table(run_dir / "requests.parquet", columns=["ts", "ok"]).to_pylist()
    end = json.loads((run_dir / "run.json").read_text())["measure_end"]
    out = []
    k = 0
    while k * shape["step_time"] < shape["duration"]:
        users = min(shape["max_users"], (k + 1) * shape["step_users"])
        lo = start + k * shape["step_time"] + settle_s
        hi = min(start + (k + 1) * shape["step_time"], end)
        if hi > lo:
            n = sum(1 for r in rows if r["ok"] and lo <= r["ts"] < hi)
            out.append((float(users), n / (hi - lo)))
        k += 1
    return out


def test_knee_of_a_real_step_run(real_runs):
    run = load_run(real_runs.step)
    timeline = users_timeline(run)
    assert timeline["users"].tolist() == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    plan = plan_capacity(run, settle_s=0.2)
    mine = independent_steps(real_runs.step, settle_s=0.2)
    assert [u for u, _ in mine] == plan.steps["users"].tolist()
    for (_, x), got in zip(mine, plan.steps["throughput"], strict=True):
        assert got == pytest.approx(x, rel=1e-9)
    # One Locust process on two shared cores cannot keep adding ~X(2)/2 req/s per user up to 12
    # users: throughput stops rising, and the knee is the step before that.
    knee = plan.knee
    assert knee.reached and knee.index is not None, (knee, mine)
    slope0 = mine[0][1] / mine[0][0]
    trigger = knee.trigger_index
    gain = (mine[trigger][1] - mine[trigger - 1][1]) / (mine[trigger][0] - mine[trigger - 1][0])
    assert gain < 0.2 * slope0
    for i in range(1, trigger):  # every step before it still rose enough
        g = (mine[i][1] - mine[i - 1][1]) / (mine[i][0] - mine[i - 1][0])
        assert g >= 0.2 * slope0
    assert knee.users == mine[trigger - 1][0]
    # an SLO below the first step's p95 puts the knee nowhere; one above every step leaves the
    # throughput criterion in charge
    assert find_knee(plan.steps, slo_p95_ms=plan.steps["p95_ms"].iloc[0] / 2).index is None
    assert find_knee(plan.steps, slo_p95_ms=1e9).users == knee.users
    assert plan.fit is not None and math.isfinite(plan.fit.sigma)


def test_report_of_real_runs_renders_in_chromium(real_runs, tmp_path):
    out = tmp_path / "real.html"
    r = eiperf_cli("report", str(real_runs.repeats[0]), str(real_runs.delayed),
                   str(real_runs.step), "-o", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    for needed in ("<strong>Over time.</strong>", "CPU per node", "Throughput against users",
                   "jvm_runtime",
                   "-Xmx1024m", "slower"):
        assert needed in html, needed
    rendering = render(out, tmp_path / "chromium", height=2500)
    assert rendering.console_messages() == []
    assert rendering.dom.count("<img") == html.count('src="data:image/svg+xml;base64,')


def test_no_step_timeline_means_no_plan(real_runs):
    assert plan_capacity(load_run(real_runs.a)) is None


SWEEP_SPEC = """
strategy = "grid"
seed = 1
repetitions = 1
slo = ["p95<2s"]

[parameters]
"nginx.lb_method" = ["round_robin", "least_conn"]

[load]
scenario = {soap_http = 1}
users = 4
duration = "3s"
warmup = "1s"

[objective]
metric = "p95_ms"
direction = "minimize"
"""


def test_report_of_a_real_sweep(testbed, tmp_path):
    """The sweep engine's own output (sweep.json, trials.parquet, run folders) is read by the
    report: ranking, best configuration, no configuration flagged beyond the swept one."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SWEEP_SPEC)
    results = tmp_path / "results"
    r = eiperf_cli("sweep", str(spec), "--cluster", str(testbed.source), "--out", str(results),
                   timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (sweep_dir,) = (results / "sweeps").iterdir()
    from analysis.loading import load_sweep
    from analysis.ranking import best_trial, snapshot_flags

    sweep = load_sweep(sweep_dir)
    assert sweep.state == "complete" and sweep.params == ("nginx.lb_method",)
    assert (sweep.direction, sweep.objective) == ("minimize", "p95_ms")
    best = best_trial(sweep)
    assert int(best["trial"]) == sweep.info["best"]["trial"]
    assert snapshot_flags(sweep) == {}
    out = tmp_path / "sweep.html"
    r = eiperf_cli("report", sweep_dir.name, "--results", str(results), "-o", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert f"eiperf tune apply --set nginx.lb_method={best['param.nginx.lb_method']}" in html
    assert f'id="run-{best["run_id"]}"' in html  # the best trial's run is in the report
    rendering = render(out, tmp_path / "chromium", height=2000)
    assert rendering.console_messages() == []
