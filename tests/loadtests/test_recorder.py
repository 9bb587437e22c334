"""The per-request recorder's rows, without Locust or a testbed: what a request event carries
becomes the row it always did (the hot path keeps raw values; `rows_table` converts a batch),
on a worker's stream as in a standalone process's Parquet file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from geventhttpclient.header import Headers

from eicore.results import requests_schema
from loadtests.recorder import ROW, RequestRecorder, StringCodes, rows_table, unpack_rows


class Response:
    """What the recorder reads of a FastResponse: `status_code` (a property there) and
    `headers` (geventhttpclient's case-insensitive Headers; None when nothing came back)."""

    def __init__(self, status, headers=None) -> None:
        self._status = status
        self.headers = headers

    @property
    def status_code(self):
        return self._status


def upstream(addr: str) -> Headers:
    return Headers([("Server", "nginx"), ("x-upstream-addr", addr), ("Content-Length", "3")])


def node_of(addr: str | None) -> str | None:
    return {"127.0.0.1:8290": "node1", "127.0.0.1:8291": "node2"}.get(addr or "", addr)


EVENTS = [  # (request event keyword arguments, the row it must give)
    (dict(request_type="GET", name="static", response_time=1.2345, response_length=3,
          response=Response(200, upstream("127.0.0.1:8290")), context={"scenario": "static"},
          exception=None, start_time=1000.5, url="http://lb/static"),
     dict(ts=1000.5, scenario="static", name="static", latency_us=1234, bytes=3, status=200,
          ok=True, error=None, node="node1")),
    (dict(request_type="POST", name="soap_http", response_time=0.0009, response_length=None,
          response=Response(500, upstream("127.0.0.1:8291")),
          context={"scenario": "soap_http", "user": 7}, exception=RuntimeError("HTTP 500" * 40),
          start_time=1001.0),
     dict(ts=1001.0, scenario="soap_http", name="soap_http", latency_us=0, bytes=0, status=500,
          ok=False, error=("HTTP 500" * 40)[:200], node="node2")),
    # a connection error: Locust's ErrorResponse (status 0, no headers)
    (dict(request_type="GET", name="console", response_time=10007.9999, response_length=0,
          response=Response(0), context={}, exception=ConnectionRefusedError(111, "refused"),
          start_time=1002.25),
     dict(ts=1002.25, scenario="", name="console", latency_us=10007999, bytes=0, status=0,
          ok=False, error="[Errno 111] refused", node=None)),
    # a custom event (no response, no context, an int time, a float length, a status of None)
    (dict(request_type="X", name="custom", response_time=5, response_length=7.0,
          start_time=1003.0),
     dict(ts=1003.0, scenario="", name="custom", latency_us=5000, bytes=7, status=0, ok=True,
          error=None, node=None)),
    (dict(request_type="GET", name="none", response_time=1.0, response_length=1,
          response=Response(None, upstream("10.0.0.9:8280")), context=None, exception=None,
          start_time=1004.0),
     dict(ts=1004.0, scenario="", name="none", latency_us=1000, bytes=1, status=0, ok=True,
          error=None, node="10.0.0.9:8280")),
    # open model: sent 0.25 s after its intended start, so its latency counts the wait
    (dict(request_type="POST", name="soap_http", response_time=2.0, response_length=3,
          response=Response(200, upstream("127.0.0.1:8290")),
          context={"scenario": "soap_http", "intended": 1004.75}, start_time=1005.0),
     dict(ts=1005.0, scenario="soap_http", name="soap_http", latency_us=252000, bytes=3,
          status=200, ok=True, error=None, node="node1", intended_ts=1004.75, service_us=2000)),
    # no upstream header (nginx answered itself), and one sent on two lines (joined)
    (dict(request_type="GET", name="static", response_time=1.0, response_length=3,
          response=Response(200, Headers([("Server", "nginx")])), context={"scenario": "static"},
          start_time=1004.5),
     dict(ts=1004.5, scenario="static", name="static", latency_us=1000, bytes=3, status=200,
          ok=True, error=None, node=None)),
    (dict(request_type="GET", name="static", response_time=1.0, response_length=3,
          response=Response(200, Headers([("X-Upstream-Addr", "10.0.0.1:80"),
                                          ("x-upstream-addr", "10.0.0.2:80")])),
          context={"scenario": "static"}, start_time=1004.6),
     dict(ts=1004.6, scenario="static", name="static", latency_us=1000, bytes=3, status=200,
          ok=True, error=None, node="10.0.0.1:80, 10.0.0.2:80")),
    # a response whose headers are a plain mapping (not a FastResponse's)
    (dict(request_type="GET", name="other", response_time=1.0, response_length=3,
          response=Response(200, {"X-Upstream-Addr": "127.0.0.1:8291"}), start_time=1004.7),
     dict(ts=1004.7, scenario="", name="other", latency_us=1000, bytes=3, status=200,
          ok=True, error=None, node="node2")),
    # open model, sent "before" its intended start (clocks): no negative wait
    (dict(request_type="POST", name="soap_http", response_time=3.0, response_length=3,
          response=Response(200, upstream("127.0.0.1:8291")),
          context={"scenario": "soap_http", "intended": 1006.5}, start_time=1006.0),
     dict(ts=1006.0, scenario="soap_http", name="soap_http", latency_us=3000, bytes=3,
          status=200, ok=True, error=None, node="node2", intended_ts=1006.5, service_us=3000)),
]


def expected(worker: str) -> list[dict]:
    return [{"intended_ts": None, "service_us": None, **row, "worker": worker}
            for _, row in EVENTS]


def test_a_worker_streams_each_request_as_its_row() -> None:
    rec = RequestRecorder(None, worker="gen1-1", stream=True)
    for kwargs, _ in EVENTS:
        rec.on_request(**kwargs)
    report = rec.report()
    assert set(report["rows"]) == {"zstd", "size", "strings"}  # packed: the master converts
    assert len(report["rows"]["zstd"]) < report["rows"]["size"] == len(EVENTS) * ROW.size
    table = unpack_rows(report["rows"], node_of, "gen1-1")
    assert table.schema == requests_schema()
    assert table.to_pylist() == expected("gen1-1")
    assert (rec.count, report["worker"]) == (len(EVENTS), "gen1-1")
    assert rec.report()["rows"] is None  # nothing new since the last report
    rec.on_request(**EVENTS[0][0])
    assert rec.report(wanted=False)["rows"] is None and rec.count == len(EVENTS) + 1


def test_a_standalone_process_writes_row_groups_then_drops_stragglers(tmp_path: Path) -> None:
    rec = RequestRecorder(tmp_path, node_of=node_of, worker="local/1")
    for kwargs, _ in EVENTS[:2]:
        rec.on_request(**kwargs)
    rec.flush()
    for kwargs, _ in EVENTS[2:]:
        rec.on_request(**kwargs)
    rec.close()
    rec.on_request(**EVENTS[0][0])
    assert rec.path == tmp_path / "requests-local_1.parquet"
    file = pq.ParquetFile(rec.path)
    assert file.metadata.num_row_groups == 2
    assert file.read().to_pylist() == expected("local/1")
    assert (rec.count, rec.dropped) == (len(EVENTS), 1)


def test_a_request_without_start_time_is_stamped_now() -> None:
    rec = RequestRecorder(None, worker="w", stream=True)
    before = time.time()
    rec.on_request("GET", "x", 1.0, 1)
    (row,) = unpack_rows(rec.report()["rows"], lambda a: a, "w").to_pylist()
    assert before <= row["ts"] <= time.time()
    assert (row["node"], row["status"], row["ok"]) == (None, 0, True)


def test_node_of_none_fills_requests_without_upstream() -> None:
    codes = StringCodes()
    row = ROW.pack(1.0, codes["s"], codes["n"], 1.0, 1, 200, 0, 0, float("nan"))
    table = rows_table(row * 2, codes.strings, lambda a: "unknown" if a is None else a, "w")
    assert table.column("node").to_pylist() == ["unknown", "unknown"]
    with pytest.raises(ValueError):
        rows_table(row + b"x", codes.strings, node_of, "w")


def test_a_standalone_recorder_writes_a_batch_when_due(tmp_path: Path, monkeypatch) -> None:
    """Batches are due by time (FLUSH_SECONDS) or size (FLUSH_ROWS), looked at by the
    recorder's own greenlet in Locust's event loop: the hot path never looks."""
    import gevent

    import loadtests.recorder as recorder

    monkeypatch.setattr(recorder, "FLUSH_CHECK_S", 0.02)
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.15)
    rec = RequestRecorder(tmp_path, node_of=node_of, worker="w")
    for kwargs, _ in EVENTS[:2]:
        rec.on_request(**kwargs)
    gevent.sleep(0.05)
    assert rec.count == 0 and not rec.path.exists()  # neither old nor big enough yet
    gevent.sleep(0.3)
    assert rec.count == 2  # due by time
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 60.0)
    monkeypatch.setattr(recorder, "FLUSH_ROWS", 3)
    for kwargs, _ in EVENTS[2:5]:
        rec.on_request(**kwargs)
    gevent.sleep(0.1)
    assert rec.count == 5  # due by size
    rec.close()
    file = pq.ParquetFile(rec.path)
    assert file.metadata.num_row_groups == 2
    assert file.read().to_pylist() == expected("w")[:5]


def test_a_batch_grows_past_its_room_and_keeps_every_row(monkeypatch) -> None:
    """A batch has FLUSH_ROWS rows of room; a burst beyond it before the next look gets more,
    and the room is used again by the next batch."""
    import loadtests.recorder as recorder

    monkeypatch.setattr(recorder, "FLUSH_ROWS", 2)
    rec = RequestRecorder(None, node_of=node_of, worker="w", stream=True)
    for kwargs, _ in EVENTS:
        rec.on_request(**kwargs)
    assert unpack_rows(rec.report()["rows"], node_of, "w").to_pylist() == expected("w")
    for kwargs, _ in EVENTS[:3]:
        rec.on_request(**kwargs)
    assert unpack_rows(rec.report()["rows"], node_of, "w").to_pylist() == expected("w")[:3]
