"""The open model: arrival schedules (pure), and a real stall of known length on the testbed.

The stall: both nodes' JVMs SIGSTOPped for about a second while nginx still routes to them.
An open run keeps starting requests on schedule through it, and every one of them records
the wait until the JVMs resume; a closed run stops sending once its users are all stuck, so
it records the stall for a handful of requests only -- coordinated omission, shown.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from analysis.loading import load_run
from analysis.report import render_report
from eicore import node_control
from eicore.errors import ConfigError
from eicore.results import RunStatus
from eicore.transport import LocalTransport
from loadtests.arrivals import ArrivalCounts, RateProfile, arrival_times
from loadtests.profile import LoadProfile
from loadtests.run import run_load_test
from tests.loadtests.conftest import eiperf

# -- the arrival schedule (pure) ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "duration", "expected"), [
    ("200", 10.0, 2000),                        # constant
    ("0:0,10:200", 10.0, 1000),                 # a ramp from nothing: the triangle's area
    ("0:50,10:200,20:200", 20.0, 1250 + 2000),  # ramp, then held
    ("0:100,5:100,5:400", 10.0, 500 + 2000),    # a step at 5 s
])
def test_a_constant_stream_starts_exactly_the_profiles_count(text, duration, expected):
    profile = RateProfile.parse(text)
    times = list(arrival_times(profile, duration))
    assert profile.cumulative(duration) == pytest.approx(expected)
    assert abs(len(times) - expected) <= 1
    assert times == sorted(times) and 0 <= times[0] and times[-1] < duration
    for n in (1.0, 17.5, expected * 0.9):
        assert profile.cumulative(profile.inverse(n)) == pytest.approx(n)


def test_a_step_changes_the_spacing_at_its_second():
    times = list(arrival_times(RateProfile.parse("0:10,2:10,2:100"), 3.0))
    before = [t for t in times if t < 2.0]
    after = [t for t in times if t >= 2.0]
    assert len(before) == 20 and len(after) == 100
    assert after[1] - after[0] == pytest.approx(0.01)


def test_streams_with_phases_add_up_to_the_whole_rate():
    profile = RateProfile.constant(300.0)
    streams = [list(arrival_times(profile, 5.0, share=1 / 3, phase=k / 3)) for k in range(3)]
    merged = sorted(t for s in streams for t in s)
    assert len(merged) == 1500
    gaps = pd.Series(merged).diff().dropna()
    assert gaps.max() == pytest.approx(1 / 300, rel=1e-6)  # evenly interleaved


def test_poisson_arrivals_have_the_profiles_mean_and_exponential_gaps():
    rng = random.Random(7)
    counts = [len(list(arrival_times(RateProfile.constant(100.0), 10.0, "poisson", rng=rng)))
              for _ in range(20)]
    mean = sum(counts) / len(counts)
    assert abs(mean - 1000) < 3 * (1000 ** 0.5) / (20 ** 0.5)  # 3 standard errors
    gaps = pd.Series(list(arrival_times(RateProfile.constant(100.0), 50.0, "poisson",
                                        rng=rng))).diff().dropna()
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # exponential: CV 1


@pytest.mark.parametrize(("text", "message"), [
    ("fast", "write a rate"), ("5:100", "starts at second 0"), ("0:10,5:20,3:30", "time order"),
    ("0:0", "every rate is 0"), ("0:-5", "write a rate"),
])
def test_a_bad_rate_profile_is_one_clear_line(text, message):
    with pytest.raises(ValueError, match=message):
        RateProfile.parse(text)


def test_counts_of_processes_add_up():
    total = ArrivalCounts.total([
        {"planned": 10, "sent": 8, "dropped": 2, "peak_in_flight": 5, "cap": 5},
        {"planned": 10, "sent": 10, "dropped": 0, "peak_in_flight": 3, "cap": 5}])
    assert total == {"planned": 20, "sent": 18, "dropped": 2, "cut": 0, "peak_in_flight": 5,
                     "cap": 10}


@pytest.mark.parametrize(("kw", "message"), [
    ({}, "needs --arrival-rate"),
    ({"rate_profile": "0:10,5"}, "--rate-profile"),
    ({"arrival_rate": 10, "arrivals": "bursty"}, "arrivals 'bursty'"),
    ({"arrival_rate": 10, "max_concurrency": 0}, "max concurrency 0"),
    ({"arrival_rate": 10, "warmup_auto": True}, "does not go with the open shape"),
])
def test_an_open_profile_refuses_bad_options(kw, message):
    with pytest.raises(ConfigError, match=message):
        LoadProfile(shape="open", **kw)


def test_the_cli_refuses_an_open_run_without_a_rate(testbed, tmp_path):
    r = eiperf("run", "--cluster", testbed.source, "--shape", "open", "--out", str(tmp_path))
    assert r.returncode == 2 and "needs --arrival-rate" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


# -- a real stall ----------------------------------------------------------------------------------

RATE = 100.0
STALL_S = 1.0
CLOSED_USERS = 5


def nginx_requests(cluster) -> int:
    """nginx's own count of requests served (its stub_status page)."""
    with urllib.request.urlopen(cluster.load_balancer.status_url, timeout=5) as r:
        return int(r.read().decode().split("\n")[2].split()[2])


