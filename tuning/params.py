"""The tuning parameter namespace shared by the CLI, sweep files and results.

A parameter is a dotted name (`jvm.xmx`, `nginx.proxy_read_timeout`, `passthru.<key>`, any
`jvm.flag.<Name>`, `ds.<datasource>.<property>`) with a typed value. Values are checked here, once, so that every editor,
sweep and result sees the same normalised form; bad input gets one line saying what is wrong
and what to write instead. The target of a name (jvm / nginx / passthru) tells a caller what a
change needs: JVM, pass-through and datasource changes take effect only when the node restarts
(EI reads passthru-http.properties and master-datasources.xml at start-up); nginx changes need
only a reload.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from eicore.errors import ConfigError
from eicore.gclog import DEFAULT_GC_LOG, GC_LOG_DIR

Value = str | int | bool

GC_CHOICES = ("G1", "Parallel", "ZGC", "Shenandoah", "Serial", "CMS")  # CMS: JDK 8-13 (EI 6.x's 11)
LB_METHODS = ("round_robin", "least_conn", "ip_hash")

# -XX flags that have a named parameter of their own; `jvm.flag.<Name>` would bypass it.
NAMED_FLAGS = {
    "UseG1GC": "jvm.gc=G1",
    "UseParallelGC": "jvm.gc=Parallel",
    "UseZGC": "jvm.gc=ZGC",
    "UseShenandoahGC": "jvm.gc=Shenandoah",
    "UseSerialGC": "jvm.gc=Serial",
    "MaxMetaspaceSize": "jvm.max_metaspace",
    "MaxHeapSize": "jvm.xmx",
    "InitialHeapSize": "jvm.xms",
}

# passthru-http.properties keys as shipped, with the smallest value each accepts.
PASSTHRU_INT_KEYS = {
    "http.socket.timeout": 0,
    "worker_pool_size_core": 1,
    "worker_pool_size_max": 1,
    "worker_thread_keepalive_sec": 0,
    "worker_pool_queue_length": -1,
    "io_threads_per_reactor": 1,
    "io_buffer_size": 1,
    "http.max.connection.per.host.port": 1,
}

# The pool settings of a master-datasources.xml datasource (Tomcat JDBC pool): the parameter's
# property -> the element that holds it, and the smallest value of a whole number.
DS_PROPERTIES = {
    "max_active": "maxActive", "max_wait": "maxWait", "min_idle": "minIdle",
    "test_on_borrow": "testOnBorrow", "validation_query": "validationQuery",
    "validation_interval": "validationInterval",
}
DS_INT_MINIMUM = {"max_active": 1, "max_wait": -1, "min_idle": 0, "validation_interval": 0}
_DS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")

_SIZE = re.compile(r"(\d+)([kmgt])", re.IGNORECASE)
_NGINX_TIME = re.compile(r"\d+|(?:\d+(?:ms|[smhdwMy]))+")
_FLAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PASSTHRU_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_UNSAFE = re.compile(r"[\s\"'`$\\;#]")
_GC_LOG_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
#: `jvm.gc_log` value for no GC log file (the GC log flags removed)
GC_LOG_OFF = "off"
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ParameterError(ConfigError, ValueError):
    """A tuning parameter name or value that cannot be used; the message is one line."""


class Target(StrEnum):
    """What a parameter changes, and so what must happen before it takes effect."""

    JVM = "jvm"
    NGINX = "nginx"
    PASSTHRU = "passthru"
    DATASOURCES = "ds"


@dataclass(frozen=True)
class Parameter:
    """One named parameter: its target, the converter that checks a value, an example, help."""

    name: str
    target: Target
    convert: Callable[[str, object], Value]
    example: str
    help: str


def size_to_bytes(size: str) -> int:
    """Bytes in a JVM size such as "512m" or "2g"."""
    m = _SIZE.fullmatch(size.strip())
    if not m:
        raise ValueError(f"{size!r} is not a size")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _text(name: str, raw: object) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ParameterError(f"{name}: {raw!r} is not a text or number value")
    text = str(raw).strip()
    if not text:
        raise ParameterError(f"{name}: no value given; use e.g. {name}={_example(name)}")
    return text


def _size(name: str, raw: object) -> Value:
    text = _text(name, raw)
    if text.isdigit():
        raise ParameterError(f"{name}: '{text}' has no unit; use e.g. {text}m (k, m, g or t)")
    m = _SIZE.fullmatch(text)
    if not m:
        raise ParameterError(f"{name}: '{text}' is not a size; use e.g. 512m or 2g")
    if int(m.group(1)) == 0:
        raise ParameterError(f"{name}: '{text}' is zero; use e.g. 512m or 2g")
    return m.group(1) + m.group(2).lower()


def _nginx_time(name: str, raw: object) -> Value:
    text = _text(name, raw)
    if not _NGINX_TIME.fullmatch(text):
        raise ParameterError(
            f"{name}: '{text}' is not an nginx time; use e.g. 60s, 5m, 500ms or 60 (seconds)"
        )
    return text


def _integer(minimum: int) -> Callable[[str, object], Value]:
    def convert(name: str, raw: object) -> Value:
        text = _text(name, raw)
        if not re.fullmatch(r"-?\d+", text):
            raise ParameterError(
                f"{name}: '{text}' is not a whole number; use e.g. {name}={_example(name)}"
            )
        if int(text) < minimum:
            raise ParameterError(f"{name}: {text} is too small; use {minimum} or more")
        return int(text)

    return convert


def _worker_processes(name: str, raw: object) -> Value:
    if str(raw).strip().lower() == "auto":
        return "auto"
    try:
        return _integer(1)(name, raw)
    except ParameterError:
        raise ParameterError(f"{name}: '{raw}' is not a count; use auto or e.g. 4") from None


def _choice(choices: tuple[str, ...], strip: str = "") -> Callable[[str, object], Value]:
    def key(text: str) -> str:
        text = text.lower().replace("-", "_")
        return text[: -len(strip)] if strip and text.endswith(strip) else text

    def convert(name: str, raw: object) -> Value:
        text = _text(name, raw)
        for choice in choices:
            if key(choice) == key(text):
                return choice
        raise ParameterError(f"{name}: '{text}' is not one of {', '.join(choices)}")

    return convert


def _flag_value(name: str, raw: object) -> Value:
    if isinstance(raw, bool):
        return raw
    text = _text(name, raw)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _UNSAFE.search(text):
        raise ParameterError(
            f"{name}: '{text}' has spaces, quotes or shell characters; give a plain value"
        )
    return text


def _gc_log(name: str, raw: object) -> Value:
    """on (DEFAULT_GC_LOG), off, or a file name inside the node's logs folder (GC_LOG_DIR)."""
    if isinstance(raw, bool):
        return DEFAULT_GC_LOG if raw else GC_LOG_OFF
    text = _text(name, raw)
    if text.lower() in ("on", "true", "yes"):
        return DEFAULT_GC_LOG
    if text.lower() in ("off", "false", "no"):
        return GC_LOG_OFF
    file = text.removeprefix(GC_LOG_DIR + "/")
    if not _GC_LOG_NAME.fullmatch(file):
        raise ParameterError(
            f"{name}: '{text}' is not on, off or a file name in {GC_LOG_DIR}/ (letters, digits, "
            f"'.', '_', '-'); use e.g. {name}=on or {name}=gc-g1.log"
        )
    return f"{GC_LOG_DIR}/{file}"


