"""Synthetic run and sweep folders written through ``eicore.results`` (until real runs exist).

``write_run`` makes results/<id>/ with run.json (``write_run_record``), requests.parquet and
metrics.parquet (the schemas of ``eicore.results``), from numpy-generated data: lognormal
latencies (slower during warm-up), a few errors, two nodes, per-node psutil/JMX samples once a
second, generator CPU. ``write_step_run`` makes a step-load run whose throughput follows the USL.
``write_sweep`` makes results/sweeps/<id>/ with sweep.json and trials.parquet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eicore.fsutil import atomic_write_text
from eicore.results import (
    METRICS_FILE,
    REQUESTS_FILE,
    RunRecord,
    RunStatus,
    metrics_schema,
    requests_schema,
    write_run_record,
)

T0 = 1_700_000_000.0
NODES = ("node1", "node2")


def snapshot(nodes: Sequence[str] = NODES, *, xmx: str = "1024m", gc: str = "G1",
             read_timeout: str = "5m", workers: int = 400) -> dict[str, Any]:
    """A cluster snapshot shaped like the one `eiperf run` records (JVM flags, nginx settings)."""
    return {
        "name": "testbed",
        "nodes": {
            name: {
                "host": "127.0.0.1",
                "port_offset": 10 + i,
                "jvm": {"xms": "256m", "xmx": xmx, "gc": gc,
                        "flags": ["-Xms256m", f"-Xmx{xmx}", f"-XX:+Use{gc}GC",
                                  "-Dsun.net.httpserver.nodelay=true"]},
                "passthru": {"worker_pool_size_core": workers, "worker_pool_size_max": 500,
                             "http.socket.timeout": 180000},
            }
            for i, name in enumerate(nodes)
        },
        "nginx": {"proxy_read_timeout": read_timeout, "proxy_send_timeout": "5m",
                  "lb_method": "round_robin", "upstream_keepalive": 32, "worker_processes": "auto"},
    }


def requests_table(n: int, *, seed: int = 0, t0: float = T0, duration: float = 60.0,
                   warmup: float = 10.0, scale: float = 1.0, error_share: float = 0.005,
                   nodes: Sequence[str] = NODES, median_us: float = 2000.0) -> pa.Table:
    """n requests over ``duration`` s from t0; warm-up requests are up to twice as slow."""
    rng = np.random.default_rng(seed)
    ts = t0 + np.sort(rng.uniform(0.0, duration, n))
    elapsed = ts - t0
    warm = np.where(elapsed < warmup, 2.0 - elapsed / max(warmup, 1e-9), 1.0)
    latency = (rng.lognormal(np.log(median_us), 0.5, n) * scale * warm).astype(np.int64)
    ok = rng.random(n) >= error_share
    status = np.where(ok, 200, 502).astype(np.int32)
    error = pa.array(np.where(ok, None, "HTTPError('502 Bad Gateway')"), pa.string())
    node_idx = rng.integers(0, len(nodes), n)
    node = pa.DictionaryArray.from_arrays(pa.array(node_idx, pa.int32()),
                                          pa.array(list(nodes), pa.string())).cast(pa.string())
    scenario = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 2, n), pa.int32()),
        pa.array(["log_simple", "log_full"])).cast(pa.string())
    return pa.table({
        "ts": ts, "scenario": scenario,
        "name": pa.array(np.full(n, "/services/SampleProxy", dtype=object), pa.string()),
        "latency_us": latency, "bytes": rng.integers(200, 400, n).astype(np.int64),
        "status": status, "ok": ok, "error": error, "node": node,
        "worker": pa.array(np.where(node_idx % 2 == 0, "local-1", "local-2"), pa.string()),
        "intended_ts": pa.nulls(n, pa.float64()), "service_us": pa.nulls(n, pa.int64()),
    }, schema=requests_schema())


def metrics_table(*, t0: float = T0, duration: float = 60.0, nodes: Sequence[str] = NODES,
                  generator_cpu: float | None = 40.0, users: Sequence[tuple[float, int]] = (),
                  seed: int = 0) -> pa.Table:
    """Samples once a second: per-node psutil and JMX series, host and generator CPU, users."""
    rng = np.random.default_rng(seed)
    secs = np.arange(0.0, duration + 1.0)
    rows: dict[str, list] = {"ts": [], "node": [], "source": [], "metric": [], "value": []}

    def add(node: str, source: str, metric: str, values: np.ndarray) -> None:
        rows["ts"].append(t0 + secs)
        rows["node"] += [node] * secs.size
        rows["source"] += [source] * secs.size
        rows["metric"] += [metric] * secs.size
        rows["value"].append(np.asarray(values, dtype=np.float64))

    for i, node in enumerate(nodes):
        add(node, "psutil", "cpu_percent", 35 + 10 * i + rng.normal(0, 3, secs.size))
        add(node, "psutil", "rss_bytes", 6e8 + secs * 1e6)
        add(node, "psutil", "threads", 120 + (secs % 5))
        add(node, "jmx", "heap_used_bytes", 2e8 + ((secs * (7 + i)) % 60) * 8e6)
        add(node, "jmx", "heap_max_bytes", np.full(secs.size, 1024 * 2**20))
        add(node, "jmx", "gc_time_ms.G1 Young Generation", np.cumsum(rng.poisson(12, secs.size)))
        add(node, "jmx", "gc_count.G1 Young Generation", np.cumsum(rng.poisson(0.6, secs.size)))
        add(node, "jmx", "gc_time_ms.G1 Old Generation", np.zeros(secs.size))
        add(node, "jmx", "process_cpu_load", np.full(secs.size, 0.2 + 0.05 * i))
    add("host", "psutil", "cpu_percent", np.full(secs.size, 60.0))
    if generator_cpu is not None:
        add("generator", "psutil", "cpu_percent", generator_cpu + rng.normal(0, 1, secs.size))
    if users:
        starts = np.array([s for s, _ in users], dtype=float)
        levels = np.array([u for _, u in users], dtype=float)
        add("generator", "locust", "users", levels[np.searchsorted(starts, secs, "right") - 1])
    return pa.table({
        "ts": np.concatenate(rows["ts"]), "node": rows["node"], "source": rows["source"],
        "metric": rows["metric"], "value": np.concatenate(rows["value"]),
    }, schema=metrics_schema())


def write_run(results: Path, run_id: str = "run-a", *, n: int = 20_000, duration: float = 60.0,
              warmup: float = 10.0, seed: int = 0, scale: float = 1.0, error_share: float = 0.005,
              status: RunStatus = RunStatus.COMPLETE, generator_cpu: float | None = 40.0,
              cluster: dict[str, Any] | None = None, load: dict[str, Any] | None = None,
              requests: pa.Table | None = None, users: Sequence[tuple[float, int]] = (),
              schema_version: int | None = None, t0: float = T0,
              slo: Sequence[str] = ("p95 < 50 ms",)) -> Path:
    """Write a synthetic run folder results/<run_id>/ and return its path."""
    run_dir = Path(results) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if requests is None:
        requests = requests_table(n, seed=seed, t0=t0, duration=duration, warmup=warmup,
                                  scale=scale, error_share=error_share)
    pq.write_table(requests, run_dir / REQUESTS_FILE)
    pq.write_table(metrics_table(t0=t0, duration=duration, generator_cpu=generator_cpu,
                                 users=users, seed=seed), run_dir / METRICS_FILE)
    ended = t0 + duration
    record = RunRecord(
        id=run_id, status=status, started_at=t0,
        ended_at=ended if status is RunStatus.COMPLETE else None,
        measure_start=t0 + warmup,
        measure_end=ended if status is RunStatus.COMPLETE else None,
        load=load or {"shape": "constant", "users": 20, "spawn_rate": 20, "duration": duration,
                      "scenario": "log_simple", "processes": 1},
        cluster=cluster or snapshot(),
        slo=list(slo),
        generator={"processes": 1, "kind": "FastHttpUser"},
        versions={"eiperf": "0.1.0", "locust": "2.47.0"},
        host={"hostname": "testhost", "cpus": 2},
    )
    write_run_record(run_dir, record)
    if schema_version is not None:
        data = json.loads((run_dir / "run.json").read_text())
        data["schema_version"] = schema_version
        atomic_write_text(run_dir / "run.json", json.dumps(data))
    return run_dir


USL = (20.0, 0.03, 0.0008)  # λ req/s per user, σ, κ of the synthetic step run


def write_step_run(results: Path, run_id: str = "step-run", *, step_users: int = 5,
                   levels: int = 8, step_time: float = 20.0, seed: int = 1) -> Path:
    """A step-load run: users step_users·k for step_time s each; throughput follows the USL
    (λ, σ, κ = USL) and latency Little's law (R = N/X, no think time)."""
    lam, sigma, kappa = USL
    rng = np.random.default_rng(seed)
    parts_ts, parts_lat, steps = [], [], []
    for k in range(levels):
        users = step_users * (k + 1)
        x = lam * users / (1 + sigma * (users - 1) + kappa * users * (users - 1))
        count = rng.poisson(x * step_time)
        start = T0 + k * step_time
        steps.append((k * step_time, users))
        parts_ts.append(start + np.sort(rng.uniform(0, step_time, count)))
        parts_lat.append(rng.lognormal(np.log(users / x * 1e6), 0.3, count))
    ts = np.concatenate(parts_ts)
    n = ts.size
    table = requests_table(n, seed=seed, duration=levels * step_time, warmup=0.0)
    table = table.set_column(0, "ts", pa.array(ts))
    table = table.set_column(3, "latency_us", pa.array(np.concatenate(parts_lat).astype(np.int64)))
    load = {"shape": "step", "step_users": step_users, "step_time": step_time,
            "max_users": step_users * levels, "duration": levels * step_time, "users": 0}
    return write_run(results, run_id, duration=levels * step_time, warmup=0.0, requests=table,
                     users=steps, load=load, seed=seed, slo=("p95 < 250 ms",))


