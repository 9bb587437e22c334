"""Read and rewrite conf/datasources/master-datasources.xml: the JDBC pools' settings.

Carbon declares each datasource as `<datasource><name>N</name> ... <definition type="RDBMS">
<configuration>` with the Tomcat JDBC pool's settings as child elements (`<maxActive>50
</maxActive>`, `<maxWait>`, `<minIdle>`, `<testOnBorrow>`, `<validationQuery>`,
`<validationInterval>`). `ds.<N>.<property>` changes the text of that one element in datasource
N's configuration and nothing else: the file is not parsed and written back (an XML library
would re-indent it, drop the declaration or reorder attributes) but searched as text, with
comments masked so a commented-out datasource is never edited. A setting the datasource lacks is
added on its own line after the last setting there (that line's indentation and line end);
removing one (None) deletes the element, and its line when it stands alone. Passwords,
usernames and URLs are no parameters: this editor never reads them out, and `read_pools` never
returns them. `DatasourcesEditor` is this module's `tuning.edit.ConfigEditor`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, unescape

from tuning.edit import EditorError, PerFileEditor, split_eol, split_lines
from tuning.params import DS_PROPERTIES, Target, Value, split_ds_name

DEFAULT_NAME = "master-datasources.xml"
_MASKED = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>", re.S)
_DATASOURCE = re.compile(r"<datasource\b[^>]*>(.*?)</datasource\s*>", re.S)
_JNDI = re.compile(r"<jndiConfig\b.*?</jndiConfig\s*>", re.S)
_NAME = re.compile(r"<name\s*>([^<]*)</name\s*>")
_CONFIG = re.compile(r"<configuration\b[^>]*>(.*?)</configuration\s*>", re.S)
_ELEMENT_START = re.compile(r"<[A-Za-z]")


def _mask(text: str) -> str:
    """`text` with comments and CDATA blanked out (same length, line ends kept)."""
    return _MASKED.sub(lambda m: re.sub(r"[^\r\n]", " ", m.group(0)), text)


@dataclass(frozen=True)
class _Pool:
    """One datasource's configuration block: its name, and where the block's content is."""

    name: str
    start: int  # offset of the configuration's content in the file
    end: int


def _pools(text: str, name: str) -> list[_Pool]:
    masked = _mask(text)
    if "<datasources-configuration" not in masked and "<datasources" not in masked:
        raise EditorError(f"{name}: not a master-datasources.xml (no <datasources> element); "
                          "ds.* parameters edit Carbon's datasource files")
    out = []
    for ds in _DATASOURCE.finditer(masked):
        body_start = ds.start(1)
        body = _JNDI.sub(lambda m: " " * len(m.group(0)), ds.group(1))
        found = _NAME.search(body)
        conf = _CONFIG.search(ds.group(1))
        if found and conf:
            out.append(_Pool(found.group(1).strip(), body_start + conf.start(1),
                             body_start + conf.end(1)))
    return out


def _element(masked: str, pool: _Pool, tag: str) -> re.Match[str] | None:
    """`<tag>text</tag>` (or `<tag/>`) directly inside the pool's configuration."""
    pattern = re.compile(rf"<{tag}\s*(?:/>|>(?P<text>[^<]*)</{tag}\s*>)")
    return pattern.search(masked, pool.start, pool.end)


def read_pools(text: str, name: str = DEFAULT_NAME) -> dict[str, str]:
    """{`ds.<datasource>.<property>`: value} for each pool setting the file gives (text, as
    written; the last of a name given twice wins). Never passwords, users or URLs."""
    masked = _mask(text)
    out: dict[str, str] = {}
    for pool in _pools(text, name):
        for prop, tag in DS_PROPERTIES.items():
            m = _element(masked, pool, tag)
            if m is not None:
                out[f"ds.{pool.name}.{prop}"] = unescape((m.group("text") or "").strip())
    return out


def datasource_names(text: str, name: str = DEFAULT_NAME) -> list[str]:
    """The datasources the file declares, in order."""
    return [p.name for p in _pools(text, name)]


