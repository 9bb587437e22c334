"""`--warmup auto`: the pure decision (on series shaped like real ones, and by hand), the
profile, spec and option wiring, and real runs on the testbed that record how long their
warm-up took, within its bound."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from eicore.errors import ConfigError
from eicore.results import read_run_record
from loadtests.profile import LoadProfile, parse_warmup
from loadtests.warmup import (
    DEFAULT_WARMUP_MAX_S,
    WarmupRule,
    complete_seconds,
    decide,
    stability,
)
from tests.loadtests.conftest import ROOT, eiperf
from tuning.sweep_spec import SpecError, parse_spec_data

LOCUSTFILE = str(ROOT / "loadtests" / "locustfile.py")
#: Requests per second of a fresh two-node testbed under 8 users (measured here: the JVMs
#: warm up for ~20 s, then hold ~1,100-1,300 req/s with the noise of a shared 2-core machine).
FRESH_JVMS = [45, 60, 83, 65, 66, 141, 294, 356, 332, 362, 495, 583, 928, 817, 750, 406, 575,
              533, 751, 959, 1262, 1096, 1261, 1012, 1090, 1111, 1159, 1230, 1232, 1216, 1022,
              1349, 1506, 1118, 505, 1107, 1031, 980, 1061, 1105, 1656, 1571, 1663, 1019, 861]
#: The same testbed, warm: steady around 1,400 req/s, CV ~10 %.
WARM_JVMS = [1034, 1278, 1561, 1549, 1391, 1456, 1454, 1261, 1537, 1467, 1599, 1614, 1412,
             1476, 1395, 1429, 928, 1119, 1414, 1415, 1454, 1253, 1225, 1313, 1250, 1322]


def first_decision(series: list[int], rule: WarmupRule | None = None):
    """(seconds into the test, decision) as the locustfile would see them, once a second."""
    rule = rule or WarmupRule()
    for now in range(1, len(series) + 1):
        decision = decide(series[:now], float(now), rule)
        if decision is not None:
            return now, decision
    return None, None


def test_fresh_jvms_warm_up_until_the_ramp_is_over() -> None:
    at, decision = first_decision(FRESH_JVMS)
    assert decision.stable and at >= 20  # not while the JVMs still speed up
    after = FRESH_JVMS[at:at + 15]
    assert min(after[:5]) > 0.8 * (sum(after) / len(after))
    assert decision.cv <= 0.10 and decision.drift <= 0.10


def test_warm_jvms_end_the_warm_up_in_seconds() -> None:
    at, decision = first_decision(WARM_JVMS)
    assert decision.stable and at <= 10


def test_the_bound_ends_a_warm_up_that_never_settles() -> None:
    rising = [100 * (i + 1) for i in range(30)]
    at, decision = first_decision(rising, WarmupRule(max_s=12))
    assert at == 12 and not decision.stable
    assert decision.drift > 0.10  # what kept it going
    idle = [0] * 20
    at, decision = first_decision(idle, WarmupRule(max_s=8))
    assert at == 8 and not decision.stable and decision.mean_rps == 0  # no requests: not steady


def test_stability_by_hand() -> None:
    assert stability([100, 100, 100, 100, 100]) == (0.0, 0.0, 100.0)
    cv, drift, mean = stability([80, 90, 100, 110, 120])
    assert mean == 100 and drift == pytest.approx(0.30)  # (115 - 85) / 100, middle left out
    assert cv == pytest.approx(math.sqrt(250) / 100)
    assert all(math.isnan(v) for v in stability([5]))
    assert decide([100] * 4, 3.0, WarmupRule()) is None  # fewer samples than the window


def test_complete_seconds() -> None:
    counts = {100: 7, 101: 10, 102: 12, 104: 9, 105: 3}
    # second 100 was only partly under load; 103 had no requests; 105 is not over at 105.2
    assert complete_seconds(counts, 100.3, 105.2) == [10, 12, 0, 9]
    assert complete_seconds(counts, 100.3, 105.2, lag=2.0) == [10, 12]
    assert complete_seconds(counts, 100.3, 100.9) == []


def test_rule_is_checked() -> None:
    with pytest.raises(ValueError, match="2 or more"):
        WarmupRule(window=1)
    with pytest.raises(ValueError, match="positive"):
        WarmupRule(max_s=0)


# -- the profile, the spec and the options -------------------------------------------------------


def test_profile_asks_locust_for_the_bound_plus_the_duration() -> None:
    p = LoadProfile(duration=2.5, warmup_auto=True, warmup_max=20.0)
    assert p.total_seconds == 22.5
    args = p.locust_args()
    assert args[args.index("-t") + 1] == "23s"  # rounded up: never less than asked
    assert args[args.index("--warmup") + 1] == "auto"
    assert args[args.index("--warmup-max") + 1] == "20"
    fixed = LoadProfile(duration=3.0, warmup=2.0).locust_args()
    assert fixed[fixed.index("--warmup") + 1] == "2" and "--warmup-max" not in fixed
    assert LoadProfile().warmup_max == DEFAULT_WARMUP_MAX_S


@pytest.mark.parametrize("text, expected", [("auto", (0.0, True)), (" AUTO ", (0.0, True)),
                                            ("5s", (5.0, False)), ("1m", (60.0, False))])
def test_parse_warmup(text, expected) -> None:
    assert parse_warmup(text) == expected


def test_parse_warmup_refuses_other_text() -> None:
    with pytest.raises(ConfigError, match="--warmup 'soon' is neither a duration nor auto"):
        parse_warmup("soon")


def spec(load: str) -> dict:
    return tomllib.loads('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nusers = 2\n'
                        'duration = "2s"\n' + load)


def test_spec_takes_auto_and_survives_sweep_json() -> None:
    parsed = parse_spec_data(spec('warmup = "auto"\nwarmup_max = "30s"\n'), "auto.toml")
    assert parsed.load.warmup_auto and parsed.load.warmup_max == 30.0
    again = parse_spec_data(json.loads(json.dumps(parsed.as_data())), "auto.toml")
    assert again.load == parsed.load
    fixed = parse_spec_data(spec('warmup = "1s"\n'), "fixed.toml")
    assert not fixed.load.warmup_auto
    assert parse_spec_data(json.loads(json.dumps(fixed.as_data())), "fixed.toml").load == \
        fixed.load


@pytest.mark.parametrize("load, key", [('warmup = "soon"\n', "[load] warmup"),
                                       ('warmup = "auto"\nwarmup_max = "0s"\n', "[load]")])
def test_spec_refuses_a_bad_warmup(load, key) -> None:
    with pytest.raises(SpecError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_spec_data(spec(load), "bad.toml")


@pytest.mark.parametrize("args, message", [
    (["--warmup", "soon"], "--warmup 'soon' is neither a duration nor auto"),
    (["--warmup", "2s", "--warmup-max", "10s"], "--warmup-max bounds an automatic warm-up"),
    (["--warmup", "auto", "--warmup-max", "0s"], "warm-up bound 0.0: give a positive"),
    (["--warmup", "auto", "--warmup-max", "soon"], "--warmup-max 'soon' is not a duration"),
])
def test_bad_warmup_is_one_line_and_writes_nothing(testbed, results_dir, args, message):
    r = eiperf("run", "--cluster", testbed.source, "--out", str(results_dir), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not results_dir.exists()


# -- real runs ----------------------------------------------------------------------------------

#: The delayed proxy answers after 200 ms, so throughput is users / 0.2 s on any machine: a
#: constant 10 users settles within seconds; users added every second never settle.
DELAYED = ("--weights", "delayed=1", "--no-collect", "-t", "3s")


@pytest.mark.parametrize("shape, bound, stable", [
    (("--shape", "constant", "-u", "10"), 20.0, True),
    (("--shape", "step", "-u", "30", "--step-users", "5", "--step-time", "1s"), 4.0, False),
], ids=["settles", "bound"])
def test_auto_warmup_records_how_long_it_took(testbed, results_dir, shape, bound, stable):
    r = eiperf("run", "--cluster", testbed.source, "--out", str(results_dir), *DELAYED, *shape,
               "--warmup", "auto", "--warmup-max", f"{bound:g}s")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run,) = [p for p in Path(results_dir).iterdir() if p.is_dir()]
    timeline = json.loads((run / "timeline.json").read_text())
    took = timeline["warmup"]
    assert timeline["warmup_auto"] is True and timeline["warmup_stable"] is stable
    assert timeline["warmup_max"] == bound
    # decided on whole seconds, checked once a second: at most a second past the bound
    assert 5.0 <= took <= bound + 1.5 if stable else bound <= took <= bound + 1.5
    record = read_run_record(run)
    assert record.load["warmup"] == pytest.approx(took, abs=1e-3)
    assert record.load["warmup_auto"] is True and record.load["warmup_stable"] is stable
    assert record.measure_start == pytest.approx(timeline["test_start"] + took)
    # the measured duration is --duration after the warm-up, not what is left of -t
    assert record.measure_end - record.measure_start == pytest.approx(3.0, abs=0.05)
    assert f"warm-up took {took:.1f} s (auto: " in r.stdout


def test_plain_locust_without_a_shape_stops_duration_after_the_warmup(testbed, tmp_path):
    """Plain Locust (no --shape): the warm-up ends when throughput settles, then -t minus
    --warmup-max seconds run before the locustfile quits (Locust's own -t, counted from its
    start, stays the outer bound)."""
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "10", "-r", "10",
         "-t", "18s", "--warmup", "auto", "--warmup-max", "15", "--cluster", testbed.source,
         "--weights", "delayed=1", "--eiperf-out", str(out), "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    timeline = json.loads((out / "timeline.json").read_text())
    assert timeline["warmup_auto"] and timeline["warmup_stable"]
    ran = timeline["test_stop"] - timeline["test_start"]
    assert ran == pytest.approx(timeline["warmup"] + 3.0, abs=0.7)  # 18 s - 15 s after it
