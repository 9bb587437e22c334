"""JMX with a password, against a real 1-node testbed whose JVM authenticates (shared by the
module): connections with the right, wrong and no credentials, the collector, and `eiperf run`
-- which records JMX with the right password, and goes on without JMX for the node with a
wrong one, leaving neither password anywhere in the run folder."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eicore.cluster import save_cluster
from eicore.results import RunStatus, read_run_record
from loadtests.collectors.jmx import JmxAuthError, JmxConnection
from loadtests.collectors.jmx_collector import JmxCollector
from testbed import manager
from tests.conftest import start_testbed
from tests.loadtests.conftest import eiperf

PW_ENV = "EIPERF_TEST_JMX_PASSWORD"


@pytest.fixture(scope="module")
def auth_testbed(tmp_path_factory):
    """A running 1-node testbed whose JMX asks for user 'admin' and a random password."""
    d = tmp_path_factory.mktemp("jmx-auth-testbed")
    cluster = start_testbed(d, nodes=1, jmx_auth=True)
    yield cluster
    manager.down(d, progress=lambda m: None)


@pytest.fixture
def password(auth_testbed) -> str:
    """The right password (what the testbed wrote for the client)."""
    creds = auth_testbed.nodes[0].jmx_credentials()
    assert creds is not None
    return creds[1]


@pytest.fixture
def wrong_password(monkeypatch) -> str:
    """A wrong password, in the environment variable a node can name with jmx_password_env."""
    value = "wrong-" + secrets.token_hex(12)
    monkeypatch.setenv(PW_ENV, value)
    return value


def from_env(node):
    return dataclasses.replace(node, jmx_password_file=None, jmx_password_env=PW_ENV)


def refusal(node) -> str:
    return (f"{node.name}: JMX refused the credentials of user 'admin'; check the password in "
            f"environment variable {PW_ENV} (jmx_password_env)")


def test_heap_is_read_with_the_right_credentials(auth_testbed):
    node = auth_testbed.nodes[0]
    with JmxConnection.for_node(node) as jmx:
        assert jmx.heap()["max"] == 1024 * 1024 * 1024  # integrator.sh's -Xmx1024m default
        args = jmx.input_arguments()
    assert any(a.startswith("-Deiperf.jmx.password.file=") for a in args)  # the node's connector asks
    assert "-Djava.rmi.server.hostname=127.0.0.1" in args


def test_a_wrong_password_is_one_line_without_the_password(auth_testbed, wrong_password,
                                                           password):
    node = from_env(auth_testbed.nodes[0])
    with pytest.raises(JmxAuthError) as err:
        JmxConnection.for_node(node)
    assert str(err.value) == refusal(node)
    with pytest.raises(JmxAuthError) as by_url:  # no node: the URL names the endpoint
        JmxConnection(node.jmx_service_url, credentials=("admin", wrong_password))
    assert str(by_url.value) == (f"JMX {node.jmx_service_url}: refused the credentials of "
                                 "user 'admin'")
    with pytest.raises(JmxAuthError) as wrong_user:
        JmxConnection(node.jmx_service_url, credentials=("root", password))
    assert "refused the credentials of user 'root'" in str(wrong_user.value)
    for e in (err.value, by_url.value, wrong_user.value):
        assert "\n" not in str(e) and wrong_password not in str(e) and password not in str(e)
        assert e.__suppress_context__ or e.__context__ is None  # no Java cause printed with it


def test_no_credentials_or_an_unset_variable_say_what_to_set(auth_testbed, monkeypatch):
    node = auth_testbed.nodes[0]
    bare = dataclasses.replace(node, jmx_user=None, jmx_password_file=None)
    with pytest.raises(JmxAuthError) as err:
        JmxConnection.for_node(bare)
    assert str(err.value) == ("node1: JMX asks for a user name and password; set jmx_user and "
                              "jmx_password_env or jmx_password_file for this node in cluster.toml")
    monkeypatch.delenv(PW_ENV, raising=False)
    with pytest.raises(JmxAuthError) as unset:
        JmxConnection.for_node(from_env(node))
    assert str(unset.value) == (f"node1: JMX user 'admin': environment variable {PW_ENV} is not "
                                "set; export the password in it before running eiperf")


def test_collector_reads_with_credentials_and_a_refusal_is_a_logged_gap(
        auth_testbed, wrong_password, caplog):
    with JmxCollector(auth_testbed) as collector:
        rows = collector.sample(time.time())
    assert {"heap_used_bytes", "heap_max_bytes", "pid"} <= {r.metric for r in rows}
    assert collector.gaps == 0
    node = from_env(auth_testbed.nodes[0])
    with caplog.at_level(logging.WARNING, logger="eiperf.collectors"):
        with JmxCollector(auth_testbed.with_nodes((node,)), auth_retry_s=60) as collector:
            first = collector.sample(time.time())
            began = time.monotonic()
            second = collector.sample(time.time())
            assert time.monotonic() - began < 0.5  # backed off: no new login attempt
    assert first == second == [] and collector.gaps == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"jmx: no samples from node1 ({refusal(node)})"]


# ---------------------------------------------------------------- eiperf run


def only_run(results_dir: Path) -> Path:
    (run,) = [p for p in results_dir.iterdir() if p.is_dir()]
    return run


def jmx_rows(run: Path, node: str) -> int:
    df = pq.read_table(run / "metrics.parquet").to_pandas()
    return int(((df.node == node) & (df.source == "jmx")).sum())


def assert_nowhere(run: Path, *texts: str) -> None:
    """None of `texts` in any file of the run folder: raw bytes, and every string a Parquet
    file holds (compressed pages could hide one from a byte search)."""
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "metrics.parquet" for p in files) and any(
        p.name == "run.json" for p in files)
    for path in files:
        data = path.read_bytes()
        for text in texts:
            assert text.encode() not in data, f"{text!r} in {path}"
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.itercolumns():
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    values = set(column.to_pylist())
                    assert not any(t in (v or "") for v in values for t in texts), path


def test_run_on_the_auth_testbed_records_jmx(auth_testbed, results_dir, password):
    r = eiperf("run", "--cluster", auth_testbed.source, "-u", "4", "-t", "4s", "--warmup", "0",
               "--out", str(results_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE and rec.generator["requests"] > 0
    runtime = rec.cluster["jvm_runtime"]["node1"]
    assert runtime["heap_max_bytes"] == 1024 * 1024 * 1024, runtime
    assert rec.cluster["model"]["nodes"][0]["jmx_user"] == "admin"
    assert jmx_rows(run, "node1") > 0
    assert_nowhere(run, password)
    assert password not in r.stdout + r.stderr


def test_run_with_a_wrong_password_goes_on_without_jmx_for_that_node(
        auth_testbed, tmp_path, results_dir, wrong_password, password):
    node = from_env(auth_testbed.nodes[0])
    cluster_file = tmp_path / "cluster.toml"
    save_cluster(auth_testbed.with_nodes((node,)), cluster_file)
    r = eiperf("run", "--cluster", str(cluster_file), "-u", "4", "-t", "4s", "--warmup", "0",
               "--out", str(results_dir), env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE and rec.generator["requests"] > 0
    assert rec.cluster["jvm_runtime"]["node1"] == {"error": refusal(node)}
    assert jmx_rows(run, "node1") == 0
    df = pq.read_table(run / "metrics.parquet").to_pandas()
    assert ((df.node == "node1") & (df.source == "psutil")).sum() > 0  # the rest goes on
    gaps = df[(df.node == "collector") & (df.metric == "gaps.jmx")].sort_values("ts").value
    assert gaps.iloc[-1] >= 3
    log = (run / "metrics.parquet.log").read_text()
    assert f"no samples from node1 ({refusal(node)})" in log
    assert_nowhere(run, wrong_password, password)
    assert wrong_password not in r.stdout + r.stderr
