"""Per-request recorder: one row per request, exact to the microsecond, naming its worker.

Hooked on Locust's `request` event; the hot path only adds a request's raw values to one flat
list, and `rows_table` converts a whole batch at once, in Arrow. Where the rows go depends on
the Locust process it runs in:

- standalone (one process): in batches, as Parquet row groups, to its own file
  `requests-<worker>.parquet`; `merge_request_files` joins the files at the end;
- a worker of a Locust master (local or on another host): nowhere on its own host. The rows
  ride in Locust's own report to the master (`report_to_master`, every 3 s and once at the
  end) as one Arrow IPC buffer, next to the statistics of the very same requests, and the
  master writes them (`loadtests.worker_reports`). So the rows of a run and Locust's totals
  are the same requests by construction, and a worker lost mid-run has delivered all but its
  last few seconds.

Locust's own percentiles are 2-significant-digit buckets; these rows give exact ones.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eicore.results import requests_schema

FLUSH_ROWS = 50_000
#: Values per request in the recorder's flat buffer (see `RequestRecorder.on_request`).
FIELDS = 9
FLUSH_SECONDS = 5.0
ERROR_CHARS = 200
#: The key of eiperf's part of a Locust worker report (`data[REPORT_KEY]`).
REPORT_KEY = "eiperf"
#: The request event's context key holding an open-model request's intended start (epoch s).
INTENDED_KEY = "intended"


_dict_get = dict.get  # Headers.get without its KeyError when the field is missing


def _joined(entries: list[tuple[str, str]]) -> str:
    """A field sent on several lines, as one value (RFC 9110 5.3: joined with ", ")."""
    return ", ".join(value for _field, value in entries)


def default_worker_name() -> str:
    """`<host>-<pid>`: what a Locust process calls itself when nobody named it."""
    return f"{socket.gethostname()}-{os.getpid()}"


def file_safe(name: str) -> str:
    """A worker name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "worker"


def encode_rows(table) -> bytes:
    """An Arrow table as one compressed Arrow IPC stream (what a worker report carries)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_rows(data: bytes):
    """The table `encode_rows` made."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _ints(values, type_):
    """Integers of a raw column, None and 0 both 0 (the hot path's `int(x or 0)`, in batch)."""
    import pyarrow as pa

    try:
        return pa.array(values, type_).fill_null(0)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. a float from a custom request event
        return pa.array([int(v or 0) for v in values], type_)


