"""Collectors inside `eiperf run` (collection on, the default), against the real testbed.

metrics.parquet next to the requests: each node's JVM from psutil and JMX (heap max as the
node's integrator.sh sets it), the generator's processes, nginx; a node killed mid-run is an
error window in the requests and a gap in the metrics; a node whose JMX accepts connections but
never answers costs gaps, not the run.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from eicore import node_control
from eicore.cluster import save_cluster
from eicore.results import RunStatus, metrics_schema, read_run_record
from eicore.transport import LocalTransport
from tests.loadtests.conftest import eiperf
from tuning.integrator_sh import read_jvm_options
from tuning.params import size_to_bytes

T = LocalTransport()


def only_run(results_dir: Path) -> Path:
    (run,) = [p for p in results_dir.iterdir() if p.is_dir()]
    return run


def read_metrics(run: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(run / "metrics.parquet")
    assert table.schema.equals(metrics_schema())
    assert not (run / "metrics.parquet.spool").exists()
    return table.to_pandas()


def series(df: pd.DataFrame, node: str, source: str, metric: str) -> pd.Series:
    s = df[(df.node == node) & (df.source == source) & (df.metric == metric)]
    return s.set_index("ts")["value"].sort_index()


def xmx_in_script(node) -> int:
    """The -Xmx the node's bin/integrator.sh starts it with (its JVM_MEM_OPTS), in bytes."""
    xmx = read_jvm_options(Path(node.integrator_sh).read_text()).xmx
    assert xmx, f"{node.integrator_sh} sets no -Xmx"
    return size_to_bytes(xmx)


def last_xmx(flags: list[str]) -> int:
    sizes = [f[4:] for f in flags if re.fullmatch(r"-Xmx\d+[kmgKMG]?", f)]
    assert sizes, flags
    return size_to_bytes(sizes[-1])


