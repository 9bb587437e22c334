"""The node's own pass-through transport (no jdk.httpserver) on JDK 11 and 17: what it serves,
HTTP/1.1 details nginx may not exercise, its MBeans, and the passthru-http.properties knobs whose
effects show: a worker pool's limits, http.socket.timeout, io_buffer_size."""

from __future__ import annotations

import http.client
import json
import select
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
from testbed import manager
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


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A one-node testbed of this module's own, whose pass-through settings the tests change."""
    d = tmp_path_factory.mktemp("tuned")
    cluster = start_testbed(d, nodes=1)
    yield cluster
    manager.down(d, progress=lambda m: None)


def apply(cluster, settings: dict, results: Path) -> None:
    """Write `settings` into passthru-http.properties and restart the node (as `tune apply`)."""
    journal = Journal.begin(results, Path(cluster.source), "test")
    apply_settings(cluster, ParamSet(settings), journal, progress=lambda m: None)
    journal.close()


def test_a_tiny_worker_pool_queues_then_rejects_and_a_bigger_one_does_not(tuned, tmp_path):
    cluster = tuned
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


CONNECTIONS = "org.apache.synapse:Type=PassThroughConnections,Name=http-listener"


def request(s: socket.socket, path: str = "/services/SampleProxy") -> bytes:
    """One keep-alive GET on an open connection; its whole answer (headers and body)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                      if ln.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return head


def test_http_socket_timeout_closes_idle_connections_only(tuned, tmp_path):
    node = tuned.nodes[0]
    apply(tuned, {"passthru.http.socket.timeout": 1000}, tmp_path / "results")
    with JmxConnection.for_node(node) as jmx:
        before = jmx.attribute(CONNECTIONS, "TimedOutConnections")
    idle = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
    with idle, busy:
        assert request(idle).startswith(b"HTTP/1.1 200")
        answered, closed_after = time.monotonic(), None
        while closed_after is None and time.monotonic() - answered < 4:
            assert request(busy).startswith(b"HTTP/1.1 200")  # never idle for 0.2 s
            if select.select([idle], [], [], 0.2)[0]:
                assert idle.recv(1) == b""  # the server closed the idle one (EOF) ...
                closed_after = time.monotonic() - answered
        assert request(busy).startswith(b"HTTP/1.1 200")  # ... and kept the busy one
    assert closed_after is not None and 0.9 < closed_after < 2.2, closed_after  # 1 s, swept every 0.5 s
    with JmxConnection.for_node(node) as jmx:
        assert jmx.attribute(CONNECTIONS, "TimedOutConnections") == before + 1


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_body_larger_than_io_buffer_size_arrives_whole(tuned, tmp_path, tls):
    node = tuned.nodes[0]
    apply(tuned, {"passthru.io_buffer_size": 1024}, tmp_path / "results")
    log = (Path(node.ei_home) / "repository" / "logs" / "wso2carbon.log").read_text()
    this_start = log.rsplit("Starting WSO2 Carbon...", 1)[1]
    assert "Pass-through I/O: 2 I/O threads per reactor, buffer 1024 bytes" in this_start
    body = "<m>" + "".join(f"<p>{i:06d}</p>" for i in range(20_000)) + "</m>"  # ~280 KB
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", node.https_port, context=ctx, timeout=10)
    else:
        c = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    for _ in range(2):  # twice on one connection: the buffers are reused whole
        c.request("POST", "/services/SampleProxy", body, {"Content-Type": "text/xml"})
        r = c.getresponse()
        assert (r.status, r.read().decode()) == (200, body)
    c.close()


def gone(t: LocalTransport, node) -> bool:
    """True once a node that refused to start has exited (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while node_control.node_state(t, node).alive and time.monotonic() < deadline:
        time.sleep(0.05)
    return not node_control.node_state(t, node).alive


def test_jmx_refuses_a_taken_port_and_a_password_file_others_may_read(tuned, tmp_path):
    """The node's own JMX connector: what stops it is one line, as for the other ports."""
    node, t = tuned.nodes[0], LocalTransport()
    node_control.stop_node(t, node)
    try:
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past earlier clients' TIME_WAIT
            taken.bind(("127.0.0.1", node.jmx_registry_port))
            taken.listen()
            with pytest.raises(node_control.NodeStartError) as err:
                node_control.start_node(t, node, timeout=30)
        assert (f"Cannot start the JMX connector: port {node.jmx_registry_port} (JMX "
                "RMIRegistryPort) on 127.0.0.1 is not available") in str(err.value)
        assert gone(t, node)
        secret = "pw-" + "x" * 12
        password_file = tmp_path / "jmxremote.password"
        password_file.write_text(f"admin {secret}\n")
        password_file.chmod(0o644)
        with pytest.raises(node_control.NodeStartError) as err:
            node_control.start_node(t, node, timeout=30, env={
                "JAVA_OPTS": f"-Deiperf.jmx.password.file={password_file}"})
        assert f"Password file read access must be restricted: {password_file}" in str(err.value)
        assert secret not in str(err.value)
        assert gone(t, node)
    finally:
        node_control.start_node(t, node)
    with JmxConnection.for_node(node) as jmx:  # and with its port free, JMX is back
        assert jmx.heap()["max"] > 0
