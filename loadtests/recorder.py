"""Per-request recorder: one row per request, exact to the microsecond, naming its worker.

Hooked on Locust's `request` event. The hot path packs a request's values into nine 8-byte
fields (`ROW`) at the end of one bytearray -- its strings (scenario, name, upstream, error) as
small codes of the batch's string table -- and `rows_table` converts a whole batch at once, in
numpy and Arrow. Nothing of a request outlives its event: a batch of Python objects held for seconds
cost ~2 µs per request more at the flush than the rows themselves (their deallocation and the
pointer-chasing of 50,000 scattered floats and strings), plus the collector's passes over the
list holding them (bench/bench_generator.py measures what the recorder costs a load).
Where the rows go depends on the Locust process it runs in:

- standalone (one process): in batches (once a second it looks: every FLUSH_SECONDS, or
  sooner at FLUSH_ROWS), as Parquet row groups, to its own file `requests-<worker>.parquet`;
  `merge_request_files` joins the files at the end;
- a worker of a Locust master (local or on another host): nowhere on its own host. The rows
  ride in Locust's own report to the master (`report_to_master`, every 3 s and once at the
  end) as packed, zstd-compressed (`pack_rows`), next to the statistics of the very same
  requests, and the master converts and writes them (`loadtests.worker_reports`). So the rows
  of a run and Locust's totals are the same requests by construction, and a worker lost
  mid-run has delivered all but its last few seconds.

Locust's own percentiles are 2-significant-digit buckets; these rows give exact ones.
"""

from __future__ import annotations

import math
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eicore.results import requests_schema

FLUSH_ROWS = 50_000
FLUSH_SECONDS = 5.0
#: How often a standalone recorder looks whether a batch is due (seconds).
FLUSH_CHECK_S = 1.0
#: One request in the hot path's buffer, 8 bytes a field: start time, scenario code, name
#: code, response time in ms, response length, status, error code, upstream code, intended
#: start (NaN: none). Integers as integers: a double field converts an int through a float
#: object, an allocation per field.
ROW = struct.Struct("<dqqdqqqqd")
ROW_SIZE = ROW.size
_pack_into = ROW.pack_into
ROW_DTYPE = [("ts", "<f8"), ("scenario", "<i8"), ("name", "<i8"), ("ms", "<f8"),
             ("length", "<i8"), ("status", "<i8"), ("error", "<i8"), ("upstream", "<i8"),
             ("intended", "<f8")]
ERROR_CHARS = 200
#: How a standalone process writes its part file while the load runs: dictionaries only for
#: the columns with few values (the writer otherwise builds one for each column, timestamps and
#: latencies too, and gives up on it) and statistics only for ts (what readers filter on):
#: the write takes 15-30 % less CPU per row. `merge_request_files` writes requests.parquet.
PART_WRITE_OPTIONS = {"compression": "zstd", "write_statistics": ["ts"],
                      "use_dictionary": ["scenario", "name", "status", "ok", "error", "node",
                                         "worker"]}
#: The key of eiperf's part of a Locust worker report (`data[REPORT_KEY]`).
REPORT_KEY = "eiperf"
#: The request event's context key holding an open-model request's intended start (epoch s).
INTENDED_KEY = "intended"
NAN = math.nan


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


def pack_rows(rows: bytes, strings: list[str | None]) -> dict[str, Any]:
    """A batch of packed rows as a worker report carries them: zstd-compressed as they are
    (cheap for the worker, ~1/10 of the bytes), with the batch's string table."""
    import pyarrow as pa

    return {"zstd": pa.compress(rows, codec="zstd", asbytes=True), "size": len(rows),
            "strings": strings}


def unpack_rows(packed: dict[str, Any], node_of: Callable[[str | None], str | None],
                worker: str):
    """The table of requests_schema() a `pack_rows` batch holds (what the master writes)."""
    import pyarrow as pa

    rows = pa.decompress(packed["zstd"], int(packed["size"]), codec="zstd", asbytes=True)
    return rows_table(rows, list(packed["strings"]), node_of, worker)


class StringCodes(dict):
    """A batch's strings as the numbers its row buffer holds: `codes[text]` is the text's code
    (given at its first use), `strings[code]` the text; code 0 is None (no such value)."""

    def __init__(self) -> None:
        super().__init__()
        self.strings: list[str | None] = [None]

    def __missing__(self, text: str) -> int:
        code = self[text] = len(self.strings)
        self.strings.append(text)
        return code


