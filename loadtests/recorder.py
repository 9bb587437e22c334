"""Per-request recorder: one row per request, exact to the microsecond.

Hooked on Locust's `request` event. The hot path only appends a tuple; rows are written in
batches as Parquet row groups to one file per Locust process (`requests-<pid>.parquet`), and
`merge_request_files` joins them at the end. Locust's own percentiles are 2-significant-digit
buckets; these rows give exact ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eicore.results import requests_schema

FLUSH_ROWS = 50_000
FLUSH_SECONDS = 5.0
ERROR_CHARS = 200


class RequestRecorder:
    """Collects request rows in memory and appends them to a Parquet file in batches."""

    def __init__(self, out_dir: Path, upstream_header: str = "X-Upstream-Addr",
                 node_of: Callable[[str | None], str | None] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / f"requests-{os.getpid()}.parquet"
        self.upstream_header = upstream_header
        self.node_of = node_of or (lambda addr: addr)
        self.rows: list[tuple] = []
        self.count = 0
        self._writer = None
        self._closed = False
        self.dropped = 0
        self._last_flush = time.monotonic()
        self._warm_up()

    @staticmethod
    def _warm_up() -> None:
        """Load pyarrow (and the pandas it pulls in on the first `pa.array`) now, at init.

        Done lazily at the first flush it blocked Locust's event loop mid-run (787 ms seen here).
        """
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401

        pa.array([0.0], pa.float64())
        pa.array(["x"], pa.string())

    # -- hot path: called by Locust for every request
    def on_request(self, request_type: str, name: str, response_time: float,
                   response_length: int, response: Any = None, context: Any = None,
                   exception: Any = None, start_time: float | None = None, **_: Any) -> None:
        if self._closed:  # a straggler after the file was closed: counted, not written
            self.dropped += 1
            return
        status = 0
        upstream = None
        if response is not None:
            status = getattr(response, "status_code", 0) or 0
            headers = getattr(response, "headers", None)
            if headers is not None:
                upstream = headers.get(self.upstream_header)
        self.rows.append((
            start_time if start_time is not None else time.time(),
            (context or {}).get("scenario", ""),
            name,
            int(response_time * 1000.0),
            int(response_length or 0),
            int(status),
            exception is None,
            None if exception is None else str(exception)[:ERROR_CHARS],
            upstream,
        ))
        if len(self.rows) >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group (upstream addresses mapped to node names)."""
        self._last_flush = time.monotonic()
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self.rows = self.rows, []
        cols = list(zip(*rows))
        nodes = {a: self.node_of(a) for a in set(cols[8])}
        schema = requests_schema()
        table = pa.Table.from_arrays([
            pa.array(cols[0], pa.float64()), pa.array(cols[1], pa.string()),
            pa.array(cols[2], pa.string()), pa.array(cols[3], pa.int64()),
            pa.array(cols[4], pa.int64()), pa.array(cols[5], pa.int32()),
            pa.array(cols[6], pa.bool_()), pa.array(cols[7], pa.string()),
            pa.array([nodes[a] for a in cols[8]], pa.string()),
        ], schema=schema)
        if self._writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, schema, compression="zstd")
        self._writer.write_table(table)
        self.count += len(rows)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def merge_request_files(parts_dir: Path, out_file: Path) -> int:
    """Join every requests-<pid>.parquet under `parts_dir` into `out_file`, sorted by time.

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
