"""Parse Carbon log lines in both layouts EI has shipped.

Up to 6.2:  `TID: [%T] [%S] [%d] %P%5p {%c} - %x %m {%c}%n`
From 6.3:   `[%d] [%T] [%S] [%t] %P%5p {%c} - %x %m%n`
Pure functions over text; reading the files belongs to the node transport.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_LEVEL = r"(?P<level>TRACE|DEBUG|INFO|WARN|ERROR|FATAL)"
_NEW = re.compile(
    r"^\[(?P<ts>[^\]]+)\] \[(?P<tenant>[^\]]*)\] \[(?P<server>[^\]]*)\] \[(?P<thread>[^\]]*)\]"
    r"\s*(?:\[[^\]]*\]\s*)?" + _LEVEL + r"\s+\{(?P<logger>[^}]+)\} -\s*(?P<msg>.*)$"
)
_OLD = re.compile(
    r"^TID: \[(?P<tenant>[^\]]*)\] \[(?P<server>[^\]]*)\] \[(?P<ts>[^\]]+)\]"
    r"\s*(?:\[[^\]]*\]\s*)?" + _LEVEL + r"\s+\{(?P<logger>[^}]+)\} -\s*(?P<msg>.*?)"
    r"(?: \{(?P=logger)\})?$"
)
_MEMBER = re.compile(r"Member (?P<event>joined|left) \[(?P<uuid>[^\]]*)\]: /(?P<host>[^\s:]+):(?P<port>\d+)")
LOG_MEDIATOR = "org.apache.synapse.mediators.builtin.LogMediator"


@dataclass(frozen=True)
class LogLine:
    ts: str
    level: str
    logger: str
    message: str
    thread: str | None = None


@dataclass(frozen=True)
class MemberEvent:
    event: str  # "joined" | "left"
    uuid: str
    host: str
    port: int


def parse_line(line: str) -> LogLine | None:
    """A LogLine for a Carbon log line in either layout, None for anything else."""
    m = _NEW.match(line) or _OLD.match(line)
    if not m:
        return None
    groups = m.groupdict()
    return LogLine(groups["ts"], groups["level"], groups["logger"], groups["msg"].strip(),
                   groups.get("thread"))


def parse_lines(text: str) -> Iterator[LogLine]:
    for raw in text.splitlines():
        parsed = parse_line(raw)
        if parsed:
            yield parsed


def member_events(lines: Iterable[LogLine]) -> list[MemberEvent]:
    out = []
    for ln in lines:
        m = _MEMBER.search(ln.message)
        if m:
            out.append(MemberEvent(m["event"], m["uuid"], m["host"], int(m["port"])))
    return out


def current_members(events: Iterable[MemberEvent]) -> dict[tuple[str, int], str]:
    """(host, port) -> uuid of every member whose last event is `joined`."""
    members: dict[tuple[str, int], str] = {}
    for e in events:
        key = (e.host, e.port)
        if e.event == "joined":
            members[key] = e.uuid
        else:
            members.pop(key, None)
    return members


def count_log_mediator(lines: Iterable[LogLine], service_path: str) -> int:
    """How many LogMediator lines name `To: <service_path>` (one per mediated request)."""
    needle = f"To: {service_path}"
    return sum(1 for ln in lines if ln.logger == LOG_MEDIATOR and needle in ln.message)