class Stall(threading.Thread):
    """Once the load has begun (nginx counts 50 more requests than our own looks), wait `after` s, SIGSTOP every
    node's JVM for `length` s, then SIGCONT them (always)."""

    def __init__(self, cluster, after: float, length: float) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.pids = [node_control.read_pid(LocalTransport(), n) for n in cluster.nodes]
        assert all(self.pids)
        self.after, self.length = after, length
        self.stopped_at = self.resumed_at = 0.0

    def run(self) -> None:
        base, deadline = nginx_requests(self.cluster), time.monotonic() + 30
        polls = 1  # each look at the status page is a request nginx counts too
        while nginx_requests(self.cluster) < base + polls + 50 and time.monotonic() < deadline:
            polls += 1
            time.sleep(0.05)
        time.sleep(self.after)
        try:
            for pid in self.pids:
                os.kill(pid, signal.SIGSTOP)
            self.stopped_at = time.time()
            time.sleep(self.length)
        finally:
            for pid in self.pids:
                os.kill(pid, signal.SIGCONT)
            self.resumed_at = time.time()


def stalled_run(cluster, out: Path, profile: LoadProfile) -> tuple[pd.DataFrame, Stall, dict]:
    stall = Stall(cluster, after=1.5, length=STALL_S)
    stall.start()
    try:
        outcome = run_load_test(cluster, profile, out, collect=False, progress=lambda m: None)
    finally:
        stall.join()
    assert outcome.record.status is RunStatus.COMPLETE, outcome.record.error
    rows = pd.read_parquet(outcome.run_dir / "requests.parquet")
    assert rows.ts.min() < stall.stopped_at - 0.5 and rows.ts.max() > stall.resumed_at + 0.5
    return rows, stall, outcome.record.generator


@pytest.fixture(scope="module")
def warm(testbed, tmp_path_factory):
    """Some load first, so the JVMs' warm-up does not blur the stall."""
    run_load_test(testbed, LoadProfile(users=4, duration=3.0, warmup=0.0),
                  tmp_path_factory.mktemp("warm"), collect=False, progress=lambda m: None)
    return testbed


