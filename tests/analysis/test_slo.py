"""SLO rules: parsing, units, verdicts; unknown never counts as met."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.slo import SloError, evaluate, parse_rule
from analysis.summary import summarize_requests


def frame(latencies_ms, ok=None):
    n = len(latencies_ms)
    return pd.DataFrame({
        "ts": np.linspace(0, 10, n, endpoint=False), "scenario": "s", "name": "n",
        "latency_us": (np.asarray(latencies_ms) * 1000).astype("int64"), "bytes": 1,
        "status": 200, "ok": ok if ok is not None else [True] * n, "error": None, "node": "a",
    })


@pytest.mark.parametrize("text, metric, op, threshold", [
    ("p95<200ms", "p95", "<", 200.0), ("p99 <= 1s", "p99", "<=", 1000.0),
    ("errors<0.1%", "errors", "<", 0.001), ("rps>=500", "rps", ">=", 500.0),
    ("p99.9<1500us", "p99.9", "<", 1.5), ("mean<5", "mean", "<", 5.0),
])
def test_parse(text, metric, op, threshold):
    r = parse_rule(text)
    assert (r.metric, r.op) == (metric, op)
    assert r.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text", ["p95", "p96<1ms", "errors<3ms", "rps>5s", "p95<fast"])
def test_bad_rules_are_one_clear_line(text):
    with pytest.raises(SloError) as e:
        parse_rule(text)
    assert "\n" not in str(e.value) and text in str(e.value)


def test_verdicts_against_a_summary():
    s = summarize_requests(frame(list(range(1, 101))))  # 1..100 ms, 10 s window
    res = evaluate([parse_rule("p95<200ms"), parse_rule("p50<10ms"), parse_rule("rps>=10"),
                    parse_rule("errors<1%")], s)
    assert [r.ok for r in res] == [True, False, True, True]
    assert res[1].actual == pytest.approx(s.p50_ms)


def test_no_requests_is_unknown_and_not_met():
    s = summarize_requests(frame([]))
    (r,) = evaluate([parse_rule("p95<200ms")], s)
    assert r.actual is None and not r.ok and r.verdict == "unknown"
