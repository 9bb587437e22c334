"""Read and rewrite the nginx settings eiperf tunes, in nginx.conf and the guide's vhost files.

Each file is parsed by crossplane and edited in place (`tuning.nginx_source`), so a diff shows
the changed directives' lines and nothing else. Where each parameter lives:

* `proxy_{read,send,connect}_timeout`: every block that proxies (holds `proxy_pass`) must see the
  value; it is changed where it is set (that block or an enclosing server), else added to the
  block next to the other timeouts (before `proxy_pass` when there are none). A value set at
  http level in a main nginx.conf among the files is read as what a vhost inherits, but not
  edited (it holds for every vhost): the vhost gets its own, and a note says so. nginx takes them
  in http, server and location only: for a proxy_pass inside `if` or `limit_except` the value
  goes in the enclosing location (crossplane's table of contexts decides), and a note says so.
* `upstream_keepalive`, `lb_method`: every `upstream` block. nginx applies a balancing method
  only before `keepalive` (after it, keepalive is silently dropped: "load balancing method
  redefined"), so the editor keeps `least_conn`/`ip_hash` first and `keepalive` after the
  servers. 0 (or None) keepalive and `round_robin` remove the directive.
* `max_fails`, `fail_timeout`: parameters of every `server` line in the upstreams.
* `worker_processes` (main context) and `worker_connections` (`events`): the file among
  `files` that is a main nginx.conf (it has `events` or `http` at its top).

None as a value removes the directive (nginx's default applies again). Only the HTTP side is
read and edited: `stream {}` blocks (TCP/UDP proxying, e.g. MLLP to the nodes), and files a main
nginx.conf among the files includes inside one (`tuning.nginx_source.included_contexts`), have neither
these timeouts nor upstream keepalive or ip_hash, and are left alone -- each one a change would
have concerned is named in the edit's notes. Pairs judged as the files would stand (only for
upstreams the change touches): ip_hash, hash or random beside a `backup` server is refused
(nginx refuses it); notes say where upstream keepalive cannot work (HTTP/1.0 or `Connection:
close` to that upstream) and when worker_connections passes worker_rlimit_nofile. Validation
with `nginx -t` and reloads belong to node control. `NginxConfEditor` is this module's
`tuning.edit.ConfigEditor`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tuning.edit import ConfigEditor, Edit, EditorError
from tuning.nginx_source import (
    NginxSource,
    Statement,
    child,
    in_stream,
    included_contexts,
    walk,
)
from tuning.params import PARAMETERS, Target, Value

TIMEOUTS = {
    "nginx.proxy_read_timeout": "proxy_read_timeout",
    "nginx.proxy_send_timeout": "proxy_send_timeout",
    "nginx.proxy_connect_timeout": "proxy_connect_timeout",
}
LB_DIRECTIVES = ("least_conn", "ip_hash", "hash", "random")
# Balancing methods nginx refuses beside a `backup` server.
BACKUP_REFUSED = ("ip_hash", "hash", "random")
# Parameters that edit `upstream` blocks.
UPSTREAM_PARAMS = {
    "nginx.upstream_keepalive", "nginx.lb_method", "nginx.max_fails", "nginx.fail_timeout",
}
# What nginx uses when a directive is absent (reported by `read_nginx_settings`).
DEFAULTS: dict[str, Value] = {
    "nginx.proxy_read_timeout": "60s",
    "nginx.proxy_send_timeout": "60s",
    "nginx.proxy_connect_timeout": "60s",
    "nginx.upstream_keepalive": 0,
    "nginx.lb_method": "round_robin",
    "nginx.max_fails": 1,
    "nginx.fail_timeout": "10s",
    "nginx.worker_processes": 1,
    "nginx.worker_connections": 512,
}


@dataclass(frozen=True)
class NginxSetting:
    """One place a parameter takes its value: the file, the line, and whether it is a default."""

    param: str
    file: str
    line: int  # the directive's line; for a default, the line of the block that inherits it
    value: Value
    default: bool = False


# ---- what each parameter touches -----------------------------------------------------------


def _parse(files: Mapping[str, str]) -> list[NginxSource]:
    """The files, each parsed in the context a main nginx.conf among them includes it in."""
    contexts = included_contexts(files)
    return [NginxSource(name, text, contexts.get(name)) for name, text in files.items()]


def _is_stream(doc: NginxSource, stmt: Statement) -> bool:
    """Inside `stream {}`: in the file itself, or a file included there (TCP/UDP, not HTTP)."""
    return in_stream(stmt) or doc.ctx[:1] == ("stream",)


def _proxy_blocks(doc: NginxSource) -> list[Statement]:
    return [
        s
        for s in walk(doc.stmts)
        if s.block is not None
        and any(c.directive == "proxy_pass" for c in s.block)
        and not _is_stream(doc, s)
    ]


def _holder(block: Statement, directive: str) -> Statement | None:
    """The statement that sets `directive` for `block`: in it, or in an enclosing block."""
    scope: Statement | None = block
    while scope is not None and scope.block is not None:
        for s in scope.block:
            if s.directive == directive:
                return s
        scope = scope.parent
    return None


def _where_set(docs: list[NginxSource], doc: NginxSource, block: Statement, directive: str
               ) -> tuple[NginxSource, Statement] | None:
    """The statement that sets `directive` for `block`, and its file: in the block or an
    enclosing one, or -- for a vhost file included in http -- the http {} of a main nginx.conf
    among `docs` (what nginx inherits there)."""
    holder = _holder(block, directive)
    if holder is not None:
        return doc, holder
    if doc.ctx != ("http",):
        return None
    for main in (d for d in docs if d.is_main):
        http = child(main.stmts, "http")
        found = child(http.block, directive) if http is not None else None
        if found is not None:
            return main, found
    return None


def _upstreams(doc: NginxSource) -> list[Statement]:
    return [
        s
        for s in walk(doc.stmts)
        if s.directive == "upstream" and s.block is not None and not _is_stream(doc, s)
    ]


def _events(doc: NginxSource) -> Statement | None:
    return child(doc.stmts, "events")


def find_nginx_settings(files: Mapping[str, str]) -> list[NginxSetting]:
    """Every place each `nginx.*` parameter takes its value in `files` ({name: text})."""
    out: list[NginxSetting] = []
    docs = _parse(files)
    for doc in docs:
        name = doc.name
        for block in _proxy_blocks(doc):
            for param, directive in TIMEOUTS.items():
                found = _where_set(docs, doc, block, directive)
                if found is not None and found[1].args:
                    out.append(NginxSetting(param, found[0].name, found[1].line,
                                            found[1].args[0]))
                else:
                    out.append(NginxSetting(param, name, block.line, DEFAULTS[param], True))
        for up in _upstreams(doc):
            assert up.block is not None
            keep = child(up.block, "keepalive")
            out.append(
                NginxSetting("nginx.upstream_keepalive", name, keep.line, int(keep.args[0]))
                if keep is not None and keep.args and keep.args[0].isdigit()
                else NginxSetting("nginx.upstream_keepalive", name, up.line, 0, True)
            )
            lb = next((s for s in up.block if s.directive in LB_DIRECTIVES), None)
            out.append(
                NginxSetting("nginx.lb_method", name, lb.line, lb.directive)
                if lb is not None
                else NginxSetting("nginx.lb_method", name, up.line, "round_robin", True)
            )
            for server in (s for s in up.block if s.directive == "server"):
                for param, key in (
                    ("nginx.max_fails", "max_fails"),
                    ("nginx.fail_timeout", "fail_timeout"),
                ):
                    given = [a.split("=", 1)[1] for a in server.args if a.startswith(key + "=")]
                    value: Value = given[0] if given else DEFAULTS[param]
                    if given and param == "nginx.max_fails" and given[0].isdigit():
                        value = int(given[0])
                    out.append(NginxSetting(param, name, server.line, value, not given))
        if doc.is_main:
            out += _main_settings(doc, name)
    return out


def _main_settings(doc: NginxSource, name: str) -> list[NginxSetting]:
    out = []
    wp = child(doc.stmts, "worker_processes")
    if wp is not None and wp.args:
        value: Value = int(wp.args[0]) if wp.args[0].isdigit() else wp.args[0]
        out.append(NginxSetting("nginx.worker_processes", name, wp.line, value))
    else:
        out.append(NginxSetting("nginx.worker_processes", name, 1, 1, True))
    events = _events(doc)
    wc = child(events.block, "worker_connections") if events else None
    if wc is not None and wc.args and wc.args[0].isdigit():
        out.append(NginxSetting("nginx.worker_connections", name, wc.line, int(wc.args[0])))
    elif events is not None:
        out.append(NginxSetting("nginx.worker_connections", name, events.line, 512, True))
    return out


def read_nginx_settings(files: Mapping[str, str]) -> dict[str, Value | list[Value] | None]:
    """The current value of each `nginx.*` parameter across `files` ({name: text}).

    A value is nginx's default where the directive is absent; a list of the distinct values
    (in file order) where places disagree; None where no file has a place for it (no proxying
    block, no upstream, or no main nginx.conf among `files`).
    """
    settings = find_nginx_settings(files)
    out: dict[str, Value | list[Value] | None] = {}
    for param in (p for p in PARAMETERS if p.startswith("nginx.")):
        values: list[Value] = []
        for s in settings:
            if s.param == param and s.value not in values:
                values.append(s.value)
        out[param] = None if not values else values[0] if len(values) == 1 else values
    return out


# ---- applying changes ------------------------------------------------------------------------


def _set_timeout(docs: list[NginxSource], doc: NginxSource, directive: str, value: Value | None,
                 notes: list[str]) -> int:
    """Set a proxy timeout for every proxying block of `doc`; returns how many there are.

    nginx takes the timeouts in http, server and location, not inside `if` or `limit_except`
    (where proxy_pass may stand): such a block gets the value in its enclosing location, and a
    block on one line in the nearest enclosing one on lines of its own. A value a main
    nginx.conf sets at http level is read but not edited: it holds for every vhost, so the
    vhost gets its own (and a note says so)."""
    places = 0
    done: set[object] = set()  # holders changed, blocks given the directive, notes given
    for block in _proxy_blocks(doc):
        places += 1
        if value is None:
            while (holder := _holder(block, directive)) is not None:
                doc.delete(holder)
            _note_inherited(docs, doc, block, directive, None, notes, done)
            continue
        holder = _holder(block, directive)
        if holder is not None:
            if id(holder) not in done:
                doc.set_args(holder, [str(value)])
                done.add(id(holder))
            continue
        target: Statement | None = block
        while target is not None and not (doc.accepts(target, directive)
                                           and (target.end_line != target.open_line
                                                or not _multi_line_above(doc, target,
                                                                         directive))):
            target = target.parent
        if target is None or id(target) in done:
            continue
        done.add(id(target))
        assert target.block is not None
        inner = block  # the statement of `target` that holds the proxy_pass
        while inner.parent is not target and inner is not target:
            assert inner.parent is not None
            inner = inner.parent
        at = next(i for i, s in enumerate(target.block) if s is inner or (
            inner is target and s.directive == "proxy_pass"))
        timeouts = [s for s in target.block if s.directive in TIMEOUTS.values()]
        anchor = timeouts[-1] if timeouts else target.block[at - 1] if at else None
        doc.insert_after(
            anchor.end_line if anchor else target.open_line, target, directive, [str(value)]
        )
        if target is not block:
            notes.append(
                f"{doc.name}:{block.line}: {directive} set in the enclosing {target.directive} "
                f"(line {target.line}): nginx does not accept it inside '{block.directive}'"
                + (" on one line" if doc.accepts(block, directive) else "")
            )
        _note_inherited(docs, doc, block, directive, value, notes, done)
    return places


def _multi_line_above(doc: NginxSource, block: Statement, directive: str) -> bool:
    """An enclosing block of `block` on lines of its own takes `directive` (so a one-line
    block need not be opened up to add it)."""
    up = block.parent
    while up is not None:
        if doc.accepts(up, directive) and up.end_line != up.open_line:
            return True
        up = up.parent
    return False


def _note_inherited(docs: list[NginxSource], doc: NginxSource, block: Statement,
                    directive: str, value: Value | None, notes: list[str],
                    done: set[object]) -> None:
    """Say once per file when a main nginx.conf's http-level value is what the vhost now
    overrides (a value) or falls back to (None) -- that one is left alone."""
    found = _where_set(docs, doc, block, directive)
    if found is None or found[0] is doc or ("inherited", doc.name, id(found[1])) in done:
        return
    done.add(("inherited", doc.name, id(found[1])))
    main, stmt = found
    was = " ".join(stmt.args)
    notes.append(
        f"{doc.name}: {directive} {value} overrides the {was} that {main.name}:{stmt.line} sets "
        "at http level for every vhost (left alone)" if value is not None else
        f"{doc.name}: {directive} now comes from {main.name}:{stmt.line} ({was}, at http "
        "level for every vhost; left alone)"
    )


def _set_keepalive(doc: NginxSource, up: Statement, value: Value | None) -> None:
    assert up.block is not None
    existing = [s for s in up.block if s.directive == "keepalive"]
    # A balancing method after keepalive cancels it: such a keepalive moves below the method.
    misplaced = bool(existing) and any(
        s.directive in LB_DIRECTIVES for s in up.block[up.block.index(existing[0]) :]
    )
    if value in (None, 0) or misplaced:
        for s in existing:
            doc.delete(s)
        existing = []
    if value in (None, 0):
        return
    if existing:
        doc.set_args(existing[0], [str(value)])
        return
    anchors = [s for s in up.block if s.directive == "server" or s.directive in LB_DIRECTIVES]
    doc.insert_after(
        anchors[-1].end_line if anchors else up.open_line, up, "keepalive", [str(value)]
    )


def _set_lb(doc: NginxSource, up: Statement, method: Value | None) -> None:
    assert up.block is not None
    existing = [s for s in up.block if s.directive in LB_DIRECTIVES]
    keep = next((i for i, s in enumerate(up.block) if s.directive == "keepalive"), len(up.block))
    wanted = None if method in (None, "round_robin") else str(method)
    first = existing[0] if existing and up.block.index(existing[0]) < keep else None
    for s in existing:
        if s is not first or wanted is None:
            doc.delete(s)
    if wanted is None:
        return
    if first is not None:
        if first.directive != wanted or first.args:
            doc.rename(first, wanted)
        return
    doc.insert_after(up.open_line, up, wanted, [])


def _main(docs: list[NginxSource], param: str) -> NginxSource:
    mains = [d for d in docs if d.is_main]
    if not mains:
        raise EditorError(
            f"{param}: none of {', '.join(d.name for d in docs)} is a main nginx.conf "
            "(with an events or http block); add it to the files to change"
        )
    return mains[0]


def _set_worker(doc: NginxSource, param: str, value: Value | None) -> None:
    """worker_processes at the top of nginx.conf, worker_connections in its events block."""
    directive = param.removeprefix("nginx.")
    if param == "nginx.worker_processes":
        parent = None
        first_block = next((i for i, s in enumerate(doc.stmts) if s.block is not None), None)
        before = doc.stmts[:first_block]
        anchor = before[-1].end_line if before else 0
    else:
        parent = _events(doc)
        if parent is None:
            raise EditorError(f"{param}: {doc.name} has no events block; add 'events {{ }}'")
        anchor = parent.open_line
    stmt = child(parent.block if parent else doc.stmts, directive)
    if stmt is not None and value is None:
        doc.delete(stmt)
    elif stmt is not None:
        doc.set_args(stmt, [str(value)])
    elif value is not None:
        doc.insert_after(anchor, parent, directive, [str(value)])


def _apply(
    docs: list[NginxSource], param: str, value: Value | None, notes: dict[str, list[str]]
) -> None:
    if param in TIMEOUTS:
        if not sum(_set_timeout(docs, d, TIMEOUTS[param], value, notes[d.name]) for d in docs):
            raise EditorError(f"{param}: no block proxies (proxy_pass) in {_names(docs)}")
        return
    if param in ("nginx.worker_processes", "nginx.worker_connections"):
        _set_worker(_main(docs, param), param, value)
        return
    ups = [(doc, up) for doc in docs for up in _upstreams(doc)]
    if not ups:
        raise EditorError(f"{param}: no upstream block in {_names(docs)}")
    for doc, up in ups:
        if param == "nginx.upstream_keepalive":
            _set_keepalive(doc, up, value)
        elif param == "nginx.lb_method":
            _set_lb(doc, up, value)
        else:
            key = param.removeprefix("nginx.")
            for server in [s for s in up.block or [] if s.directive == "server"]:
                doc.set_param(server, key, None if value is None else str(value))


def _names(docs: list[NginxSource]) -> str:
    return ", ".join(d.name for d in docs)


# ---- pairs nginx refuses, and settings a change leaves alone or makes moot -------------------


def _check_backup(docs: list[NginxSource], changes: Mapping[str, Value | None]) -> None:
    """EditorError when an upstream the change touches would balance with ip_hash, hash or
    random beside a `backup` server: nginx refuses that pair ("balancing method does not
    support parameter backup"). Judged before any edit, on the method that will stand."""
    if not set(changes) & UPSTREAM_PARAMS:
        return
    for doc in docs:
        for up in _upstreams(doc):
            assert up.block is not None
            kept = next((s for s in up.block if s.directive in LB_DIRECTIVES), None)
            if "nginx.lb_method" in changes:
                given = changes["nginx.lb_method"]
                method, where = (None if given in (None, "round_robin") else str(given)), ""
            else:
                method = kept.directive if kept is not None else None
                where = f" (its {method} is on line {kept.line})" if kept is not None else ""
            backup = next(
                (s for s in up.block if s.directive == "server" and "backup" in s.args), None
            )
            if method in BACKUP_REFUSED and backup is not None:
                streams = [f"{d.name}:{s.line}" for d in docs for s in _streams(d)]
                alone = (f" (stream {{}} at {', '.join(streams)} left alone: TCP/UDP, not these "
                         "HTTP settings)") if streams else ""
                raise EditorError(
                    f"{doc.name}:{backup.line}: upstream {' '.join(up.args)} has a backup "
                    f"server, which nginx's {method} refuses{where}; remove 'backup' there or "
                    f"use nginx.lb_method=least_conn{alone}"
                )


_STREAM_WHY = (
    "nginx.* parameters tune the HTTP proxying to EI, a stream block proxies raw TCP/UDP "
    "(nginx takes no proxy_read_timeout, proxy_send_timeout, keepalive or ip_hash there)"
)


def _streams(doc: NginxSource) -> list[Statement]:
    """The `stream {}` blocks of a file that proxy (proxy_pass) or balance (upstream)."""
    if doc.ctx[:1] == ("stream",):  # a file included in stream {}: named by its first line
        proxies = [s for s in walk(doc.stmts) if s.directive in ("proxy_pass", "upstream")]
        return doc.stmts[:1] if proxies else []
    return [
        s for s in doc.stmts if s.directive == "stream" and s.block is not None
        and {c.directive for c in walk(s.block)} & {"proxy_pass", "upstream"}
    ]


def _stream_notes(doc: NginxSource, changes: Mapping[str, Value | None]) -> list[str]:
    """Why each `stream {}` block with proxies or upstreams was left alone (when the change is
    about proxying or upstreams at all)."""
    if not set(changes) & (UPSTREAM_PARAMS | set(TIMEOUTS)):
        return []
    return [
        f"{doc.name}:{stream.line}: stream {{}} left alone: {_STREAM_WHY}; edit its "
        "proxy_timeout, proxy_connect_timeout and servers by hand if they need it"
        for stream in _streams(doc)
    ]


def stream_notes(files: Mapping[str, str]) -> list[str]:
    """For `tune show`: the `stream {}` blocks whose settings are not read, and why."""
    out = []
    for doc in _parse(files):
        name = doc.name
        out += [f"{name}:{s.line}: stream {{}} not read: {_STREAM_WHY}" for s in _streams(doc)]
    return out


def _inherited(docs: list[NginxSource], doc: NginxSource, block: Statement, directive: str
               ) -> list[Statement]:
    """The `directive` statements that apply in `block`: those of the nearest enclosing block
    that has any (nginx's inheritance of array directives such as proxy_set_header), looking
    into the http {} of a main nginx.conf for a vhost file's top level."""
    scope: Statement | None = block
    while scope is not None:
        found = [s for s in scope.block or [] if s.directive == directive]
        if found:
            return found
        scope = scope.parent
    if not doc.is_main:
        for main in (d for d in docs if d.is_main):
            http = child(main.stmts, "http")
            found = [s for s in (http.block if http else []) or [] if s.directive == directive]
            if found:
                return found
    return []


def _keepalive_notes(
    docs: list[NginxSource], changes: Mapping[str, Value | None]
) -> dict[str, list[str]]:
    """Where nginx.upstream_keepalive can have no effect: a block proxying to an upstream over
    HTTP/1.0, or with nginx's default `Connection: close` header, closes every connection."""
    out: dict[str, list[str]] = {d.name: [] for d in docs}
    value = changes.get("nginx.upstream_keepalive")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return out
    names = {" ".join(up.args) for d in docs for up in _upstreams(d)}
    for doc in docs:
        for block in _proxy_blocks(doc):
            proxy = child(block.block, "proxy_pass")
            url = proxy.args[0] if proxy is not None and proxy.args else ""
            host = re.sub(r"^https?://", "", url).split("/")[0]
            if host not in names:
                continue
            version = _inherited(docs, doc, block, "proxy_http_version")
            headers = _inherited(docs, doc, block, "proxy_set_header")
            connection = [h.args[1] if len(h.args) > 1 else "" for h in headers
                          if h.args and h.args[0].lower() == "connection"]
            why = []
            if not version or version[-1].args != ["1.1"]:
                why.append("over HTTP/1.0 (no proxy_http_version 1.1)")
            if not connection or connection[-1].strip().lower() == "close":
                why.append("with 'Connection: close' (no proxy_set_header Connection \"\")")
            if why:
                out[doc.name].append(
                    f"{doc.name}:{block.line}: {block.directive} {' '.join(block.args)} proxies "
                    f"to upstream {host} {' and '.join(why)}, so nginx closes each upstream "
                    "connection and nginx.upstream_keepalive does nothing for it; add "
                    "'proxy_http_version 1.1;' and 'proxy_set_header Connection \"\";' there"
                )
    return out


def _rlimit_note(
    docs: list[NginxSource], changes: Mapping[str, Value | None]
) -> tuple[str, str] | None:
    """(file, note) when the new worker_connections is above the file's worker_rlimit_nofile."""
    value = changes.get("nginx.worker_connections")
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    for doc in (d for d in docs if d.is_main):
        limit = child(doc.stmts, "worker_rlimit_nofile")
        if limit is None or not limit.args or not limit.args[0].isdigit():
            continue
        if value > int(limit.args[0]):
            return doc.name, (
                f"{doc.name}:{limit.line}: worker_connections {value} is above "
                "worker_rlimit_nofile "
                f"{limit.args[0]}: nginx warns that they exceed the open file limit and runs out "
                "of descriptors under load (a proxied request holds two); raise "
                f"worker_rlimit_nofile to {2 * value} or more"
            )
    return None


class NginxConfEditor(ConfigEditor):
    """`nginx.*` changes in nginx.conf and its vhost files, taken together as one configuration."""

    target = Target.NGINX
    describes = "an nginx parameter"

    def rewrite(
        self, files: Mapping[str, str], changes: Mapping[str, Value | None]
    ) -> dict[str, Edit]:
        docs = _parse(files)
        _check_backup(docs, changes)
        notes: dict[str, list[str]] = {d.name: _stream_notes(d, changes) for d in docs}
        for param, value in changes.items():
            _apply(docs, param, value, notes)
        for name, more in _keepalive_notes(docs, changes).items():
            notes[name] += more
        if (rlimit := _rlimit_note(docs, changes)) is not None:
            notes[rlimit[0]].append(rlimit[1])
        return {
            doc.name: Edit.between(doc.text, doc.render(), doc.name, notes[doc.name])
            for doc in docs
        }


def apply_nginx_changes(files: Mapping[str, str], changes: Mapping[str, object]) -> dict[str, Edit]:
    """`NginxConfEditor` shorthand: `nginx.*` changes (value None removes) to `files`.

    Returns one `Edit` per file ({name: text} in, {name: Edit} out), unchanged files included.
    """
    return NginxConfEditor().edit(files, changes)