def test_an_open_run_counts_a_stall_in_full_a_closed_run_omits_it(warm, tmp_path):
    cluster = warm
    open_rows, stall, generator = stalled_run(cluster, tmp_path / "open", LoadProfile(
        shape="open", arrival_rate=RATE, max_concurrency=1000, duration=6.0, warmup=1.0))
    s0, s1 = stall.stopped_at, stall.resumed_at
    length = s1 - s0

    # every arrival meant during the stall was started, through the stall, and waited for the
    # resume. (Exact counts: the schedule is fixed; the machine's load only delays sends.)
    during = open_rows[(open_rows.intended_ts > s0 + 0.02) & (open_rows.intended_ts < s1 - 0.02)]
    assert abs(len(during) - RATE * (length - 0.04)) <= 2, (len(during), length)
    assert (during.ts < s1).mean() >= 0.9, "the open run stopped sending during the stall"
    waited = during.latency_us / 1e6 - (s1 - during.intended_ts)
    assert (waited > -0.02).all(), during[waited <= -0.02].head()
    assert (during.latency_us >= during.service_us).all()
    assert generator["arrivals"]["dropped"] == 0
    assert generator["arrivals"]["planned"] == generator["arrivals"]["sent"] == len(open_rows)
    # the tail: at least as many requests late by half a second as the rate predicts
    late_open = int((open_rows.latency_us >= 500_000).sum())
    assert late_open >= RATE * (length - 0.5) - 2, (late_open, length)

    # a closed run (users paced to the same rate) over the same stall
    closed_rows, cstall, _ = stalled_run(cluster, tmp_path / "closed", LoadProfile(
        shape="arrival", arrival_rate=RATE, users=CLOSED_USERS, duration=6.0, warmup=1.0))
    c0, c1 = cstall.stopped_at, cstall.resumed_at
    sent_during = closed_rows[(closed_rows.ts > c0 + 0.02) & (closed_rows.ts < c1 - 0.02)]
    assert len(sent_during) <= CLOSED_USERS, "a closed run stops sending while its users wait"
    assert closed_rows.intended_ts.isna().all() and closed_rows.service_us.isna().all()

    # requests that recorded the stall (in flight when the JVMs resumed): the rate's worth in
    # the open run, one per user in the closed one
    def caught(rows: pd.DataFrame, resumed: float) -> int:
        start = rows.intended_ts.fillna(rows.ts)
        return int(((start < resumed - 0.02)
                    & (start + rows.latency_us / 1e6 > resumed - 0.02)).sum())

    assert 1 <= caught(closed_rows, c1) <= CLOSED_USERS
    assert caught(open_rows, s1) >= RATE * (length - 0.04) - 2 > 10 * CLOSED_USERS


def test_an_open_run_drops_arrivals_beyond_its_cap_and_says_so(warm, tmp_path):
    cap = 10
    rows, stall, generator = stalled_run(warm, tmp_path, LoadProfile(
        shape="open", arrival_rate=RATE, max_concurrency=cap, duration=6.0, warmup=1.0))
    arrivals = generator["arrivals"]
    length = stall.resumed_at - stall.stopped_at
    # during the stall the cap fills at once, and every later arrival of the stall is dropped
    assert arrivals["cap"] == cap and arrivals["peak_in_flight"] == cap
    assert abs(arrivals["dropped"] - (RATE * length - cap)) <= 0.15 * RATE * length + 3
    assert arrivals["planned"] == arrivals["sent"] + arrivals["dropped"]
    assert arrivals["sent"] == len(rows)


def test_locust_workers_split_the_rate_and_their_counts_add_up(testbed, tmp_path):
    r = eiperf("run", "--cluster", testbed.source, "--shape", "open", "--arrival-rate", "100",
               "--arrivals", "poisson", "--workers", "2", "-t", "3s", "--warmup", "0s",
               "--no-collect", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "open model: intended 100.0 req/s" in r.stdout
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    arrivals, rows = record["generator"]["arrivals"], pd.read_parquet(run_dir / "requests.parquet")
    assert arrivals["planned"] == arrivals["sent"] + arrivals["dropped"]
    assert arrivals["sent"] - arrivals["cut"] == len(rows), arrivals
    assert abs(arrivals["planned"] - 300) < 4 * 300 ** 0.5  # Poisson: within 4 sigma
    per_worker = rows.groupby("worker").size()
    assert set(per_worker.index) == {"local-1", "local-2"} and per_worker.min() > 75
    assert rows.intended_ts.notna().all() and (rows.latency_us >= rows.service_us).all()
    assert record["summary"]["open_model"]["intended_rps"] == pytest.approx(100.0)
    html = render_report([load_run(run_dir)])
    assert "latency from each request&#39;s intended start" in html or \
        "latency from each request's intended start" in html
    assert f"{arrivals['planned']:,} planned" in html
