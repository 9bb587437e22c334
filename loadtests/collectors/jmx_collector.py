"""`JmxCollector`: each node's JVM from the inside, over JMX (one embedded JVM for all nodes).

Series (source "jmx", node = node name):

- `heap_used_bytes`, `heap_committed_bytes`, `heap_max_bytes` (java.lang:type=Memory);
- `metaspace_used_bytes` (java.lang:type=MemoryPool,name=Metaspace);
- `gc_count.<collector>`, `gc_time_ms.<collector>`: cumulative, per garbage collector
  (e.g. `gc_time_ms.G1 Young Generation`);
- `jvm_threads` (java.lang:type=Threading ThreadCount: live Java threads; psutil's `threads`
  counts the OS threads of the process, GC and compiler threads included);
- `process_cpu_load`: OperatingSystem ProcessCpuLoad, a 0..1 share of the *whole machine*;
- `pid`: the JVM's own PID (java.lang:type=Runtime), so a restart is visible;
- `synapse.<Type>.<Name>.<attribute>`: every numeric attribute of the Synapse pass-through
  MBeans (org.apache.synapse:Type=PassThroughConnections / Transport / PassthroughLatencyView)
  when the node has them; looked up on connect and again every minute;
- `ds.<datasource>.active|idle|waiting|borrowed|size`: each JDBC pool's own MBean (Tomcat JDBC's
  `tomcat.jdbc:type=ConnectionPool,name=<datasource>`, the pool Carbon's datasources use):
  connections in use, idle, threads waiting for one now, borrows so far (cumulative), and
  connections open; looked up like the Synapse MBeans.

Each node is read on its own worker thread with a deadline, so a node that hangs (a long GC
pause, a stopped process) is a gap for that round and never delays the others. A broken
connection is reopened at most once every `retry_s` seconds per node.

A node's JMX credentials come from its cluster.toml entry (`JmxConnection.for_node`). Refused
or unreadable credentials are gaps like an unreachable node, logged once with the refusal's
line, and tried again only every `auth_retry_s` seconds (a server is not sent a wrong password
every round).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from eicore.cluster import Cluster, Node
from loadtests.collectors.base import Collector, Sample, log
from loadtests.collectors.jmx import (
    JmxAuthError,
    JmxConnection,
    JmxError,
    JmxUnreachable,
    ensure_jvm,
)

SYNAPSE_TYPES = ("PassThroughConnections", "Transport", "PassthroughLatencyView")
_NUMERIC_TYPES = frozenset({
    "int", "long", "double", "float", "short", "byte",
    "java.lang.Integer", "java.lang.Long", "java.lang.Double", "java.lang.Float",
    "java.lang.Short", "java.lang.Byte", "java.util.concurrent.atomic.AtomicLong",
    "java.util.concurrent.atomic.AtomicInteger",
})
_SYNAPSE_REDISCOVER_S = 60.0
#: Rounds of reads per node at start, values dropped (see `_connect_and_warm_up`).
WARM_UP_READS = 20
POOL_QUERY = "tomcat.jdbc:type=ConnectionPool,*"
#: pool MBean attribute -> the metric's last part (ds.<datasource>.<part>)
POOL_ATTRIBUTES = {"Active": "active", "Idle": "idle", "WaitCount": "waiting",
                   "BorrowedCount": "borrowed", "Size": "size"}


@dataclass
class _NodeJmx:
    """One node's connection and what was learnt about its JVM on connecting."""

    node: Node
    conn: JmxConnection | None = None
    next_connect: float = 0.0  # monotonic time of the next allowed connect
    connect_error: JmxError | None = None  # why the last connect failed (repeated until then)
    busy: Future | None = None  # the read still running from an earlier round
    pid: int | None = None
    gc_beans: list[tuple[str, str]] = field(default_factory=list)  # (ObjectName, GC name)
    #: the product's own MBeans read each round: (ObjectName, {attribute: metric name}) --
    #: Synapse's pass-through views and the JDBC pools, looked up every _SYNAPSE_REDISCOVER_S
    beans: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    synapse_at: float = -math.inf
    lock: threading.Lock = field(default_factory=threading.Lock)