def _set(text: str, datasource: str, prop: str, value: str | None, name: str) -> str:
    pools = [p for p in _pools(text, name) if p.name == datasource]
    if not pools:
        known = ", ".join(datasource_names(text, name)) or "none"
        raise EditorError(f"{name}: no datasource named {datasource} (it declares: {known})")
    tag = DS_PROPERTIES[prop]
    masked = _mask(text)
    for pool in reversed(pools):  # from the end: what comes before keeps its offsets
        m = _element(masked, pool, tag)
        if value is None:
            if m is not None:
                text = _remove(text, m.start(), m.end())
        elif m is None:
            text = _insert(text, masked, pool, f"<{tag}>{escape(value)}</{tag}>", name)
        elif m.group("text") is None:  # <tag/>
            text = text[: m.start()] + f"<{tag}>{escape(value)}</{tag}>" + text[m.end():]
        else:
            old = m.group("text")
            core = old.strip()
            lead = m.start("text") + (len(old) - len(old.lstrip()))
            if unescape(core) != value:
                text = text[:lead] + escape(value) + text[lead + len(core):]
    return text


def _remove(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    rest = text[line_start:start] + text[end:line_end]
    if not rest.strip():
        return text[:line_start] + text[line_end:]
    return text[:start] + text[end:]


def _insert(text: str, masked: str, pool: _Pool, element: str, name: str) -> str:
    """`element` on a line of its own after the last element line inside the configuration."""
    lines = split_lines(text)
    offset, after = 0, None
    for i, line in enumerate(lines):
        if offset >= pool.end:
            break
        line_masked = masked[offset:offset + len(line)]
        if offset + len(line) > pool.start and _ELEMENT_START.search(line_masked) \
                and "</configuration" not in line_masked:
            after = i
        offset += len(line)
    if after is None:
        raise EditorError(f"{name}: the configuration of a datasource has no setting on a line "
                          "of its own to add one after; add it by hand")
    body, eol = split_eol(lines[after])
    indent = body[: len(body) - len(body.lstrip(" \t"))]
    if not eol:  # the last line of the file: give it the end the new line gets
        eol = "\r\n" if "\r\n" in text else "\n"
        lines[after] = body + eol
    lines.insert(after + 1, f"{indent}{element}{eol}")
    return "".join(lines)


def _notes(text: str, name: str, changes: Mapping[str, Value | None]) -> list[str]:
    """What the Tomcat JDBC pool would make of the changed pools: a minIdle above maxActive is
    lowered to it (with a warning); testOnBorrow without a validationQuery validates nothing."""
    values = read_pools(text, name)
    notes = []
    for ds in sorted({split_ds_name(k)[0] for k in changes}):
        idle, most = values.get(f"ds.{ds}.min_idle"), values.get(f"ds.{ds}.max_active")
        if idle and most and idle.isdigit() and most.isdigit() and int(idle) > int(most):
            notes.append(f"{name}: {ds} minIdle {idle} is above maxActive {most}; the Tomcat "
                         "JDBC pool lowers it to maxActive")
        if values.get(f"ds.{ds}.test_on_borrow") == "true" and not values.get(
                f"ds.{ds}.validation_query"):
            notes.append(f"{name}: {ds} has testOnBorrow true but no validationQuery: the pool "
                         "validates nothing on borrow")
    return notes


class DatasourcesEditor(PerFileEditor):
    """`ds.<datasource>.<property>` changes in master-datasources.xml files, each on its own."""

    target = Target.DATASOURCES
    describes = "a datasource parameter"

    def set_value(self, text: str, param: str, value: str | None, name: str) -> str:
        datasource, prop = split_ds_name(param)
        return _set(text, datasource, prop, value, name)

    def notes(self, text: str, name: str, changes: Mapping[str, Value | None]) -> list[str]:
        return _notes(text, name, changes)


_PASSWORD = re.compile(r"<password\b(?P<attrs>[^>]*?)(?:/>|>(?P<text>[^<]*)</password\s*>)")


def read_secrets(text: str, name: str = DEFAULT_NAME) -> dict[str, str]:
    """{`ds.<datasource>.password`: "set" | "secure vault" | "not set"}: whether each
    datasource has a password, and how it is given -- never the password itself."""
    masked = _mask(text)
    out = {}
    for pool in _pools(text, name):
        m = _PASSWORD.search(masked, pool.start, pool.end)
        if m is None or not (m.group("text") or "").strip():
            state = "not set"
        elif "secretAlias" in m.group("attrs"):
            state = "secure vault"
        else:
            state = "set"
        out[f"ds.{pool.name}.password"] = state
    return out
