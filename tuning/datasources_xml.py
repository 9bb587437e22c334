"""Read and rewrite conf/datasources/master-datasources.xml: the JDBC pools' settings.

Carbon declares each datasource as `<datasource><name>N</name> ... <definition type="RDBMS">
<configuration>` with the Tomcat JDBC pool's settings as child elements (`<maxActive>50
</maxActive>`, `<maxWait>`, `<minIdle>`, `<testOnBorrow>`, `<validationQuery>`,
`<validationInterval>`). `ds.<N>.<property>` changes the text of that one element in datasource
N's configuration and nothing else: the file is not parsed and written back (an XML library
would re-indent it, drop the declaration or reorder attributes) but searched as text, with
comments masked so a commented-out datasource is never edited. Values are read as an XML parser
reads them (entities, CDATA); a CDATA value is rewritten as CDATA; attributes stay; a setting
written with a namespace prefix or holding elements is refused. A setting the datasource lacks is
added on its own line after the line where its last direct setting ends (after a nested block
such as `<databaseProps>`, never inside it; that setting's indentation and the line end);
removing one (None) deletes the element, and its line when it stands alone. Passwords,
usernames and URLs are no parameters: this editor never reads them out, and `read_pools` never
returns them. `DatasourcesEditor` is this module's `tuning.edit.ConfigEditor`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

from tuning.edit import EditorError, PerFileEditor
from tuning.params import DS_PROPERTIES, Target, Value, split_ds_name

DEFAULT_NAME = "master-datasources.xml"
_MASKED = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>", re.S)
_DATASOURCE = re.compile(r"<datasource\b[^>]*>(.*?)</datasource\s*>", re.S)
_JNDI = re.compile(r"<jndiConfig\b.*?</jndiConfig\s*>", re.S)
_NAME = re.compile(r"<name\s*>([^<]*)</name\s*>")
_CONFIG = re.compile(r"<configuration\b[^>]*>(.*?)</configuration\s*>", re.S)
_TAG = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)[^>]*?(/?)>")


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


def _children(masked: str, pool: _Pool) -> list[tuple[str, int, int]]:
    """(tag, start, end) of each element directly inside the pool's configuration (not those
    nested in e.g. `<databaseProps>`)."""
    out, depth, start, tag = [], 0, 0, ""
    for m in _TAG.finditer(masked, pool.start, pool.end):
        closing, name, empty = m.groups()
        if closing:
            depth -= 1
            if depth == 0:
                out.append((tag, start, m.end()))
        elif empty:
            if depth == 0:
                out.append((name, m.start(), m.end()))
        else:
            if depth == 0:
                tag, start = name, m.start()
            depth += 1
    return out


def _element(masked: str, pool: _Pool, tag: str) -> re.Match[str] | None:
    """`<tag>text</tag>` (or `<tag/>`, attributes allowed) directly inside the pool's
    configuration; None when there is none, or when it holds other elements."""
    pattern = re.compile(rf"<{tag}(?:\s[^>]*?)?(?:/>|>(?P<text>[^<]*)</{tag}\s*>)")
    for name, start, end in _children(masked, pool):
        if name == tag:
            return pattern.fullmatch(masked, start, end)
    return None


def _value(raw: str) -> str:
    """An element's text as an XML parser gives it: entities decoded, CDATA unwrapped,
    comments dropped."""
    return re.sub(
        r"<!\[CDATA\[(.*?)\]\]>|<!--.*?-->|[^<]+",
        lambda m: m.group(1) if m.group(1) is not None
        else "" if m.group(0).startswith("<!--") else _unescape(m.group(0)),
        raw, flags=re.S,
    )


def _unescape(text: str) -> str:
    """XML's five entities and character references, decoded (in one pass: `&amp;lt;` is
    `&lt;`)."""
    named = {"lt": "<", "gt": ">", "amp": "&", "apos": "'", "quot": '"'}
    return re.sub(r"&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|apos|quot);",
                  lambda m: named.get(m.group(1)) or chr(
                      int(m.group(1)[2:], 16) if m.group(1)[1] == "x" else int(m.group(1)[1:])),
                  text)


def read_pools(text: str, name: str = DEFAULT_NAME) -> dict[str, str]:
    """{`ds.<datasource>.<property>`: value} for each pool setting the file gives (text, as
    written; the last of a name given twice wins). Never passwords, users or URLs."""
    masked = _mask(text)
    out: dict[str, str] = {}
    for pool in _pools(text, name):
        for prop, tag in DS_PROPERTIES.items():
            m = _element(masked, pool, tag)
            if m is not None:
                raw = text[m.start("text"):m.end("text")] if m.group("text") is not None else ""
                out[f"ds.{pool.name}.{prop}"] = _value(raw.strip())
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
        odd = [t for t, _, _ in _children(masked, pool) if t.endswith(":" + tag) or t == tag]
        if m is None and odd:
            raise EditorError(f"{name}: <{odd[0]}> of datasource {datasource} has a namespace "
                              "prefix or holds other elements, not a value; fix it by hand")
        if value is None:
            if m is not None:
                text = _remove(text, m.start(), m.end())
        elif m is None:
            text = _insert(text, masked, pool, f"<{tag}>{escape(value)}</{tag}>", name)
        elif m.group("text") is None:  # <tag/>
            text = text[: m.start()] + f"<{tag}>{escape(value)}</{tag}>" + text[m.end():]
        else:
            old = text[m.start("text"):m.end("text")]  # the original: CDATA is masked
            core = old.strip()
            lead = m.start("text") + (len(old) - len(old.lstrip()))
            cdata = core.startswith("<![CDATA[") and core.endswith("]]>") and "]]>" not in value
            if _value(core) != value:
                new = f"<![CDATA[{value}]]>" if cdata else escape(value)
                text = text[:lead] + new + text[lead + len(core):]
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
    """`element` on a line of its own after the line where the configuration's last setting
    ends (after a nested block such as `<databaseProps>`, never inside it)."""
    kids = _children(masked, pool)
    line_end = text.find("\n", kids[-1][2]) if kids else -1
    # the last setting's line must end before </configuration> does
    if line_end < 0 or pool.end < line_end:
        raise EditorError(f"{name}: the configuration of a datasource has no setting on a line "
                          "of its own to add one after; add it by hand")
    first = text.rfind("\n", 0, kids[-1][1]) + 1
    head = text[first:]
    indent = head[: len(head) - len(head.lstrip(" \t"))]
    eol = "\r\n" if text[line_end - 1 : line_end + 1] == "\r\n" else "\n"
    return text[: line_end + 1] + indent + element + eol + text[line_end + 1 :]


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
