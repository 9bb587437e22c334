"""The steady-state check: the statistic on synthetic series (checked against scipy and by
hand), its place in the summary, run.json and sweep rows, and real runs on the testbed whose
shape makes the answer certain (a step that doubles the users; a constant load)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from analysis.loading import load_sweep
from analysis.ranking import ranking_table
from analysis.record import summary_record
from analysis.steady import (
    MAX_BINS,
    MIN_BINS,
    bin_width,
    check_steady,
    mann_kendall,
    sen_slope,
    steady_state,
)
from analysis.summary import check_summary, format_summary, summarize_requests
from eicore.results import SteadyStateRecord, SteadyVerdict, read_run_record
from eicore.sweeps import TrialRow, TrialState, read_trials, write_trials
from tests.analysis.conftest import T0, eiperf_cli
from tests.analysis.results_fixture import write_sweep

STEADY, WARMING, DEGRADING, UNKNOWN = (SteadyVerdict.STEADY, SteadyVerdict.WARMING_UP,
                                        SteadyVerdict.DEGRADING, SteadyVerdict.UNKNOWN)


def synthetic(duration: float, rate, latency_ms=lambda t: 5.0 + 0 * t, seed: int = 0):
    """(ts, latency_us, ok) of a Poisson stream of ``rate(t)`` requests/s over ``duration`` s
    from T0, each with a lognormal latency around ``latency_ms(t)``."""
    rng = np.random.default_rng(seed)
    step = 0.01
    grid = np.arange(0.0, duration, step)
    counts = rng.poisson(rate(grid) * step)
    t = np.repeat(grid, counts) + rng.uniform(0.0, step, counts.sum())
    latency = rng.lognormal(np.log(latency_ms(t) * 1000.0), 0.3).astype(np.int64)
    return T0 + t, latency, np.ones(t.size, dtype=bool)


def verdict_of(duration: float, rate, latency_ms=lambda t: 5.0 + 0 * t, seed: int = 0):
    ts, lat, ok = synthetic(duration, rate, latency_ms, seed)
    return steady_state(ts, lat, ok, (T0, T0 + duration))


# -- the statistic -----------------------------------------------------------------------------


def brute_s(y: list[float]) -> int:
    return sum(int(np.sign(y[j] - y[i])) for i in range(len(y)) for j in range(i + 1, len(y)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_mann_kendall_matches_brute_force_and_scipy(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1, 40) + np.linspace(0, 0.8, 40)
    if ties:
        y = np.round(y * 2) / 2  # many tied values, as integer counts per bin give
    mk = mann_kendall(y)
    assert mk.s == brute_s(list(y))
    # Kendall's tau against time, asymptotic: z = S / sqrt(Var S) with the same tie correction
    # (no continuity correction: undo ours to compare)
    z_plain = mk.s / math.sqrt(mk.var_s)
    ref = stats.kendalltau(np.arange(y.size), y, method="asymptotic")
    assert math.erfc(abs(z_plain) / math.sqrt(2)) == pytest.approx(ref.pvalue, rel=1e-9)
    assert mk.p >= ref.pvalue  # the continuity correction is conservative


def test_mann_kendall_by_hand() -> None:
    mk = mann_kendall(np.arange(10.0))  # S = 45, Var = 10*9*25/18 = 125
    assert (mk.s, mk.var_s) == (45, 125.0)
    assert mk.z == pytest.approx(44 / math.sqrt(125))
    assert mk.p == pytest.approx(math.erfc(44 / math.sqrt(125) / math.sqrt(2)))
    assert mann_kendall(np.array([3.0, 3.0, 3.0, 3.0])).p == 1.0  # all tied: no evidence
    assert mann_kendall(np.array([1.0, 2.0])).p == 1.0  # too short
    assert mann_kendall(np.array([1.0, np.nan, 2.0, 3.0])).s == 3  # NaN left out


@pytest.mark.parametrize("seed", range(3))
def test_sen_slope_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 30, 50))
    y = 3.0 * x + rng.standard_cauchy(50)  # heavy tails: the median slope stays near 3
    assert sen_slope(x, y) == pytest.approx(stats.theilslopes(y, x).slope)
    assert sen_slope(x, y) == pytest.approx(3.0, abs=0.5)
    assert math.isnan(sen_slope(np.array([1.0]), np.array([2.0])))


@pytest.mark.parametrize("duration, count, bins, width", [
    (30.0, 30_000, 30, 1.0),       # 1 s bins
    (4.0, 4_000, 20, 0.2),         # a short run still gets 20 bins
    (3600.0, 10**6, MAX_BINS, 12.0),  # a long one at most MAX_BINS
    (10.0, 150, 15, 10 / 15),      # widened to >= 10 expected requests a bin
    (5.0, 60, 6, 5 / 6),           # too few requests: fewer than MIN_BINS bins
    (0.0, 10, 0, 0.0),
])
def test_bin_width(duration: float, count: int, bins: int, width: float) -> None:
    n, w = bin_width(duration, count)
    assert n == bins and w == pytest.approx(width)


# -- verdicts on synthetic runs ------------------------------------------------------------------


@pytest.mark.parametrize("name, duration, rate, latency, verdict", [
    ("throughput rising 500 -> 1000", 30.0, lambda t: 500 + t * 500 / 30, None, WARMING),
    ("throughput falling 1000 -> 500", 30.0, lambda t: 1000 - t * 500 / 30, None, DEGRADING),
    ("users doubled mid-window", 6.0, lambda t: np.where(t < 3, 400.0, 800.0), None, WARMING),
    ("latency falling 10 -> 5 ms", 20.0, lambda t: 600.0 + 0 * t, lambda t: 10 - t / 4,
     WARMING),
    ("latency rising 5 -> 10 ms", 20.0, lambda t: 600.0 + 0 * t, lambda t: 5 + t / 4,
     DEGRADING),
    ("flat with noise", 30.0, lambda t: 800.0 + 0 * t, None, STEADY),
    ("flat, a short run", 4.0, lambda t: 800.0 + 0 * t, None, STEADY),
])
def test_verdicts(name, duration, rate, latency, verdict) -> None:
    state = verdict_of(duration, rate, latency or (lambda t: 5.0 + 0 * t))
    assert state.verdict is verdict, (name, state)
    if verdict is not STEADY:
        assert check_steady(state) is not None
        assert ("warming up" if verdict is WARMING else "degrading") in check_steady(state)
    else:
        assert check_steady(state) is None


def test_flat_noise_is_steady_for_every_seed() -> None:
    """False alarms: a flat Poisson stream with lognormal latency is never flagged."""
    verdicts = [verdict_of(30.0, lambda t: 300.0 + 0 * t, seed=s).verdict for s in range(30)]
    assert set(verdicts) == {STEADY}


def test_a_significant_but_small_drift_is_steady() -> None:
    """10 minutes rising 4 %: Mann-Kendall finds it, the relevance rule (10 %) keeps it."""
    state = verdict_of(600.0, lambda t: 1000 + t * 40 / 600)
    assert state.throughput.test.p < 0.05
    assert 0.02 < state.throughput.change < 0.06
    assert state.verdict is STEADY


@pytest.mark.parametrize("duration, rate", [
    (10.0, lambda t: 4.0 + 0 * t),  # ~40 requests: 4 bins of 10
    (5.0, lambda t: 12.0 + 0 * t),  # ~60 requests: 6 bins
])
def test_too_few_bins_is_unknown(duration, rate) -> None:
    state = verdict_of(duration, rate)
    assert state.bins < MIN_BINS and state.verdict is UNKNOWN
    assert state.throughput is None and "needed" in state.reason
    assert "cannot be judged" in check_steady(state)
    record = state.record()
    assert record["verdict"] == "unknown" and record["p_throughput"] is None
    json.dumps(record, allow_nan=False)


def test_empty_window_is_unknown() -> None:
    ts, lat, ok = synthetic(10.0, lambda t: 100.0 + 0 * t)
    assert steady_state(ts, lat, ok, (T0 + 100, T0 + 110)).verdict is UNKNOWN
    assert steady_state(ts[:1], lat[:1], ok[:1]).verdict is UNKNOWN


def test_record_is_the_declared_shape_and_json_safe() -> None:
    record = verdict_of(30.0, lambda t: 500 + t * 500 / 30).record()
    assert set(record) == set(get_type_hints(SteadyStateRecord))
    assert record["verdict"] == "warming up" and record["throughput_slope_pct"] > 50
    assert 0 <= record["p_throughput"] < 0.05
    assert "Mann-Kendall" in record["method"] and "30 bins of 1 s" in record["method"]
    json.dumps(record, allow_nan=False)


# -- in the summary, run.json and sweep rows ---------------------------------------------------


def frame(ts, latency, ok):
    import pandas as pd

    n = ts.size
    return pd.DataFrame({"ts": ts, "scenario": "soap_http", "name": "/services/SampleProxy",
                         "latency_us": latency, "bytes": 300, "status": 200, "ok": ok,
                         "error": None, "node": np.where(np.arange(n) % 2, "node1", "node2")})


def test_summary_lines_checks_and_record() -> None:
    requests = frame(*synthetic(30.0, lambda t: 500 + t * 500 / 30))
    summary = summarize_requests(requests, (T0, T0 + 30.0))
    assert summary.steady.verdict is WARMING
    lines = format_summary(summary)
    assert any(line.startswith("steady state: warming up: change over the window (of the "
                               "median) throughput +")
               for line in lines)
    assert any("still warming up" in c and "--warmup auto" in c for c in check_summary(summary))
    assert summary_record(summary, None)["steady_state"]["verdict"] == "warming up"

    flat = summarize_requests(frame(*synthetic(30.0, lambda t: 500 + 0 * t)))
    assert flat.steady.verdict is STEADY
    assert not any("steady" in c for c in check_summary(flat))


def test_trials_keep_the_verdict_and_old_folders_read_none(tmp_path: Path) -> None:
    rows = [TrialRow(0, 0, TrialState.COMPLETE, {"jvm.xmx": "1g"}, run_id="r0", objective=1.0,
                     steady="warming up"),
            TrialRow(1, 0, TrialState.COMPLETE, {"jvm.xmx": "2g"}, run_id="r1", objective=2.0)]
    path = tmp_path / "trials.parquet"
    write_trials(path, rows, ["jvm.xmx"])
    assert [r.steady for r in read_trials(path)] == ["warming up", None]
    old = pq.read_table(path).drop_columns(["steady"])
    pq.write_table(old, path)
    assert [r.steady for r in read_trials(path)] == [None, None]


def test_ranking_flags_a_trial_that_was_not_steady(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path)  # a folder written before the column existed
    assert "steady" not in pq.read_schema(sweep_dir / "trials.parquet").names
    header, rows = ranking_table(load_sweep(sweep_dir))
    assert not any("not steady" in r[-1] for r in rows)

    table = pq.read_table(sweep_dir / "trials.parquet")
    verdicts = ["degrading" if t == 2 else "steady" for t in table.column("trial").to_pylist()]
    pq.write_table(table.append_column("steady", pa.array(verdicts, pa.string())),
                   sweep_dir / "trials.parquet")
    header, rows = ranking_table(load_sweep(sweep_dir))
    notes = {r[1]: r[-1] for r in rows}
    assert "not steady: degrading" in notes["2"]
    assert not any("not steady" in n for t, n in notes.items() if t != "2")


# -- real runs ----------------------------------------------------------------------------------

#: The delayed proxy answers after 200 ms: throughput is users / 0.2 s whatever the machine
#: does, so a step from 10 to 20 users doubles it and a constant 10 users holds it.
DELAYED = ("--weights", "delayed=1", "--no-collect", "--warmup", "0", "-t", "6s")


@pytest.mark.parametrize("shape, verdict", [
    (("--shape", "step", "-u", "20", "--step-users", "10", "--step-time", "3s"), WARMING),
    (("--shape", "constant", "-u", "10"), STEADY),
], ids=["step-doubles-users", "constant"])
def test_real_run_records_its_steady_state(testbed, tmp_path, shape, verdict) -> None:
    results = tmp_path / "results"
    r = eiperf_cli("run", "--cluster", testbed.source, "--out", str(results), *DELAYED, *shape)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run,) = results.iterdir()
    steady = read_run_record(run).summary["steady_state"]
    assert steady["verdict"] == verdict.value, steady
    assert f"steady state: {verdict.value}" in r.stdout
    if verdict is WARMING:
        # Sen's slope of an ideal doubling in the middle is ~+77 % of the median here (64..91 %
        # measured); 27.8 % was seen once in a full suite: the bound guards sign and scale
        assert steady["throughput_slope_pct"] > 15 and steady["p_throughput"] < 0.05
        assert "check: not steady, still warming up: throughput rose" in r.stdout
    else:
        assert abs(steady["throughput_slope_pct"]) < 10
        assert "not steady" not in r.stdout


def test_sweep_flags_a_trial_whose_run_was_not_steady(testbed, tmp_path) -> None:
    spec = tmp_path / "step.toml"
    spec.write_text('[parameters]\n"nginx.proxy_read_timeout" = ["30s"]\n'
                    '[load]\nscenario = {delayed = 1}\nshape = "step"\nusers = 20\n'
                    'step_users = 10\nstep_time = "3s"\nduration = "6s"\nwarmup = "0s"\n')
    results = tmp_path / "results"
    r = eiperf_cli("sweep", str(spec), "--cluster", testbed.source, "--out", str(results))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (row,) = read_trials(next(results.glob("sweeps/*/trials.parquet")))
    assert row.steady == "warming up"
    assert "not steady: warming up" in r.stdout  # the ranking's note
    assert "not steady: warming up" in r.stderr  # the live line of the trial