def _passthru_value(name: str, raw: object) -> Value:
    key = name.removeprefix("passthru.")
    if key in PASSTHRU_INT_KEYS:
        return _integer(PASSTHRU_INT_KEYS[key])(name, raw)
    if isinstance(raw, bool):
        return "true" if raw else "false"
    text = _text(name, raw)
    if "\n" in text or "\r" in text:
        raise ParameterError(f"{name}: the value spans lines; give it on one line")
    return text


def split_ds_name(name: str) -> tuple[str, str]:
    """`ds.WSO2_CARBON_DB.max_active` -> ("WSO2_CARBON_DB", "max_active")."""
    datasource, _, prop = name.removeprefix("ds.").rpartition(".")
    return datasource, prop


def _ds_value(name: str, raw: object) -> Value:
    _, prop = split_ds_name(name)
    if prop in DS_INT_MINIMUM:
        return _integer(DS_INT_MINIMUM[prop])(name, raw)
    if prop == "test_on_borrow":
        if isinstance(raw, bool):
            return raw
        text = _text(name, raw).lower()
        if text not in ("true", "false"):
            raise ParameterError(f"{name}: '{raw}' is not true or false")
        return text == "true"
    text = _text(name, raw)
    if "\n" in text or "\r" in text:
        raise ParameterError(f"{name}: the value spans lines; give it on one line")
    return text