def _number(value: Any, default: float) -> float:
    """A request event's value as a float; `default` for None or what is no number."""
    try:
        return default if value is None else float(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _integer(value: Any) -> int:
    """A request event's count as an integer (truncated); 0 for None or what is no number."""
    number = _number(value, 0.0)
    return int(number) if math.isfinite(number) and abs(number) < 2.0**63 else 0


def coerced_row(ts: Any, scenario: int, name: int, ms: Any, length: Any, status: Any,
                error: int, upstream: int, intended: Any) -> tuple:
    """A row's values as ROW packs them, for events whose values are not all of its types (a
    custom event's None, text or float length): what is no number becomes 0 (an intended
    start: none)."""
    return (_number(ts, time.time()), scenario, name, _number(ms, 0.0), _integer(length),
            _integer(status), error, upstream, _number(intended, NAN))


def rows_table(buffer, strings: list[str | None],
               node_of: Callable[[str | None], str | None], worker: str):
    """The rows `RequestRecorder.on_request` packed (ROW each, strings as codes of `strings`)
    as a table of requests_schema().

    Per column, in numpy and Arrow: latency in whole µs (truncated, as `int(ms * 1000.0)`),
    bytes and status as integers, `ok` as "no error", each distinct upstream mapped once
    through `node_of` (a request without one: `node_of(None)`), and the worker's name.
    An open-model request (intended start given) has its latency from the intended start --
    the wait for its turn plus the response time -- and `service_us` from the send.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(buffer) % ROW_SIZE:
        raise ValueError(f"a row buffer holds {ROW_SIZE} bytes per request")
    rows = np.frombuffer(buffer, dtype=ROW_DTYPE)
    n = len(rows)
    ts, scenario, name, ms, length, status, error, upstream, intended = (
        rows[field].copy() for field, _ in ROW_DTYPE)  # copies: the buffer is used again
    dictionary = pa.array(strings, pa.string())

    def texts(codes):
        return dictionary.take(pa.array(codes))

    unknown = node_of(None)
    node_names: list[str | None] = [unknown] * len(strings)
    for code in np.unique(upstream).tolist():
        if code:
            found = node_of(strings[code])
            node_names[code] = unknown if found is None else found
    nodes = pa.array(node_names, pa.string()).take(pa.array(upstream))
    errors = texts(error)
    starts = pa.array(ts, pa.float64())
    service = pa.array((ms * 1000.0).astype(np.int64), pa.int64())
    planned = pa.array(intended, pa.float64(), from_pandas=True)  # NaN: no intended start
    if planned.null_count == n:  # a closed run: latency is the service time
        latency, service = service, pa.nulls(n, pa.int64())
    else:  # the wait from the intended start to the send (never negative) plus the service
        wait = pc.max_element_wise(pc.subtract(starts, planned), 0.0)
        waited = pc.add(pc.multiply(wait, 1e6).cast(pa.int64(), safe=False), service)
        latency = pc.if_else(pc.is_null(planned), service, waited)
        service = pc.if_else(pc.is_null(planned), pa.scalar(None, pa.int64()), service)
    return pa.Table.from_arrays([
        starts, texts(scenario), texts(name), latency,
        pa.array(length, pa.int64()),
        pa.array(status.astype(np.int32), pa.int32()), pc.is_null(errors), errors,
        nodes, pa.repeat(pa.scalar(worker, pa.string()), n), planned, service,
    ], schema=requests_schema())


def warm_up_conversion() -> None:
    """Load pyarrow (and the pandas it pulls in on the first `pa.array`) and the compute
    kernels `rows_table` uses now, by converting two made-up rows: for a process that will
    convert rows (a standalone recorder, a master), at init.

    Done lazily at the first flush it blocked Locust's event loop mid-run (787 ms seen here;
    the first integer column and the compute kernels alone ~7 ms).
    """
    import pyarrow.parquet  # noqa: F401

    codes = StringCodes()
    rows = ROW.pack(0.0, codes[""], codes[""], 0.0, 0, 200, 0, 0, NAN)
    rows_table(rows + ROW.pack(0.0, 1, 1, 0.0, 0, 200, 0, 0, 0.0), codes.strings,
               lambda addr: addr, "")


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
        # FLUSH_ROWS rows of room, kept from batch to batch: a page the process gets anew costs
        # ~5 µs here (a first touch in a VM), one every 57 requests
        self._buffer = bytearray(FLUSH_ROWS * ROW_SIZE)
        self._new_batch()
        # geventhttpclient's Headers (a FastResponse's) keep each field under its lower-cased
        # name; imported here, not at the top: the CLI imports this module without Locust
        from geventhttpclient.header import Headers

        self._headers_type = Headers
        self._upstream_key = upstream_header.lower()
        self.count = 0
        self._writer = None
        self._closed = False
        self.dropped = 0
        if stream:  # a worker only packs its rows (its master converts them)
            pack_rows(b"", [None])
        else:
            warm_up_conversion()
        self._last_flush = time.monotonic()
        self._flusher = None
        if not stream:  # batches are due by time and size; the hot path never looks
            import gevent

            self._flusher = gevent.spawn(self._flush_when_due)

    def _new_batch(self) -> None:
        """An empty batch in the same room: filled up to `_end`, its own string table."""
        self._end = 0
        self._codes = StringCodes()

    # -- hot path: called by Locust for every request. It only reads what would be gone
    # later (the response's status and upstream header, the exception's text) and packs the
    # values into the batch's buffer in place (no object made, none kept); every conversion
    # waits for `_take`, once per batch.
    # (Each µs here is ~1 % of what a FastHttpUser request costs Locust: bench_generator.)
    def on_request(self, request_type: str, name: str, response_time: float,
                   response_length: int, response: Any = None, context: Any = None,
                   exception: Any = None, start_time: float | None = None, url: Any = None,
                   **_: Any) -> None:
        if self._closed:  # a straggler after the file was closed: counted, not written
            self.dropped += 1
            return
        code = self._codes
        if response is None:
            status = upstream = 0
        else:
            status = getattr(response, "status_code", None) or 0
            headers = getattr(response, "headers", None)
            if headers.__class__ is self._headers_type:  # a FastResponse's: a dict lookup
                found = _dict_get(headers, self._upstream_key)
                upstream = 0 if found is None else code[
                    found[1] if found.__class__ is tuple else _joined(found)]
            else:
                found = None if headers is None else headers.get(self.upstream_header)
                upstream = 0 if found is None else code[found]
        if context:
            scenario = code[context.get("scenario", "")]
            intended = context.get(INTENDED_KEY, NAN)
        else:
            scenario, intended = code[""], NAN
        error = 0 if exception is None else code[str(exception)[:ERROR_CHARS]]
        if start_time is None:
            start_time = time.time()
        end = self._end
        try:
            _pack_into(self._buffer, end, start_time, scenario, code[name], response_time,
                       response_length or 0, status, error, upstream, intended)
        except (struct.error, TypeError, OverflowError):  # the batch is full, or odd values
            self._pack_slowly(start_time, scenario, code[name], response_time,
                              response_length, status, error, upstream, intended)
        self._end = end + ROW_SIZE

    def _pack_slowly(self, *values: Any) -> None:
        """A row the hot path could not pack: more room for a full batch (twice as much), and
        a custom event's values made numbers (`coerced_row`)."""
        if self._end + ROW_SIZE > len(self._buffer):
            bigger = bytearray(2 * len(self._buffer))
            bigger[:self._end] = memoryview(self._buffer)[:self._end]
            self._buffer = bigger
        try:
            _pack_into(self._buffer, self._end, *values)
        except (struct.error, TypeError, OverflowError):
            _pack_into(self._buffer, self._end, *coerced_row(*values))

    def _take(self, convert: Callable[[memoryview, list[str | None]], Any]) -> Any:
        """The buffered rows as `convert(rows, strings)` makes them, the buffer emptied; None
        when there are none. `convert` copies what it keeps: the buffer is the next batch's."""
        if not self._end:
            return None
        with memoryview(self._buffer)[:self._end] as rows:
            out = convert(rows, self._codes.strings)
            self.count += len(rows) // ROW_SIZE
        self._new_batch()
        return out

    def _table(self, rows: memoryview, strings: list[str | None]):
        """The rows as a table of requests_schema(), upstreams mapped to node names."""
        return rows_table(rows, strings, self.node_of, self.worker)

    def _flush_when_due(self) -> None:
        """A standalone recorder's batches: a row group every FLUSH_SECONDS, or as soon as
        FLUSH_ROWS are waiting (looked at every FLUSH_CHECK_S, in Locust's event loop)."""
        import gevent

        while not self._closed:
            gevent.sleep(FLUSH_CHECK_S)
            if (self._end >= FLUSH_ROWS * ROW_SIZE
                    or time.monotonic() - self._last_flush >= FLUSH_SECONDS):
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group (a streaming recorder keeps them for the
        next report)."""
        self._last_flush = time.monotonic()
        if self.stream:
            return
        table = self._take(self._table)
        if table is None:
            return
        import pyarrow.parquet as pq

        if self._writer is None:
            assert self.out_dir is not None and self.path is not None
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, **PART_WRITE_OPTIONS)
        self._writer.write_table(table)

    def report(self, wanted: bool = True) -> dict[str, Any]:
        """eiperf's part of a worker report: who this worker is, its CPU time so far, and the
        rows since the previous report (dropped, not sent, when the master wants none).

        The rows go as packed (`pack_rows`): the master converts them (`unpack_rows`), so a
        worker -- the process that makes the load -- never runs the conversion."""
        packed = self._take(pack_rows)
        times = os.times()
        return {
            "worker": self.worker, "host": socket.gethostname(), "pid": os.getpid(),
            "cpu_s": times.user + times.system, "mono": time.monotonic(),
            "rows": packed if wanted else None,
        }

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
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
