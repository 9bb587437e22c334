"""The Locust master's side of eiperf's worker reports: rows, CPU and liveness per worker.

Each Locust worker adds eiperf's part (`loadtests.recorder.RequestRecorder.report`) to the
report it sends its master every 3 s and once at its end. `WorkerReports`, hooked on the
master's `worker_report` and `heartbeat_sent` events, converts the rows of each report (the
worker sends them packed) and writes them to `requests-<worker>.parquet` (one Parquet row
group per report), turns the worker's CPU time
into samples of its CPU share, and notes when it last heard from each worker. `check` (called
each second during the test) marks a worker lost when Locust counts it missing or gone.
`workers.json` lists the workers heard from (rewritten when one first reports, so it says who
connected even if the master gives up waiting); `close` writes it once more, final, and
`worker_cpu.parquet` beside the rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eicore.fsutil import atomic_write_text
from eicore.results import GENERATOR_NODE, WORKER_CPU_METRIC, metrics_schema
from loadtests.recorder import (
    PART_WRITE_OPTIONS,
    REPORT_KEY,
    file_safe,
    unpack_rows,
    warm_up_conversion,
)

WORKERS_JSON = "workers.json"
WORKER_CPU_FILE = "worker_cpu.parquet"
CPU_SOURCE = "locust"


@dataclass
class _Worker:
    name: str
    client_id: str
    host: str
    pid: int | None
    rows: int = 0
    reports: int = 0
    first_heard: float | None = None
    last_heard: float | None = None
    lost_at: float | None = None
    lost_seen: float | None = None
    #: open model: the worker's arrival counts so far (loadtests.open_model.ArrivalCounts)
    arrivals: dict[str, int] | None = None
    _cpu: tuple[float, float] | None = field(default=None, repr=False)  # (cpu_s, mono)


class WorkerReports:
    """Collects what the workers report to this master (see the module docstring)."""

    def __init__(self, out_dir: Path,
                 node_of: Callable[[str | None], str | None] | None = None) -> None:
        self.out_dir = Path(out_dir)
        #: nginx's upstream address -> node name (the cluster's; workers send addresses)
        self.node_of = node_of or (lambda addr: addr)
        self.workers: dict[str, _Worker] = {}  # by Locust client id
        self.cpu_rows: list[tuple[float, str, str, str, float]] = []
        self._writers: dict[str, Any] = {}
        self._closed = False
        warm_up_conversion()  # now, not in the event loop at the first report

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        part = data.get(REPORT_KEY)
        if not isinstance(part, dict) or self._closed:
            return
        now = time.time()
        w = self.workers.get(client_id)
        if w is None:
            w = self.workers[client_id] = _Worker(str(part.get("worker") or client_id), client_id,
                                                  str(part.get("host") or ""), part.get("pid"),
                                                  first_heard=now)
            self._write_summary()  # who has connected so far, should the master give up
        w.last_heard = now
        w.reports += 1
        if isinstance(part.get("arrivals"), dict):
            w.arrivals = part["arrivals"]
        cpu_s, mono = float(part.get("cpu_s", 0.0)), float(part.get("mono", 0.0))
        if w._cpu is not None and mono > w._cpu[1]:
            share = max(0.0, (cpu_s - w._cpu[0]) / (mono - w._cpu[1]) * 100.0)
            self.cpu_rows.append((now, GENERATOR_NODE, CPU_SOURCE,
                                  f"{WORKER_CPU_METRIC}.{w.name}", share))
        w._cpu = (cpu_s, mono)
        if part.get("rows"):
            self._write_rows(w, unpack_rows(part["rows"], self.node_of, w.name))

    def _write_rows(self, w: _Worker, table) -> None:
        import pyarrow.parquet as pq

        writer = self._writers.get(w.client_id)
        if writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"requests-{file_safe(w.name)}.parquet"
            if path.exists():  # two processes of one name (a worker restarted): keep both
                path = path.with_name(f"requests-{file_safe(w.name)}-{len(self._writers)}.parquet")
            writer = self._writers[w.client_id] = pq.ParquetWriter(path, table.schema,
                                                                   **PART_WRITE_OPTIONS)
        writer.write_table(table)
        w.rows += table.num_rows

    def on_heartbeat(self, client_id: str, timestamp: float, **_: Any) -> None:
        w = self.workers.get(client_id)
        if w is not None:
            w.last_heard = max(w.last_heard or 0.0, timestamp)

    def check(self, clients: Any, missing_state: str, now: float | None = None) -> list[str]:
        """Mark workers lost that Locust's `clients` no longer has or counts `missing_state`;
        returns the names newly lost. Call only while the test runs."""
        lost = []
        for cid, w in self.workers.items():
            if w.lost_at is not None:
                continue
            client = clients.get(cid)
            if client is None or client.state == missing_state:
                w.lost_at = w.last_heard or now or time.time()
                w.lost_seen = now or time.time()
                lost.append(w.name)
        return lost

    def summary(self) -> list[dict[str, Any]]:
        """One entry per worker, ordered by name (what workers.json holds)."""
        return [{k: v for k, v in asdict(w).items() if not k.startswith("_")}
                for w in sorted(self.workers.values(), key=lambda w: w.name)]

    def close(self) -> None:
        """Close the row files; write workers.json and the CPU samples."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(zip(*self.cpu_rows)) if self.cpu_rows else [[], [], [], [], []]
        table = pa.Table.from_arrays([pa.array(c, t.type) for c, t in
                                      zip(cols, metrics_schema(), strict=True)],
                                     schema=metrics_schema())
        tmp = self.out_dir / f".{WORKER_CPU_FILE}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(self.out_dir / WORKER_CPU_FILE)
        self._write_summary()

    def _write_summary(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / WORKERS_JSON, json.dumps(self.summary(), indent=1))


def read_workers(parts: Path) -> list[dict[str, Any]]:
    """workers.json as the master wrote it; [] when there is none (the master did not finish)."""
    try:
        return json.loads((Path(parts) / WORKERS_JSON).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
