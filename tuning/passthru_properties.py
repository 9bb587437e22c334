"""Read and rewrite conf/passthru-http.properties, the pass-through transport's settings.

A Java properties file: `key=value` (or `key: value`, `key value`), `#` and `!` comments. Setting
a key replaces its value in place; a key that is only present commented out (`#key=value`, as
the shipped file has `#worker_thread_keepalive_sec=60`) is uncommented there, so it stays next
to its documentation; any other key is appended at the end. Unsetting comments a key out, so
setting it again restores the line. Comments, order, blank lines, line ends and blanks after a
value stay as they are; keys are matched as Java reads them (`\\uXXXX` escapes decoded). A file
starting with a UTF-8 BOM is refused: java.util.Properties would read it into the first key.
A change to the worker pool is judged on the file as it would be: a core above the max (Synapse's
defaults, core 40 / max 200, where a key is absent) is refused -- EI's ThreadPoolExecutor would
not start the transport -- and a max that an unbounded queue makes moot is noted.
`PassthruEditor` is this module's `tuning.edit.ConfigEditor`; `apply_passthru_changes` is its
one-file shorthand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tuning.edit import Edit, EditorError, PerFileEditor, dominant_eol, split_eol, split_lines
from tuning.params import Target, Value

DEFAULT_NAME = "passthru-http.properties"

# An active or commented-out `key = value` line: indent, comment marker, key, separator, value.
_ENTRY = re.compile(
    r"^(?P<indent>[ \t\f]*)(?P<mark>[#!][ \t\f]*)?(?P<key>(?:[^\s=:\\#!]|\\.)(?:[^\s=:\\]|\\.)*)"
    r"(?P<sep>[ \t\f]*[=:][ \t\f]*|[ \t\f]+)(?P<value>.*)$"
)


@dataclass(frozen=True)
class _Entry:
    index: int  # 0-based line index
    key: str
    commented: bool
    value_start: int
    value: str


def _entries(lines: list[str]) -> list[_Entry]:
    out: list[_Entry] = []
    continued = False
    for i, line in enumerate(lines):
        body, _ = split_eol(line)
        was_continued, continued = continued, _continues(body)
        if was_continued:
            continue
        m = _ENTRY.match(body)
        if not m:
            continue
        commented = m.group("mark") is not None
        # A commented line counts only as `#key=value` / `#key: value`: prose is not a key.
        if commented and not re.search(r"[=:]", m.group("sep")):
            continued = False
            continue
        if commented:
            continued = False
        out.append(_Entry(i, _unescape(m.group("key")), commented, m.start("value"),
                          m.group("value")))
    return out


def _unescape(key: str) -> str:
    """A key as java.util.Properties reads it: `\\uXXXX` and `\\x` escapes decoded."""
    if "\\" not in key:
        return key
    return re.sub(r"\\u([0-9a-fA-F]{4})|\\(.)",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1)
                  else {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(m.group(2), m.group(2)),
                  key)


def _continues(body: str) -> bool:
    """A properties line ending in an odd number of backslashes goes on to the next line."""
    tail = len(body) - len(body.rstrip("\\"))
    return tail % 2 == 1 and not body.lstrip().startswith(("#", "!"))


def read_properties(text: str) -> dict[str, str]:
    """The active keys and their values (the last one wins, as in java.util.Properties)."""
    lines = split_lines(text)
    return {e.key: e.value for e in _entries(lines) if not e.commented}


def _check_one_line(name: str, lines: list[str], entry: _Entry) -> None:
    if _continues(split_eol(lines[entry.index])[0]):
        raise EditorError(
            f"{name}:{entry.index + 1}: '{entry.key}' goes on over several lines; "
            "put it on one line so it can be edited in place"
        )


def set_property(text: str, key: str, value: str, name: str = DEFAULT_NAME) -> Edit:
    """Set `key` to `value`: in place, else by uncommenting `#key=...`, else appended."""
    return Edit.between(text, _set(text, key, value, name), name)


def unset_property(text: str, key: str, name: str = DEFAULT_NAME) -> Edit:
    """Comment out every active `key` line (the default applies; setting it again uncomments)."""
    return Edit.between(text, _set(text, key, None, name), name)


def _set(text: str, key: str, value: str | None, name: str) -> str:
    if "\n" in (value or "") or "\r" in (value or ""):
        raise EditorError(f"{name}: the value for {key} spans lines; give it on one line")
    if text.startswith("\ufeff"):  # Properties.load reads ISO-8859-1: the BOM joins the key
        raise EditorError(
            f"{name}:1: starts with a UTF-8 byte order mark, which Java reads as part of the "
            "first key (so that key is not set); save the file without it"
        )
    lines = split_lines(text)
    entries = [e for e in _entries(lines) if e.key == key]
    active = [e for e in entries if not e.commented]
    for entry in active:
        _check_one_line(name, lines, entry)
        body, eol = split_eol(lines[entry.index])
        if value is None:
            indent = len(body) - len(body.lstrip(" \t\f"))
            lines[entry.index] = body[:indent] + "#" + body[indent:] + eol
        elif entry.value.rstrip(" \t\f") != value:  # trailing blanks stay, as other bytes do
            end = entry.value_start + len(entry.value.rstrip(" \t\f"))
            lines[entry.index] = body[: entry.value_start] + value + body[end:] + eol
    if value is None or active:
        return "".join(lines)
    if entries:
        entry = entries[0]
        body, eol = split_eol(lines[entry.index])
        m = _ENTRY.match(body)
        assert m is not None
        lines[entry.index] = (
            m.group("indent") + body[m.end("mark") : entry.value_start] + value + eol
        )
        return "".join(lines)
    eol = dominant_eol(text)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += eol
    lines.append(f"{key}={value}{eol}")
    return "".join(lines)


# What Synapse's PassThroughConfiguration uses when a key is absent (or commented out).
DEFAULTS = {
    "worker_pool_size_core": 40, "worker_pool_size_max": 200, "worker_pool_queue_length": -1,
}


def _effective(props: Mapping[str, str], key: str) -> tuple[int | None, bool]:
    """The integer value EI reads for `key` (the default when absent) and whether it is set."""
    raw = props.get(key)
    if raw is None:
        return DEFAULTS.get(key), False
    try:
        return int(raw.strip()), True
    except ValueError:
        return None, True


def _check_pairs(text: str, name: str, changes: Mapping[str, Value | None]) -> list[str]:
    """EditorError when the change leaves the worker pool's core above its max (EI's pool is a
    ThreadPoolExecutor, which refuses that: the transport does not start); the notes on
    settings the change makes moot."""
    keys = {k.removeprefix("passthru.") for k in changes}
    props = read_properties(text)
    core, core_set = _effective(props, "worker_pool_size_core")
    most, max_set = _effective(props, "worker_pool_size_max")
    if keys & {"worker_pool_size_core", "worker_pool_size_max"} and core is not None \
            and most is not None and core > most:
        lines = split_lines(text)
        where = {e.key: e.index + 1 for e in _entries(lines) if not e.commented}
        shown_max = f"worker_pool_size_max {most}" + (
            f" (line {where['worker_pool_size_max']})" if max_set else " (not set: EI's default)")
        fix = ("set passthru.worker_pool_size_max too" if "worker_pool_size_core" in keys
               else f"give passthru.worker_pool_size_max {core} or more")
        raise EditorError(
            f"{name}: worker_pool_size_core {core} would be above {shown_max}; EI's worker "
            f"pool refuses that and the pass-through transport does not start; {fix}"
        )
    notes = []
    queue, _ = _effective(props, "worker_pool_queue_length")
    if "worker_pool_size_max" in keys and max_set and queue == -1:
        notes.append(
            f"{name}: worker_pool_queue_length is -1 (an unbounded queue), so the pool never "
            f"grows past worker_pool_size_core {core}: worker_pool_size_max {most} has no effect "
            "until the queue has a length"
        )
    return notes


class PassthruEditor(PerFileEditor):
    """`passthru.<key>` changes in passthru-http.properties files, each on its own."""

    target = Target.PASSTHRU
    describes = "a pass-through parameter"

    def set_value(self, text: str, param: str, value: str | None, name: str) -> str:
        return _set(text, param.removeprefix("passthru."), value, name)

    def notes(self, text: str, name: str, changes: Mapping[str, Value | None]) -> list[str]:
        return _check_pairs(text, name, changes)


def apply_passthru_changes(
    text: str, changes: Mapping[str, object], name: str = DEFAULT_NAME
) -> Edit:
    """`PassthruEditor` on one file: `passthru.<key>` changes (value None unsets) to its text."""
    return PassthruEditor().edit({name: text}, changes)[name]