def test_run_collects_nodes_generator_and_nginx_and_prints_cpu_and_heap(testbed, results_dir):
    r = eiperf("run", "--cluster", testbed.source, "-u", "6", "-t", "5s", "--warmup", "1s",
               "--processes", "2", "--out", str(results_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE
    df = read_metrics(run)
    # "locust": each of the two workers reports its own CPU (per-worker saturation verdict)
    assert set(df.source) == {"psutil", "jmx", "nginx", "collector", "locust"}
    workers = df[df.source == "locust"].metric.unique()
    assert len(workers) == 2 and all(m.startswith("worker_cpu_percent.") for m in workers)
    rounds = df[df.source != "locust"].ts.nunique()  # the collector's rounds (workers: own clock)
    assert rounds >= 6  # ~1 Hz over a 6 s run
    for node in testbed.nodes:
        # JMX heap max is the -Xmx of the node's own start-up script, as the JVM got it.
        heap_max = series(df, node.name, "jmx", "heap_max_bytes")
        expected = xmx_in_script(node)
        assert len(heap_max) >= rounds - 1 and (heap_max == expected).all(), (
            node.name, heap_max.unique(), expected)
        assert last_xmx(rec.cluster["jvm_runtime"][node.name]["input_arguments"]) == expected
        assert size_to_bytes(rec.cluster["nodes"][node.name]["jvm.xmx"]) == expected
        pid = series(df, node.name, "psutil", "pid")
        assert (pid == node_control.read_pid(T, node)).all()
        assert (series(df, node.name, "jmx", "pid") == pid.iloc[0]).all()
        cpu = series(df, node.name, "psutil", "cpu_percent")
        assert cpu.max() > 5, f"{node.name} served load but shows {cpu.max():.1f} % CPU"
        assert series(df, node.name, "psutil", "tcp_connections").max() >= 1
        used = series(df, node.name, "jmx", "heap_used_bytes")
        assert 0 < used.max() <= expected
    # The generator: Locust's master and its two workers, from the PID file run.py keeps.
    cores = series(df, "generator", "psutil", "generator_cores")
    assert cores.max() == 3, cores.unique()
    assert series(df, "generator", "psutil", "cpu_percent").max() > 5
    # nginx counted at least the requests Locust made through it.
    served = series(df, "lb", "nginx", "requests")
    assert served.iloc[-1] - served.iloc[0] >= 0.5 * rec.generator["requests"]
    gaps = df[(df.node == "collector") & df.metric.str.startswith("gaps.")]
    assert gaps.value.max() == 0
    # The summary says it, and run.json keeps it.
    for node in testbed.nodes:
        line = next(ln for ln in r.stdout.splitlines()
                    if ln.startswith(f"node {node.name} resources:"))
        assert re.search(r"CPU mean \d+ %", line), line
        assert f"of {expected // 2**20:,} MiB" in line, line
        figures = rec.summary["node_metrics"][node.name]
        assert figures["cpu_percent_mean"] > 0 and figures["heap_max_bytes"] == expected
    assert rec.summary["generator_cpu_percent_mean"] > 0
    assert re.search(r"generator: CPU mean \d+ % max \d+ % over 2 process", r.stdout)


def test_node_killed_mid_run_is_an_error_window_and_a_metrics_gap(testbed, results_dir):
    node2 = testbed.nodes[1]
    killed: dict[str, float] = {}

    def kill_later() -> None:
        # Locust starts once the collector has sampled its first round; kill 3 s into the load.
        deadline = time.monotonic() + 60
        while not list(results_dir.glob("*/locust/locust.log")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        pid = node_control.read_pid(T, node2)
        killed["ts"] = time.time()
        T.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_later)
    killer.start()
    try:
        r = eiperf("run", "--cluster", testbed.source, "-u", "6", "-t", "8s", "--warmup", "0",
                   "--out", str(results_dir))
    finally:
        killer.join()
        node_control.start_node(T, node2)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    assert read_run_record(run).status is RunStatus.COMPLETE
    kill = killed["ts"]
    rows = pd.read_parquet(run / "requests.parquet")
    errors = rows[~rows.ok]
    assert ((errors.ts > kill - 1) & (errors.ts < kill + 2)).all()
    after = rows[rows.ts > kill + 2]
    assert len(after) > 50 and after.ok.all() and set(after.node) == {"node1"}

    df = read_metrics(run)
    end = df.ts.max()
    assert end > kill + 3
    for source in ("psutil", "jmx"):
        alive = series(df, "node1", source, "pid")
        dead = series(df, node2.name, source, "pid")
        assert (dead.index < kill).sum() >= 2, f"{source}: no samples of node2 before the kill"
        # one round may have started before the kill and read it just after
        assert (dead.index > kill + 1.5).sum() == 0, f"{source} sampled node2 after its death"
        assert (alive.index > kill + 2).sum() >= 2, f"{source} stopped sampling node1"
        gaps = series(df, "collector", "collector", f"gaps.{source}")
        # (a round stamped just before the kill may have read the node just after it)
        assert gaps.iloc[-1] >= 2 and gaps[gaps.index < kill - 1.0].max() == 0
    log = (run / "metrics.parquet.log").read_text()
    assert "no samples from node2" in log and "collector stopped after" in log


@pytest.fixture
def silent_jmx_port():
    """A loopback port that accepts TCP connections but never answers (a frozen JVM's JMX)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)  # never accept(): the kernel completes handshakes, nothing is said
        yield s.getsockname()[1]


def test_run_goes_on_when_a_nodes_jmx_never_answers(testbed, tmp_path, results_dir,
                                                     silent_jmx_port):
    node1, node2 = testbed.nodes[:2]
    silent = dataclasses.replace(
        node2, jmx_url=f"service:jmx:rmi:///jndi/rmi://127.0.0.1:{silent_jmx_port}/jmxrmi")
    cluster_file = tmp_path / "cluster.toml"
    save_cluster(testbed.with_nodes((node1, silent, *testbed.nodes[2:])), cluster_file)
    r = eiperf("run", "--cluster", str(cluster_file), "-u", "4", "-t", "5s", "--warmup", "0",
               "--out", str(results_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(results_dir)
    rec = read_run_record(run)
    assert rec.status is RunStatus.COMPLETE and rec.generator["requests"] > 0
    assert "error" in rec.cluster["jvm_runtime"][node2.name]
    df = read_metrics(run)
    rounds = df.ts.nunique()
    assert rounds >= 5
    assert len(series(df, node1.name, "jmx", "heap_used_bytes")) >= rounds - 1
    assert series(df, node2.name, "jmx", "heap_used_bytes").empty
    assert len(series(df, node2.name, "psutil", "rss_bytes")) >= rounds - 1
    gaps = series(df, "collector", "collector", "gaps.jmx")
    assert gaps.iloc[-1] >= rounds - 1
    assert series(df, "collector", "collector", "missed_ticks").iloc[-1] <= 1
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"node {node2.name} res"))
    assert "heap used mean n/a" in line
    log = (run / "metrics.parquet.log").read_text()
    assert "collector stopped after" in log, log[-2000:]  # a clean stop, not a kill