_TABLE = (  # name, target, converter, example, help
    ("jvm.xms", Target.JVM, _size, "512m", "initial heap (-Xms)"),
    ("jvm.xmx", Target.JVM, _size, "2g", "maximum heap (-Xmx)"),
    ("jvm.gc", Target.JVM, _choice(GC_CHOICES, strip="gc"), "G1", "|".join(GC_CHOICES)),
    ("jvm.max_metaspace", Target.JVM, _size, "256m", "-XX:MaxMetaspaceSize"),
    ("jvm.gc_log", Target.JVM, _gc_log, "on",
     f"GC log: on ({DEFAULT_GC_LOG}), off, or a file name in {GC_LOG_DIR}/"),
    ("nginx.proxy_read_timeout", Target.NGINX, _nginx_time, "60s", "proxy_read_timeout"),
    ("nginx.proxy_send_timeout", Target.NGINX, _nginx_time, "60s", "proxy_send_timeout"),
    ("nginx.proxy_connect_timeout", Target.NGINX, _nginx_time, "5s", "proxy_connect_timeout"),
    ("nginx.upstream_keepalive", Target.NGINX, _integer(0), "16", "upstream keepalive (0: none)"),
    ("nginx.lb_method", Target.NGINX, _choice(LB_METHODS), "least_conn", "|".join(LB_METHODS)),
    ("nginx.max_fails", Target.NGINX, _integer(0), "3", "max_fails of each upstream server"),
    ("nginx.fail_timeout", Target.NGINX, _nginx_time, "10s", "fail_timeout of each server"),
    ("nginx.worker_processes", Target.NGINX, _worker_processes, "auto", "auto or a count"),
    ("nginx.worker_connections", Target.NGINX, _integer(1), "1024", "in the events block"),
)
PARAMETERS = {row[0]: Parameter(*row) for row in _TABLE}
FAMILIES = {
    "jvm.flag.": Parameter(
        "jvm.flag.<Name>",
        Target.JVM,
        _flag_value,
        "true",
        "-XX:+Name/-Name (true/false), or =value",
    ),
    "passthru.": Parameter(
        "passthru.<key>", Target.PASSTHRU, _passthru_value, "400", "a passthru-http.properties key"
    ),
    "ds.": Parameter(
        "ds.<datasource>.<property>", Target.DATASOURCES, _ds_value, "50",
        f"a master-datasources.xml pool setting: {', '.join(DS_PROPERTIES)}",
    ),
}


def _example(name: str) -> str:
    if name in PARAMETERS:
        return PARAMETERS[name].example
    return next((f.example for p, f in FAMILIES.items() if name.startswith(p)), "4")


def _suggest(name: str) -> str | None:
    close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.6)
    if close:
        return close[0]
    parts = name.split(".")
    for k in (1, 2):
        head, rest = ".".join(parts[:k]), ".".join(parts[k:])
        for prefix in FAMILIES:
            if rest and difflib.get_close_matches(head, [prefix[:-1]], n=1, cutoff=0.7):
                return prefix + rest
    return None


def lookup(name: str) -> Parameter:
    """The parameter (or family) a name belongs to; unknown names get a did-you-mean."""
    if name in PARAMETERS:
        return PARAMETERS[name]
    for prefix, family in FAMILIES.items():
        if name.startswith(prefix):
            _check_family_name(prefix, name[len(prefix) :])
            return family
    suggestion = _suggest(name)
    if suggestion:
        raise ParameterError(f"'{name}' is not a tuning parameter; did you mean {suggestion}?")
    raise ParameterError(
        f"'{name}' is not a tuning parameter; names start with jvm., nginx. or passthru. "
        "(e.g. jvm.xmx, nginx.proxy_read_timeout, passthru.worker_pool_size_core)"
    )


def _check_family_name(prefix: str, rest: str) -> None:
    if prefix == "jvm.flag.":
        if not rest:
            raise ParameterError(
                "jvm.flag.: no flag name; use e.g. jvm.flag.UseStringDeduplication=true"
            )
        if rest[0] in "+-" and _FLAG_NAME.fullmatch(rest[1:]):
            value = "true" if rest[0] == "+" else "false"
            raise ParameterError(
                f"jvm.flag.{rest}: write the flag without +/-, e.g. jvm.flag.{rest[1:]}={value}"
            )
        if not _FLAG_NAME.fullmatch(rest):
            raise ParameterError(f"jvm.flag.{rest}: '{rest}' is not a -XX flag name")
        if rest in NAMED_FLAGS:
            raise ParameterError(f"jvm.flag.{rest}: use {NAMED_FLAGS[rest]} instead")
        return
    if prefix == "ds.":
        _check_ds_name(rest)
        return
    if not rest or not _PASSTHRU_KEY.fullmatch(rest):
        raise ParameterError(f"passthru.{rest}: '{rest}' is not a properties key")
    if rest not in PASSTHRU_INT_KEYS:
        close = difflib.get_close_matches(rest, list(PASSTHRU_INT_KEYS), n=1, cutoff=0.85)
        if close:
            raise ParameterError(
                f"passthru.{rest}: not a pass-through key EI knows; did you mean passthru.{close[0]}?"
            )


