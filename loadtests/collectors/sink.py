"""Where sampled rows go: a crash-safe spool during the run, one Parquet file at the end.

A Parquet file is only readable once its footer is written, so a collector killed mid-run
(SIGKILL, OOM) would leave nothing usable if it wrote Parquet directly. Instead rows are
buffered and every `flush_s` seconds appended as one Arrow IPC record batch to `<out>.spool`
(a stream format that stays readable up to its last complete batch). `close()` -- and, after
a crash, `finish_spool()` -- turns the spool into `<out>` (metrics_schema, row groups of up to
ROW_GROUP_ROWS rows) with an atomic rename, then removes the spool. So the result file is
either absent or complete and valid, and a crash loses at most the last `flush_s` seconds.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Iterable
from itertools import accumulate
from pathlib import Path

from eicore.results import metrics_schema
from loadtests.collectors.base import Sample

ROW_GROUP_ROWS = 65536


def spool_path(out_path: str | os.PathLike[str]) -> Path:
    """The spool that belongs to a metrics file."""
    out = Path(out_path)
    return out.with_name(out.name + ".spool")


class MetricsSink:
    """Buffers Samples; appends them to the spool every `flush_s` s; `close()` writes Parquet."""

    def __init__(self, out_path: str | os.PathLike[str], flush_s: float = 10.0) -> None:
        import pyarrow as pa

        self.out_path = Path(out_path)
        self.flush_s = flush_s
        self.rows_written = 0
        self._schema = metrics_schema()
        self._columns: tuple[list, ...] = ([], [], [], [], [])
        self._last_flush = time.monotonic()
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(spool_path(self.out_path), "wb")  # noqa: SIM115 - closed in close()
        self._writer = pa.ipc.new_stream(self._file, self._schema)
        self._file.flush()

    def add(self, rows: Iterable[Sample]) -> None:
        ts, node, source, metric, value = self._columns
        for r in rows:
            ts.append(r[0])
            node.append(r[1])
            source.append(r[2])
            metric.append(r[3])
            value.append(r[4])

    @property
    def buffered(self) -> int:
        return len(self._columns[0])

    def maybe_flush(self) -> None:
        """Flush when `flush_s` has passed since the last flush."""
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the spool as one batch (handed to the OS at once)."""
        import pyarrow as pa

        self._last_flush = time.monotonic()
        if not self.buffered:
            return
        batch = pa.record_batch([_column(c, f.type) for c, f in
                                 zip(self._columns, self._schema, strict=True)],
                                schema=self._schema)
        self._writer.write_batch(batch)
        self._file.flush()
        self.rows_written += batch.num_rows
        for c in self._columns:
            c.clear()

    def close(self) -> int:
        """Flush, close the spool and write the Parquet file; returns the number of rows."""
        if self._file.closed:
            return self.rows_written
        try:
            self.flush()
            self._writer.close()
        finally:
            self._file.close()
        return finish_spool(self.out_path)


def _column(values: list, type_):
    """An Arrow array of floats or strings built from raw buffers.

    `pa.array()` imports pandas on its first call (~0.4-1.2 s of CPU, seen in the collector's
    steady state at its first flush); building the buffers directly does not.
    """
    import pyarrow as pa

    if pa.types.is_floating(type_):
        return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(array("d", values))])
    encoded = [v.encode() for v in values]
    offsets = array("i", [0])
    offsets.extend(accumulate(len(e) for e in encoded))
    return pa.Array.from_buffers(type_, len(values),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def finish_spool(out_path: str | os.PathLike[str]) -> int:
    """Write `out_path` from its spool (up to the last complete batch) and remove the spool.

    Returns the number of rows written; with no spool left, the rows already in `out_path`
    (0 when there is neither). Safe to call again, and after the collector was killed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_path)
    spool = spool_path(out)
    if not spool.exists():
        return pq.ParquetFile(out).metadata.num_rows if out.exists() else 0
    schema = metrics_schema()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            pending: list[pa.RecordBatch] = []
            for batch in _complete_batches(spool):
                pending.append(batch)
                if sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema))
                    rows += sum(b.num_rows for b in pending)
                    pending = []
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema))
                rows += sum(b.num_rows for b in pending)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    spool.unlink(missing_ok=True)
    return rows


def _complete_batches(spool: Path) -> Iterable:
    """The record batches of a spool, stopping quietly at a truncated tail."""
    import pyarrow as pa

    with pa.OSFile(str(spool), "rb") as f:
        try:
            reader = pa.ipc.open_stream(f)
        except (pa.ArrowInvalid, OSError):
            return  # killed before the schema was written: no rows
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError):
                return  # the batch being written when the collector died