def write_sweep(results: Path, sweep_id: str = "sweep-1", *, with_runs: bool = False,
                direction: str = "maximize", repetitions: int = 1,
                status: str = "complete", schema_version: int = 1,
                run_order: Sequence[int] | None = None) -> Path:
    """A grid sweep over jvm.xmx × nginx.proxy_read_timeout written as the sweep contract says
    (sweep.json + trials.parquet with ``param.<name>`` string columns): 9 trials, trial 7
    still running (an interrupted sweep's row), trial 8 failed with the JVM's refusal; the objective (throughput) rises with the
    heap and is best at 60s; 512m/30s misses the SLO. The trials run in grid order (the
    objective then rises with time) unless ``run_order`` gives each trial's position."""
    sweep_dir = Path(results) / "sweeps" / sweep_id
    sweep_dir.mkdir(parents=True, exist_ok=True)
    heaps, timeouts = ("512m", "1g", "2g"), ("30s", "60s", "5m")
    order = list(run_order) if run_order is not None else list(range(9))  # position of trial i
    rows = []
    for i, (xmx, timeout) in enumerate((x, t) for x in heaps for t in timeouts):
        for rep in range(repetitions):
            objective = 1000 + 150 * heaps.index(xmx) + (40 if timeout == "60s" else 0) + 3 * rep
            state = "running" if i == 7 else "failed" if i == 8 else "complete"
            rows.append({
                "trial": i, "repetition": rep, "state": state,
                "run_id": None if state != "complete" else f"{sweep_id}-t{i}r{rep}",
                "objective": objective if state == "complete" else None,
                "slo_ok": None if state != "complete" else (xmx != "512m" or timeout != "30s"),
                "slo_detail": "" if state != "complete" else "p95<200ms: met",
                "error": "Unrecognized VM option 'UseConcMarkSweepGC'" if state == "failed"
                else None,
                "started": T0 + 60 * order[i] + 20 * rep, "duration_s": 20.0,
                "param.jvm.xmx": xmx, "param.nginx.proxy_read_timeout": timeout,
            })
    types = {"trial": pa.int64(), "repetition": pa.int64(), "state": pa.string(),
             "run_id": pa.string(), "objective": pa.float64(), "slo_ok": pa.bool_(),
             "slo_detail": pa.string(), "error": pa.string(), "started": pa.float64(),
             "duration_s": pa.float64(), "param.jvm.xmx": pa.string(),
             "param.nginx.proxy_read_timeout": pa.string()}
    table = pa.table({k: pa.array([r[k] for r in rows], t) for k, t in types.items()})
    pq.write_table(table, sweep_dir / "trials.parquet")
    best = max((r for r in rows if r["state"] == "complete" and r["slo_ok"]),
               key=lambda r: r["objective"] * (1 if direction == "maximize" else -1))
    info = {"schema_version": schema_version, "kind": "sweep", "id": sweep_id, "status": status,
            "created": "2023-11-14T22:13:20+00:00", "finished": None, "strategy": "grid",
            "spec": {"parameters": {"jvm.xmx": list(heaps),
                                    "nginx.proxy_read_timeout": list(timeouts)}},
            "objective": {"metric": "throughput_rps", "direction": direction},
            "slo": ["p95<200ms"], "parameters": ["jvm.xmx", "nginx.proxy_read_timeout"],
            "best": {"trial": best["trial"], "objective": best["objective"],
                     "params": {"jvm.xmx": best["param.jvm.xmx"],
                                "nginx.proxy_read_timeout": best["param.nginx.proxy_read_timeout"]},
                     "run_ids": [best["run_id"]]},
            "cluster": "/tmp/cluster.toml"}
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(info, indent=2))
    if with_runs:
        for r in rows:
            if r["run_id"] is None:
                continue
            cluster = snapshot(xmx=r["param.jvm.xmx"],
                               read_timeout=r["param.nginx.proxy_read_timeout"])
            if r["trial"] == 3:
                cluster["nodes"]["node2"]["passthru"]["worker_pool_size_core"] = 200
            write_run(results, r["run_id"], n=3000, duration=20.0, warmup=5.0,
                      seed=r["trial"] * 10 + r["repetition"], cluster=cluster)
    return sweep_dir
