"""The node's own pass-through transport (no jdk.httpserver) on JDK 11 and 17: what it serves,
HTTP/1.1 details nginx may not exercise, its MBeans, and a worker pool whose limits show."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from eicore import node_control
from eicore.transport import LocalTransport
from loadtests.collectors.jmx import JmxConnection
from loadtests.run import snapshot
from testbed.node_build import STATE_FILE
from tests.conftest import start_testbed
from tuning.apply import apply_settings
from tuning.journal import Journal
from tuning.params import ParamSet

XML = "<m><p>" + "x" * 1000 + "</p></m>"


@pytest.fixture(params=["11", "17"])
def on_jdk(request):
    """(JDK, its testbed): the session testbed runs 11, `testbed17` runs 17."""
    name = "testbed" if request.param == "11" else "testbed17"
    return request.param, request.getfixturevalue(name)


def test_nodes_run_the_chosen_jdk_and_runs_record_it(on_jdk):
    jdk, cluster = on_jdk
    node = cluster.nodes[0]
    script = (Path(node.ei_home) / "bin" / "integrator.sh").read_text()
    state = json.loads((Path(cluster.source).parent / STATE_FILE).read_text())
    assert f'JAVA_HOME="{state["home"]}"' in script and state["version"].startswith(jdk)
    log = (Path(node.ei_home) / "repository" / "logs" / "wso2carbon.log").read_text()
    assert f"Java Version : {jdk}." in log
    runtime = snapshot(cluster)["jvm_runtime"][node.name]
    assert runtime["java_version"].startswith(f"{jdk}.") and runtime["java_vm_vendor"]


def raw(port: int, data: bytes, tls: bool = False, wait: float = 2.0) -> bytes:
    """Send bytes on one connection, read until the server closes it or `wait` passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    out = b""
    with s:
        s.sendall(data)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_keep_alive_chunked_and_pipelined_requests(on_jdk, tls):
    _, cluster = on_jdk
    node = cluster.nodes[0]
    port = node.https_port if tls else node.http_port
    chunked = (b"POST /services/SampleProxy HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n4\r\n<a>h\r\n5;ext=1\r\ni</a>\r\n0\r\n\r\n")
    closing = (b"POST /services/SampleProxy HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
               b"Expect: 100-continue\r\nContent-Length: 8\r\nConnection: close\r\n\r\n<b>x</b>")
    reply = raw(port, chunked + chunked + closing, tls)  # three requests on one connection
    assert reply.count(b"HTTP/1.1 200 OK") == 3 and reply.count(b"<a>hi</a>") == 2
    assert reply.endswith(b"<b>x</b>") and b"Connection: close" in reply
    bad = raw(port, b"GARBAGE\r\n\r\n", tls)
    assert bad.startswith(b"HTTP/1.1 400 ")


def test_console_and_mbeans(testbed):
    node = testbed.nodes[0]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", node.console_port, context=ctx, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 302 and r.getheader("Location") == "/carbon/"
    r.read()
    c.request("GET", "/carbon/")  # the same connection: keep-alive over TLS
    assert f'<b id="node">{node.name}</b>' in c.getresponse().read().decode()
    c.close()
    with JmxConnection.for_node(node) as jmx:
        names = set(jmx.query_names("org.apache.synapse:*"))
        assert {"org.apache.synapse:Type=Transport,Name=passthru-http-receiver",
                "org.apache.synapse:Type=PassThroughConnections,Name=https-listener"} <= names
        got = jmx.attributes("org.apache.synapse:Type=Transport,Name=passthru-http-receiver",
                             ["ActiveThreadCount", "QueueSize", "RejectedMessages",
                              "MessagesReceived"])
        assert got["MessagesReceived"] > 0 and got["RejectedMessages"] == 0


def load(port: int, clients: int, seconds: float) -> tuple[list[float], dict[int, int]]:
    """`clients` keep-alive connections POSTing to DelayedProxy (200 ms backend) for `seconds`:
    latencies of the 200s (s) and a count per status."""
    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                c.request("POST", "/services/DelayedProxy", XML, {"Content-Type": "text/xml"})
                r = c.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                c.close()
                status = 0
            with lock:
                codes[status] = codes.get(status, 0) + 1
                if status == 200:
                    lat.append(time.monotonic() - t0)
            if status == 503:
                time.sleep(0.02)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(lat), codes


def rejected(node) -> int:
    with JmxConnection.for_node(node) as jmx:
        return int(jmx.attribute("org.apache.synapse:Type=Transport,Name=passthru-http-receiver",
                                 "RejectedMessages"))


def test_a_tiny_worker_pool_queues_then_rejects_and_a_bigger_one_does_not(fresh_testbed_dir,
                                                                          tmp_path):
    cluster = start_testbed(fresh_testbed_dir, nodes=1)
    node = cluster.nodes[0]
    journal = Journal.begin(tmp_path / "results", Path(cluster.source), "test")
    tiny = {"passthru.worker_pool_size_core": 2, "passthru.worker_pool_size_max": 2,
            "passthru.worker_pool_queue_length": 4}
    apply_settings(cluster, ParamSet(tiny), journal, progress=lambda m: None)
    # 4 clients, 2 workers: every request waits for one before it (the queue holds them all)
    lat, codes = load(node.http_port, 4, 2.0)
    assert codes.get(200, 0) > 5 and 503 not in codes, codes
    assert lat[len(lat) // 2] > 0.3  # median well above the 200 ms backend: queueing
    lat, codes = load(node.http_port, 12, 2.5)  # 2 running + 4 queued, 12 clients: refused
    assert codes.get(503, 0) > 0 and codes.get(200, 0) > 0, codes
    assert rejected(node) >= codes[503]
    log = (Path(node.ei_home) / "repository" / "logs" / "wso2carbon.log").read_text()
    assert "Worker pool exhausted" in log
    big = {"passthru.worker_pool_size_core": 32, "passthru.worker_pool_size_max": 32,
           "passthru.worker_pool_queue_length": None}  # as shipped: unbounded
    apply_settings(cluster, ParamSet(big), journal, progress=lambda m: None)
    lat, codes = load(node.http_port, 12, 2.0)
    assert set(codes) == {200} and lat[len(lat) // 2] < 0.25, codes
    assert rejected(node) == 0  # a new JVM, and nothing refused
    journal.close()
    assert node_control.node_state(LocalTransport(), node).up
