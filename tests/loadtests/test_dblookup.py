"""The `dblookup` scenario on the session testbed: one 20 ms lookup per message through each
node's WSO2_CARBON_DB pool, so a pool of 2 with a short maxWait makes borrowers wait and fail
where a pool of 20 does not; the pools' series land in metrics.parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loadtests.collectors.jmx_collector import _unquote
from tests.loadtests.conftest import eiperf
from tuning.apply import apply_settings
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restore import restore_cluster

USERS = 16  # ~8 borrowers per node at once


def dblookup_run(testbed, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """A short dblookup load (with the collectors): its requests, metrics and run.json text."""
    r = eiperf("run", "--cluster", testbed.source, "-u", str(USERS), "-t", "4s", "--warmup", "1s",
               "--weights", "dblookup=1", "--results", str(out), "--no-doctor")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return (pd.read_parquet(run / "requests.parquet"), pd.read_parquet(run / "metrics.parquet"),
            (run / "run.json").read_text())


def pool_peak(metrics: pd.DataFrame, what: str) -> float:
    """The highest ds.WSO2_CARBON_DB.<what> any node reported."""
    rows = metrics[metrics.metric == f"ds.WSO2_CARBON_DB.{what}"]
    assert set(rows.node) == {"node1", "node2"}, metrics.metric.unique()
    return float(rows.value.max())


def test_a_small_pool_makes_lookups_wait_and_fail_and_a_large_one_does_not(testbed, tmp_path):
    journal = Journal.begin(tmp_path / "results", Path(testbed.source), "test")
    seen = {}
    try:
        for size in (2, 20):
            apply_settings(testbed, ParamSet({"ds.WSO2_CARBON_DB.max_active": size,
                                              "ds.WSO2_CARBON_DB.max_wait": 20}),
                           journal, progress=lambda m: None)
            seen[size] = dblookup_run(testbed, tmp_path / f"pool{size}")
    finally:
        restore_cluster(testbed, journal, progress=lambda m: None)
        journal.close()
    small, small_metrics, small_json = seen[2]
    large, large_metrics, large_json = seen[20]
    assert set(small.scenario) == set(large.scenario) == {"dblookup"}
    assert len(small) > 50 and len(large) > 50
    # pool of 2: borrowers queue, and after maxWait the lookup fails (a SOAP fault, HTTP 500)
    assert pool_peak(small_metrics, "waiting") > 0 and pool_peak(small_metrics, "size") <= 2
    assert (~small.ok).sum() > 0 and set(small[~small.ok].error) == {"HTTP 500"}
    # pool of 20: more connections than borrowers, nobody waits, nothing fails
    assert pool_peak(large_metrics, "waiting") == 0 and pool_peak(large_metrics, "borrowed") > 0
    assert large.ok.all(), large[~large.ok].error.unique()
    for ds in testbed.database.datasources:  # the run records no database password
        assert ds.password() not in small_json + large_json


def test_a_quoted_pool_name_is_read_without_its_quotes():
    assert _unquote("WSO2_CARBON_DB") == "WSO2_CARBON_DB"
    assert _unquote('"my pool"') == "my pool" and _unquote('"a\\"b"') == 'a"b'