class JmxCollector(Collector):
    """Heap, metaspace, GC, threads, CPU load and Synapse MBeans per node (see module docstring)."""

    name = "jmx"

    def __init__(
        self,
        cluster: Cluster,
        deadline_s: float = 0.8,
        retry_s: float = 2.0,
        timeout_s: float = 3.0,
        auth_retry_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.deadline_s = deadline_s
        self.retry_s = retry_s
        self.auth_retry_s = auth_retry_s
        self.timeout_s = timeout_s
        self._nodes = [_NodeJmx(n) for n in cluster.nodes]
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        ensure_jvm()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._nodes)),
                                        thread_name_prefix="jmx")
        # Connect to every node at once; one that does not answer is a gap later.
        for st in self._nodes:
            st.busy = self._pool.submit(self._connect_and_warm_up, st)
        wait([st.busy for st in self._nodes if st.busy], timeout=self.timeout_s + 1)

    def sample(self, now: float) -> list[Sample]:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        running: dict[str, Future] = {}
        for st in self._nodes:
            if st.busy is not None and not st.busy.done():
                continue  # still stuck in an earlier round
            st.busy = running[st.node.name] = self._pool.submit(self._read, st)
        if running:
            wait(running.values(), timeout=self.deadline_s)
        rows: list[Sample] = []
        for st in self._nodes:
            name = st.node.name
            future = running.get(name)
            if future is None:
                self.gap(name, "an earlier read has not returned yet")
            elif not future.done():
                self.gap(name, f"no answer within {self.deadline_s:.1f} s")
            elif future.exception() is not None:
                self.gap(name, str(future.exception()))
            else:
                self.answered(name)
                rows += [self.row(now, name, metric, value) for metric, value in future.result()]
        return rows

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for st in self._nodes:
            with st.lock:
                if st.conn is not None:
                    st.conn.close()
                    st.conn = None

    # ------------------------------------------------------------------ one node (worker thread)

    def _connect(self, st: _NodeJmx) -> JmxConnection:
        """Open the node's connection if none is open and the back-off allows it."""
        with st.lock:
            if st.conn is not None:
                return st.conn
            if time.monotonic() < st.next_connect:
                if st.connect_error is not None:  # the reason, not the back-off, is news
                    raise type(st.connect_error)(str(st.connect_error))
                raise JmxUnreachable(f"JMX {st.node.jmx_service_url}: not reconnecting yet "
                                     f"(at most once every {self.retry_s:.0f} s)")
            st.next_connect = time.monotonic() + self.retry_s
            try:
                conn = JmxConnection.for_node(st.node, timeout_s=self.timeout_s)
            except JmxError as e:
                raise self._connect_failed(st, e) from None
            try:
                st.pid = _runtime_pid(conn)  # a user the access file denies fails here
                st.gc_beans = [(n, _key(n, "name")) for n in
                               conn.query_names("java.lang:type=GarbageCollector,*")]
                st.synapse_at = -math.inf
            except JmxError as e:
                conn.close()
                raise self._connect_failed(st, e) from None
            st.connect_error = None
            st.conn = conn
            log.info("jmx: connected to %s (pid %s)", st.node.name, st.pid)
            return conn

    def _connect_and_warm_up(self, st: _NodeJmx) -> None:
        """Connect, then read WARM_UP_READS rounds whose values are dropped: the embedded JVM
        compiles its RMI client code on them now, before any load, instead of during a run's
        first seconds (~1 % of a core for ~5 s there, beside the load generator). A failed
        read ends the warm-up; the rounds proper see the connection as it is."""
        conn = self._connect(st)
        try:
            for _ in range(WARM_UP_READS):
                self._read_all(st, conn)
        except JmxError:
            pass

    def _connect_failed(self, st: _NodeJmx, e: JmxError) -> JmxError:
        """Remember why a connect failed; refused credentials wait `auth_retry_s`."""
        st.connect_error = e
        if isinstance(e, JmxAuthError):
            st.next_connect = time.monotonic() + max(self.retry_s, self.auth_retry_s)
        return e

    def _read(self, st: _NodeJmx) -> list[tuple[str, float]]:
        """One round of reads; on a broken connection, one reconnect (back-off permitting)."""
        conn = self._connect(st)
        try:
            return self._read_all(st, conn)
        except JmxUnreachable:
            with st.lock:
                if st.conn is conn:
                    st.conn = None
            conn.close()
        return self._read_all(st, self._connect(st))

    def _read_all(self, st: _NodeJmx, conn: JmxConnection) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        if st.pid is not None:
            out.append(("pid", st.pid))
        heap = conn.attribute("java.lang:type=Memory", "HeapMemoryUsage")
        for key in ("used", "committed", "max"):
            value = int(heap.get(key))
            if value >= 0:  # max is -1 when undefined
                out.append((f"heap_{key}_bytes", value))
        out += _optional(lambda: [("metaspace_used_bytes", int(conn.attribute(
            "java.lang:type=MemoryPool,name=Metaspace", "Usage").get("used")))])
        for bean, gc_name in st.gc_beans:
            values = conn.attributes(bean, ["CollectionCount", "CollectionTime"])
            if "CollectionCount" in values:
                out.append((f"gc_count.{gc_name}", _number(values["CollectionCount"])))
            if "CollectionTime" in values:
                out.append((f"gc_time_ms.{gc_name}", _number(values["CollectionTime"])))
        out.append(("jvm_threads",
                    _number(conn.attribute("java.lang:type=Threading", "ThreadCount"))))
        load = _number(conn.attribute("java.lang:type=OperatingSystem", "ProcessCpuLoad"))
        if 0.0 <= load <= 1.0:  # -1 or NaN: not available yet
            out.append(("process_cpu_load", load))
        out += self._read_beans(st, conn)
        return out

    def _read_beans(self, st: _NodeJmx, conn: JmxConnection) -> list[tuple[str, float]]:
        """The Synapse and JDBC pool series (the MBeans looked up again now and then: they
        come and go with deployments and restarts)."""
        if time.monotonic() - st.synapse_at > _SYNAPSE_REDISCOVER_S:
            st.beans = [(bean, {a: f"{prefix}.{a}" for a in attrs})
                        for bean, prefix, attrs in _discover_synapse(conn)]
            st.beans += [(bean, {a: f"ds.{_unquote(_key(bean, 'name'))}.{m}"
                                 for a, m in POOL_ATTRIBUTES.items()})
                         for bean in conn.query_names(POOL_QUERY)]
            st.synapse_at = time.monotonic()
        out: list[tuple[str, float]] = []
        for bean, names in st.beans:
            try:
                values = conn.attributes(bean, list(names))
            except JmxUnreachable:
                raise
            except JmxError:
                st.synapse_at = -math.inf  # unregistered meanwhile: look again next round
                continue
            for attr, value in values.items():
                try:
                    out.append((names[attr], _number(value)))
                except (TypeError, ValueError):
                    continue
        return out