def _check_ds_name(rest: str) -> None:
    datasource, prop = split_ds_name("ds." + rest)
    example = "ds.WSO2_CARBON_DB.max_active=50"
    if not datasource or not _DS_NAME.fullmatch(datasource):
        raise ParameterError(f"ds.{rest}: name a datasource and a property, e.g. {example}")
    if prop in ("password", "username", "url"):
        raise ParameterError(f"ds.{rest}: the datasource's {prop} is not a tuning parameter; "
                             f"tunable: {', '.join(DS_PROPERTIES)}")
    if prop not in DS_PROPERTIES:
        close = difflib.get_close_matches(prop, list(DS_PROPERTIES), n=1, cutoff=0.6)
        hint = (f"did you mean ds.{datasource}.{close[0]}?" if close
                else f"use one of {', '.join(DS_PROPERTIES)}")
        raise ParameterError(f"ds.{rest}: '{prop}' is not a pool setting eiperf tunes; {hint}")


def target_of(name: str) -> Target:
    """The target (jvm, nginx or passthru) of a parameter name."""
    return lookup(name).target


def validate(name: str, value: object) -> Value | None:
    """The checked, normalised value of `name`; None stays None (remove, back to the default)."""
    parameter = lookup(name)
    if value is None:
        return None
    return parameter.convert(name, value)


def parse_assignment(text: str) -> tuple[str, Value]:
    """Parse `NAME=VALUE` (as given to --set or in a sweep file) into a checked (name, value)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParameterError(f"'{text}' is not an assignment; use NAME=VALUE, e.g. jvm.xmx=2g")
    value = validate(name, raw)
    assert value is not None
    return name, value


def format_value(value: Value | None) -> str:
    """A value as written on the command line (true/false for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def format_assignment(name: str, value: Value) -> str:
    """`NAME=VALUE`, the inverse of `parse_assignment`."""
    return f"{name}={format_value(value)}"


class ParamSet(Mapping[str, "Value | None"]):
    """An immutable, checked set of parameter values, grouped by target.

    None as a value means "remove the setting" (back to the default). Cross-parameter rules a
    JVM or EI would refuse at start-up (-Xms above -Xmx, a worker pool core above its max) are
    checked here, so a sweep fails before it restarts anything.
    """

    def __init__(self, values: Mapping[str, object] | None = None) -> None:
        self._values: dict[str, Value | None] = {
            name: validate(name, value) for name, value in (values or {}).items()
        }
        self._check_pairs()

    @classmethod
    def parse(cls, assignments: Iterable[str]) -> ParamSet:
        """A set from `NAME=VALUE` strings; a name given twice is an error."""
        values: dict[str, Value] = {}
        for text in assignments:
            name, value = parse_assignment(text)
            if name in values:
                raise ParameterError(
                    f"{name}: set twice ({format_value(values[name])!r} and "
                    f"{format_value(value)!r}); give it once"
                )
            values[name] = value
        return cls(values)

    def _check_pairs(self) -> None:
        v = self._values
        xms, xmx = v.get("jvm.xms"), v.get("jvm.xmx")
        if (
            isinstance(xms, str)
            and isinstance(xmx, str)
            and size_to_bytes(xms) > size_to_bytes(xmx)
        ):
            raise ParameterError(f"jvm.xms: {xms} is above jvm.xmx {xmx}; the JVM refuses that")
        core = v.get("passthru.worker_pool_size_core")
        most = v.get("passthru.worker_pool_size_max")
        if isinstance(core, int) and isinstance(most, int) and core > most:
            raise ParameterError(
                f"passthru.worker_pool_size_core: {core} is above worker_pool_size_max {most}; "
                "raise the max too"
            )

    def __getitem__(self, name: str) -> Value | None:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ParamSet({self._values!r})"

    def for_target(self, target: Target) -> dict[str, Value | None]:
        """The values whose names belong to `target`, in the order given."""
        return {k: v for k, v in self._values.items() if target_of(k) is target}

    @property
    def jvm(self) -> dict[str, Value | None]:
        return self.for_target(Target.JVM)

    @property
    def nginx(self) -> dict[str, Value | None]:
        return self.for_target(Target.NGINX)

    @property
    def passthru(self) -> dict[str, Value | None]:
        return self.for_target(Target.PASSTHRU)

    @property
    def targets(self) -> frozenset[Target]:
        return frozenset(target_of(k) for k in self._values)

    @property
    def datasources(self) -> dict[str, Value | None]:
        return self.for_target(Target.DATASOURCES)

    @property
    def needs_node_restart(self) -> bool:
        """True when a JVM, pass-through or datasource value changes: EI reads them only at
        start-up."""
        return bool(self.targets & {Target.JVM, Target.PASSTHRU, Target.DATASOURCES})

    @property
    def needs_nginx_reload(self) -> bool:
        """True when an nginx value changes; a reload (no restart) applies it."""
        return Target.NGINX in self.targets

    def assignments(self) -> list[str]:
        """The set as `NAME=VALUE` strings (the arguments `eiperf tune apply --set` takes)."""
        return [format_assignment(k, v) for k, v in self._values.items() if v is not None]
