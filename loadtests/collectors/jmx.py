"""JMX over RMI from Python through one embedded JVM (JPype).

One JVM is started per Python process (JPype cannot restart it) and shared by every
connection; a round of reads costs a few milliseconds, unlike tools that fork a JVM per query.

A node whose JMX authenticates (Carbon's does) is reached with `JmxConnection.for_node`, which
reads the node's credentials from where its cluster.toml says; a refusal is a `JmxAuthError`
whose message names the node, the user and where the password came from -- never the password.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from eicore.cluster import Node
from eicore.errors import ConfigError, EiperfError

_lock = threading.Lock()


class JmxError(EiperfError):
    """A JMX endpoint could not be reached or read."""


class JmxUnreachable(JmxError):
    """The connection itself failed (refused, timed out, closed): reconnect before reading again.

    Other JmxErrors (no such MBean or attribute) leave the connection usable.
    """


class JmxAuthError(JmxError):
    """The server refused the credentials, asked for some and got none, or they could not be
    read (an unset variable, an unsafe file). Retrying soon with the same ones is pointless."""


def ensure_jvm() -> None:
    """Start the embedded JVM once (JPype), quietly."""
    try:
        import jpype
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise EiperfError("JPype is not installed: pip install 'jpype1>=1.5'") from e
    with _lock:
        if not jpype.isJVMStarted():
            # -Xrs: the JVM leaves SIGTERM/SIGINT/SIGHUP to Python, so a process that embeds it
            # still runs its own handlers (flush, exit 0) instead of the JVM's exit.
            # C1 only, one compiler thread, no perf-data file: a 1 Hz JMX client never needs
            # C2's code, and C2 compiling it cost ~2 % of a core for minutes (bench_collectors).
            # Compile thresholds / 10: the RMI client code is compiled in the first rounds
            # instead of trickling in for minutes (0.84 -> 0.62 % of a core for 2 nodes).
            # responseTimeout bounds a read and handshakeTimeout the handshake with a JVM that
            # accepts but does not answer (frozen, or a port that is not JMX);
            # connectionTimeout is how long an idle RMI connection is kept: longer than any
            # sampling interval, so every round reuses it.
            jpype.startJVM("-Xmx64m", "-XX:+UseSerialGC", "-Xss512k", "-Xrs",
                           "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1",
                           "-XX:CompileThresholdScaling=0.1", "-XX:-UsePerfData",
                           "-Dsun.rmi.transport.tcp.responseTimeout=3000",
                           "-Dsun.rmi.transport.connectionTimeout=120000",
                           "-Dsun.rmi.transport.tcp.handshakeTimeout=2000",
                           convertStrings=True)


@dataclass(frozen=True)
class GcStats:
    name: str
    count: int
    time_ms: int


class JmxConnection:
    """An open JMX connection to one JVM; read the standard java.lang MBeans.

    `credentials` (user, password) are sent as `jmx.remote.credentials`; `name` and
    `password_source` only shape the messages of a refusal (default: the URL).
    """

    def __init__(self, url: str, timeout_s: float = 3.0,
                 credentials: tuple[str, str] | None = None, name: str | None = None,
                 password_source: str | None = None) -> None:
        ensure_jvm()
        import jpype

        self.url = url
        JMXServiceURL = jpype.JClass("javax.management.remote.JMXServiceURL")
        Factory = jpype.JClass("javax.management.remote.JMXConnectorFactory")
        HashMap = jpype.JClass("java.util.HashMap")
        env = HashMap()
        env.put("jmx.remote.x.request.waiting.timeout", jpype.JLong(int(timeout_s * 1000)))
        if credentials is not None:
            env.put("jmx.remote.credentials", jpype.JArray(jpype.JString)(list(credentials)))
        try:
            self._connector = Factory.connect(JMXServiceURL(url), env)
            self._mbsc = self._connector.getMBeanServerConnection()
        except Exception as e:  # Java exceptions surface as JException subclasses
            if isinstance(e, jpype.JClass("java.lang.SecurityException")):
                user = credentials[0] if credentials else None
                prefix = f"{name}: JMX" if name else f"JMX {url}:"
                raise JmxAuthError(_refusal(prefix, user, password_source)) from None
            raise JmxUnreachable(f"JMX {url}: cannot connect ({_short(e)})") from None
        self._ObjectName = jpype.JClass("javax.management.ObjectName")
        self._StringArray = jpype.JArray(jpype.JString)
        # Java objects reused every round (read at 1 Hz for hours): parsed once, not per call.
        self._names: dict[str, object] = {}
        self._attr_arrays: dict[tuple[str, ...], object] = {}

    @classmethod
    def for_node(cls, node: Node, timeout_s: float = 3.0) -> JmxConnection:
        """Connect to a node's JMX with the credentials its cluster.toml points at (if any).

        Credentials that cannot be read or are refused: JmxAuthError, one line naming the node.
        """
        try:
            credentials = node.jmx_credentials()
        except ConfigError as e:
            raise JmxAuthError(str(e)) from None
        return cls(node.jmx_service_url, timeout_s, credentials, name=node.name,
                   password_source=node.jmx_password_source)

    def _name(self, name: str):
        found = self._names.get(name)
        if found is None:
            found = self._names[name] = self._ObjectName(name)
        return found

    def attribute(self, name: str, attr: str):
        try:
            return self._mbsc.getAttribute(self._name(name), attr)
        except Exception as e:
            raise _error(e, f"JMX {self.url}: {name} {attr}") from None

    def attributes(self, name: str, attrs: list[str]) -> dict[str, object]:
        """Several attributes of one MBean in one round trip; unreadable ones are left out."""
        key = tuple(attrs)
        array = self._attr_arrays.get(key)
        if array is None:
            array = self._attr_arrays[key] = self._StringArray(list(attrs))
        try:
            found = self._mbsc.getAttributes(self._name(name), array)
        except Exception as e:
            raise _error(e, f"JMX {self.url}: {name}") from None
        return {str(a.getName()): a.getValue() for a in found.asList()}

    def attribute_types(self, name: str) -> dict[str, str]:
        """The readable attributes of one MBean and their Java type names (from its MBeanInfo)."""
        try:
            info = self._mbsc.getMBeanInfo(self._name(name))
        except Exception as e:
            raise _error(e, f"JMX {self.url}: {name} info") from None
        return {str(a.getName()): str(a.getType()) for a in info.getAttributes() if a.isReadable()}

    def query_names(self, pattern: str) -> list[str]:
        try:
            names = self._mbsc.queryNames(self._name(pattern), None)
        except Exception as e:
            raise _error(e, f"JMX {self.url}: query {pattern}") from None
        return sorted(str(n) for n in names)

    def heap(self) -> dict[str, int]:
        """used/committed/max bytes of the heap (java.lang:type=Memory)."""
        usage = self.attribute("java.lang:type=Memory", "HeapMemoryUsage")
        return {k: int(usage.get(k)) for k in ("used", "committed", "max")}

    def gc(self) -> list[GcStats]:
        out = []
        for name in self.query_names("java.lang:type=GarbageCollector,*"):
            out.append(GcStats(str(self.attribute(name, "Name")),
                               int(self.attribute(name, "CollectionCount")),
                               int(self.attribute(name, "CollectionTime"))))
        return out

    def input_arguments(self) -> list[str]:
        """The JVM's command-line flags (java.lang:type=Runtime InputArguments)."""
        return [str(a) for a in self.attribute("java.lang:type=Runtime", "InputArguments")]

    def close(self) -> None:
        try:
            self._connector.close()
        except Exception:
            pass

    def __enter__(self) -> JmxConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusal(prefix: str, user: str | None, password_source: str | None) -> str:
    """The one line of a refused login (it never carries the password)."""
    if user is None:
        return (f"{prefix} asks for a user name and password; set jmx_user and "
                "jmx_password_env or jmx_password_file for this node in cluster.toml")
    hint = f"; check the password in {password_source}" if password_source else ""
    return f"{prefix} refused the credentials of user {user!r}{hint}"


def _error(e: BaseException, where: str) -> JmxError:
    """JmxUnreachable for a broken connection (java.io.IOException), JmxAuthError for a read
    the server's access file denies (java.lang.SecurityException), else JmxError."""
    import jpype

    if isinstance(e, jpype.JClass("java.io.IOException")):
        kind: type[JmxError] = JmxUnreachable
    elif isinstance(e, jpype.JClass("java.lang.SecurityException")):
        kind = JmxAuthError
    else:
        kind = JmxError
    return kind(f"{where}: {_short(e)}")


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]