def _discover_synapse(conn: JmxConnection) -> list[tuple[str, str, list[str]]]:
    """(ObjectName, metric prefix, numeric attributes) of the Synapse pass-through MBeans."""
    found = []
    for kind in SYNAPSE_TYPES:
        for bean in conn.query_names(f"org.apache.synapse:Type={kind},*"):
            try:
                types = conn.attribute_types(bean)
            except JmxUnreachable:
                raise
            except JmxError:
                continue
            attrs = sorted(a for a, t in types.items() if t in _NUMERIC_TYPES)
            if attrs:
                found.append((bean, _synapse_prefix(bean), attrs))
    return found


def _synapse_prefix(bean: str) -> str:
    """org.apache.synapse:Type=Transport,Name=passthru-http-receiver -> synapse.Transport.passthru-http-receiver"""
    props = [p.partition("=") for p in bean.partition(":")[2].split(",")]
    kind = [v for k, _, v in props if k == "Type"]
    rest = [v for k, _, v in props if k != "Type"]
    return ".".join(["synapse", *kind, *rest])


def _unquote(value: str) -> str:
    """An ObjectName value as written, without its quotes (a quoted name, "a,b" -> a,b)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _key(bean: str, key: str) -> str:
    """A key property of an ObjectName string ('' when absent)."""
    for part in bean.partition(":")[2].split(","):
        k, _, v = part.partition("=")
        if k == key:
            return v
    return ""


def _runtime_pid(conn: JmxConnection) -> int | None:
    values = conn.attributes("java.lang:type=Runtime", ["Pid", "Name"])
    if "Pid" in values:
        return int(values["Pid"])
    head = str(values.get("Name", "")).partition("@")[0]  # "1234@host" before JDK 10
    return int(head) if head.isdigit() else None


def _number(value: object) -> float:
    """A JMX number (a Java boxed or primitive value) as a float."""
    try:
        return float(value)  # type: ignore[arg-type]
    except TypeError:
        return float(value.doubleValue())  # type: ignore[attr-defined]


def _optional(read) -> list[tuple[str, float]]:
    """The rows `read` returns, or none when the MBean or attribute does not exist."""
    try:
        return read()
    except JmxUnreachable:
        raise
    except JmxError:
        return []