def rows_table(flat: list, node_of: Callable[[str | None], str | None], worker: str):
    """The raw rows `RequestRecorder.on_request` buffers as a table of requests_schema().

    `flat` holds FIELDS values per request, one request after the other: start time, scenario,
    name, response time in ms, response length, status or None, error text or None, upstream
    header or None, intended start or None. Here, per column (a slice) and in Arrow: latency
    in whole µs (truncated, as `int(ms * 1000.0)`), bytes and status with None as 0, `ok` as
    "no error", each distinct upstream mapped once through `node_of`, and the worker's name.
    An open-model request (intended start given) has its latency from the intended start --
    the wait for its turn plus the response time -- and `service_us` from the send.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(flat) % FIELDS:
        raise ValueError(f"a flat row buffer holds {FIELDS} values per request")
    ts, scenario, name, ms, length, status, error, upstream, intended = (
        flat[i::FIELDS] for i in range(FIELDS))
    errors = pa.array(error, pa.string())
    ups = pa.array(upstream, pa.string()).dictionary_encode()
    nodes = pa.array([node_of(a) for a in ups.dictionary.to_pylist()],
                     pa.string()).take(ups.indices)
    if nodes.null_count and (unknown := node_of(None)) is not None:
        nodes = nodes.fill_null(unknown)
    starts = pa.array(ts, pa.float64())
    service = pc.multiply(pa.array(ms, pa.float64()), 1000.0).cast(pa.int64(), safe=False)
    planned = pa.array(intended, pa.float64())
    if planned.null_count == len(planned):  # a closed run: latency is the service time
        latency, service = service, pa.nulls(len(ts), pa.int64())
    else:  # the wait from the intended start to the send (never negative) plus the service
        wait = pc.max_element_wise(pc.subtract(starts, planned), 0.0)
        waited = pc.add(pc.multiply(wait, 1e6).cast(pa.int64(), safe=False), service)
        latency = pc.if_else(pc.is_null(planned), service, waited)
        service = pc.if_else(pc.is_null(planned), pa.scalar(None, pa.int64()), service)
    return pa.Table.from_arrays([
        starts, pa.array(scenario, pa.string()), pa.array(name, pa.string()), latency,
        _ints(length, pa.int64()), _ints(status, pa.int32()), pc.is_null(errors), errors,
        nodes, pa.repeat(pa.scalar(worker, pa.string()), len(ts)), planned, service,
    ], schema=requests_schema())


class RequestRecorder:
    """Collects request rows in memory; writes them to a Parquet file in batches (`out_dir`)
    or, with `stream=True` (a Locust worker), hands them to the next report to the master."""

    def __init__(self, out_dir: Path | None, upstream_header: str = "X-Upstream-Addr",
                 node_of: Callable[[str | None], str | None] | None = None,
                 worker: str | None = None, stream: bool = False) -> None:
        self.worker = worker or default_worker_name()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.stream = stream
        if not stream and self.out_dir is None:
            raise ValueError("a recorder that does not stream needs an out_dir")
        self.path = (self.out_dir / f"requests-{file_safe(self.worker)}.parquet"
                     if self.out_dir is not None else None)
        self.upstream_header = upstream_header
        self.node_of = node_of or (lambda addr: addr)
        self.rows: list = []  # FIELDS values per request, flat (cheaper than a tuple each)
        self._extend = self.rows.extend
        # geventhttpclient's Headers (a FastResponse's) keep each field under its lower-cased
        # name; imported here, not at the top: the CLI imports this module without Locust
        from geventhttpclient.header import Headers

        self._headers_type = Headers
        self._upstream_key = upstream_header.lower()
        self.count = 0
        self._writer = None
        self._closed = False
        self.dropped = 0
        self._last_flush = time.monotonic()
        self._warm_up()

    @staticmethod
    def _warm_up() -> None:
        """Load pyarrow (and the pandas it pulls in on the first `pa.array`) and the compute
        kernels `rows_table` uses now, at init, by converting two made-up rows.

        Done lazily at the first flush it blocked Locust's event loop mid-run (787 ms seen
        here; the first integer column and the compute kernels alone ~7 ms).
        """
        import pyarrow.parquet  # noqa: F401

        row = [0.0, "", "", 0.0, 0, 200, None, None, None]
        rows_table([*row, *row[:-1], 0.0], lambda addr: addr, "")

    # -- hot path: called by Locust for every request. It only reads what would be gone
    # later (the response's status and upstream header, the exception's text) and adds the raw
    # values to one flat list; every conversion waits for `_take`, once per batch, in Arrow.
    # (Each µs here is ~1 % of what a FastHttpUser request costs Locust: bench_generator.)
    def on_request(self, request_type: str, name: str, response_time: float,
                   response_length: int, response: Any = None, context: Any = None,
                   exception: Any = None, start_time: float | None = None, url: Any = None,
                   **_: Any) -> None:
        if self._closed:  # a straggler after the file was closed: counted, not written
            self.dropped += 1
            return
        if response is None:
            status = upstream = None
        else:
            status = getattr(response, "status_code", None)
            headers = getattr(response, "headers", None)
            if headers.__class__ is self._headers_type:  # a FastResponse's: a dict lookup
                upstream = _dict_get(headers, self._upstream_key)
                if upstream is not None:
                    upstream = upstream[1] if upstream.__class__ is tuple else _joined(upstream)
            else:
                upstream = None if headers is None else headers.get(self.upstream_header)
        self._extend((
            time.time() if start_time is None else start_time,
            context.get("scenario", "") if context else "",
            name,
            response_time,
            response_length,
            status,
            None if exception is None else str(exception)[:ERROR_CHARS],
            upstream,
            context.get(INTENDED_KEY) if context else None,
        ))
        if not self.stream and (len(self.rows) >= FLUSH_ROWS * FIELDS
                                or time.monotonic() - self._last_flush > FLUSH_SECONDS):
            self.flush()

    def _take(self):
        """The buffered rows as a table of requests_schema() (upstreams mapped to node names),
        the buffer emptied; None when there are none."""
        if not self.rows:
            return None
        flat, self.rows = self.rows, []
        self._extend = self.rows.extend
        self.count += len(flat) // FIELDS
        return rows_table(flat, self.node_of, self.worker)

    def flush(self) -> None:
        """Write the buffered rows as one row group (a streaming recorder keeps them for the
        next report)."""
        self._last_flush = time.monotonic()
        if self.stream:
            return
        table = self._take()
        if table is None:
            return
        import pyarrow.parquet as pq

        if self._writer is None:
            assert self.out_dir is not None and self.path is not None
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)

    def report(self, wanted: bool = True) -> dict[str, Any]:
        """eiperf's part of a worker report: who this worker is, its CPU time so far, and the
        rows since the previous report (dropped, not sent, when the master wants none)."""
        table = self._take()
        times = os.times()
        return {
            "worker": self.worker, "host": socket.gethostname(), "pid": os.getpid(),
            "cpu_s": times.user + times.system, "mono": time.monotonic(),
            "rows": encode_rows(table) if table is not None and wanted else None,
        }

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def merge_request_files(parts_dir: Path, out_file: Path) -> int:
    """Join every requests-*.parquet under `parts_dir` into `out_file`, sorted by time.

    A part a crashed process left without its footer is skipped (its rows are lost, the
    others are kept). Returns the number of rows written. Written atomically.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for part in sorted(Path(parts_dir).glob("requests-*.parquet")):
        try:
            tables.append(pq.read_table(part))
        except (OSError, pa.ArrowInvalid):
            continue
    schema = requests_schema()
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if table.num_rows:
        table = table.sort_by("ts")
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out_file)
    return table.num_rows
