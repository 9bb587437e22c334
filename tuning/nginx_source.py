"""One nginx config file: its statements as crossplane parses them, edited in place by line.

crossplane gives the structure (nginx's grammar, and its checks of where a directive may stand
and how many arguments it takes) with the line each directive starts on. Edits are then made in
the original text on that line, replacing only the tokens that change, so every other byte
(comments, indentation, CRLF line ends, other directives on the line) stays. A directive that
must be added goes on a new line, indented like its siblings.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from crossplane.analyzer import CONTEXTS, DIRECTIVES, analyze, enter_block_ctx
from crossplane.errors import NgxParserBaseException

from tuning.edit import EditorError, dominant_eol, split_eol, split_lines

_MAIN_MARKERS = ("events", "http", "worker_processes", "user", "pid", "load_module")


@dataclass(eq=False)
class Statement:
    """One directive: name, arguments, where it starts and ends, and its block if it has one."""

    directive: str
    args: list[str]
    line: int
    term: str = ";"
    end_line: int = 0  # line of the ";" or of the block's closing "}"
    open_line: int = 0  # line of the block's "{"
    block: list[Statement] | None = None
    parent: Statement | None = None


@dataclass
class _LineStmt:
    """A statement as found on one line of text: spans of its name, arguments and end."""

    name: str
    start: int
    name_end: int
    args: list[tuple[int, int, str]] = field(default_factory=list)
    end: int | None = None  # just past the ";" / "{", None when it goes on to the next line


# ---- parsing ------------------------------------------------------------------------------


def _tokens(text: str, name: str) -> list[tuple[str, int, bool]]:
    # crossplane.parse only reads files by path; its lexer (what parse runs first) reads any
    # file-like object, so the editor stays pure: no temporary file for the text it is given.
    # These two are lexer internals; the tests exercise them on every supported shape.
    from crossplane.lexer import _balance_braces, _lex_file_object

    return list(_balance_braces(_lex_file_object(io.StringIO(text)), name))


def _build(tokens: list[tuple[str, int, bool]], name: str) -> list[Statement]:
    it = iter(tokens)
    last_line = tokens[-1][1] if tokens else 1

    def block(parent: Statement | None) -> tuple[list[Statement], int]:
        stmts: list[Statement] = []
        for token, line, quoted in it:
            if token == "}" and not quoted:
                return stmts, line
            if token.startswith("#") and not quoted:
                continue
            stmt = Statement(token, [], line, parent=parent)
            while True:
                token, at, quoted = next(it, ("", 0, True))
                if not at:
                    raise NgxParserBaseException(
                        'unexpected end of file, expecting ";" or "}"', name, last_line
                    )
                if token in ("{", ";", "}") and not quoted:
                    break
                if not (token.startswith("#") and not quoted):
                    stmt.args.append(token)
            stmt.term = token
            if token == "}":
                raise NgxParserBaseException(
                    f'directive "{stmt.directive}" is not terminated by ";"', name, stmt.line
                )
            if token == "{":
                stmt.open_line = at
                stmt.block, stmt.end_line = block(stmt)
            else:
                stmt.end_line = at
            stmts.append(stmt)
        return stmts, last_line

    return block(None)[0]


def _check(stmts: list[Statement], ctx: tuple[str, ...], name: str) -> None:
    for s in stmts:
        payload = {"directive": s.directive, "line": s.line, "args": s.args}
        analyze(name, payload, s.term, ctx, strict=False, check_ctx=True, check_args=True)
        if s.block is not None:
            _check(s.block, enter_block_ctx(payload, ctx), name)


def in_stream(stmt: Statement) -> bool:
    """True inside a `stream {}` block (TCP/UDP proxying: no HTTP vhost, upstream or proxy
    setting of these is for it)."""
    scope = stmt.parent
    while scope is not None:
        if scope.directive == "stream":
            return True
        scope = scope.parent
    return False


def walk(stmts: list[Statement]) -> Iterator[Statement]:
    """Every statement in `stmts` and in their blocks, in file order."""
    for s in stmts:
        yield s
        if s.block is not None:
            yield from walk(s.block)


# ---- one file, edited line by line --------------------------------------------------------


def _scan(body: str) -> list[_LineStmt]:
    """The statements that start on one line of text (nginx's token rules, with positions)."""
    out: list[_LineStmt] = []
    current: _LineStmt | None = None
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":
            break
        if c in "{};":
            if current is not None:
                current.end = i + 1
                out.append(current)
            current = None
            i += 1
            continue
        j = i
        if c in "\"'":
            j += 1
            while j < n and body[j] != c:
                j += 2 if body[j] == "\\" else 1
            j = min(j + 1, n)
        else:
            while j < n and not body[j].isspace() and body[j] not in ";{}":
                if body[j] == "\\":
                    j += 1
                elif body[j] == "$" and body[j + 1 : j + 2] == "{":
                    j = body.find("}", j) if "}" in body[j:] else n - 1
                j += 1
        word = body[i:j]
        if current is None:
            current = _LineStmt(word, i, j)
        else:
            current.args.append((i, j, word))
        i = j
    if current is not None:
        out.append(current)
    return out


class NginxSource:
    """One config file: its parse, and the line edits and insertions made to it so far."""

    def __init__(self, name: str, text: str, ctx: tuple[str, ...] | None = None) -> None:
        """`ctx`: the context the file is included in, when known (else guessed from it)."""
        self.name, self.text = name, text
        pairs = [split_eol(line) for line in split_lines(text)]
        self.bodies = [body for body, _ in pairs]
        self.eols = [eol for _, eol in pairs]
        self.deleted: set[int] = set()
        self.inserts: dict[int, list[str]] = {}
        if text.startswith("\ufeff"):  # nginx reads it as part of the first directive's name
            raise EditorError(
                f"{name}:1: starts with a UTF-8 byte order mark, which nginx refuses "
                "(\"unknown directive\"); save the file without it"
            )
        try:
            self.stmts = _build(_tokens(text, name), name)
            self.ctx = _context(self.stmts) if ctx is None else ctx
            _check(self.stmts, self.ctx, name)
        except NgxParserBaseException as e:
            where = f"{name}:{e.lineno}" if e.lineno is not None else name
            if ctx is None and "not allowed here" in str(e.strerror) and _fits(self, "stream"):
                raise EditorError(
                    f"{where}: {e.strerror} in an http vhost, but the file reads as one included "
                    "in stream {} (TCP/UDP), which nginx.* parameters do not tune; give the "
                    "nginx.conf that includes it too, or leave it out"
                ) from None
            raise EditorError(
                f"{where}: {e.strerror} (not a valid nginx config; fix it and retry)"
            ) from None
        self.by_line: dict[int, list[Statement]] = {}
        for s in walk(self.stmts):
            self.by_line.setdefault(s.line, []).append(s)
        self.unit = "\t" if re.search(r"^\t", text, re.MULTILINE) else "    "

    def context(self, block: Statement | None) -> tuple[str, ...]:
        """The nginx context inside `block` (None: the file's top), e.g. ("http", "location")."""
        chain = []
        while block is not None:
            chain.append(block)
            block = block.parent
        ctx = self.ctx
        for stmt in reversed(chain):
            ctx = enter_block_ctx({"directive": stmt.directive, "args": stmt.args}, ctx)
        return ctx

    def accepts(self, block: Statement | None, directive: str) -> bool:
        """True when nginx takes `directive` inside `block` (crossplane's table of contexts)."""
        mask = CONTEXTS.get(self.context(block))
        return mask is not None and any(m & mask for m in DIRECTIVES.get(directive, []))

    @property
    def is_main(self) -> bool:
        """True for a main nginx.conf (events/http at its top), False for an included file."""
        return self.ctx == ()

    def locate(self, stmt: Statement) -> _LineStmt:
        """Where `stmt` stands on its line; EditorError when it goes on over several lines."""
        same = [s for s in self.by_line[stmt.line] if s.directive == stmt.directive]
        found = [ls for ls in _scan(self.bodies[stmt.line - 1]) if ls.name == stmt.directive]
        k = next(i for i, s in enumerate(same) if s is stmt)
        if k >= len(found) or found[k].end is None:
            raise EditorError(
                f"{self.name}:{stmt.line}: '{stmt.directive}' goes on over several lines; "
                "put it on one line so it can be edited in place"
            )
        return found[k]

    def _splice(self, line: int, start: int, end: int, new: str) -> None:
        body = self.bodies[line - 1]
        self.bodies[line - 1] = body[:start] + new + body[end:]

    def set_args(self, stmt: Statement, args: list[str]) -> None:
        """Replace a directive's arguments; with as many as before, each token in place."""
        if args == stmt.args:
            return
        ls = self.locate(stmt)
        if len(args) == len(ls.args):
            for (start, end, was), new in reversed(list(zip(ls.args, args, strict=True))):
                quote = was[0] if len(was) > 1 and was[0] in "\"'" and was[-1] == was[0] else ""
                if quote and quote not in new:  # "5m" stays quoted: setting 5m back restores it
                    new = quote + new + quote
                self._splice(stmt.line, start, end, new)
        else:
            stop = ls.args[-1][1] if ls.args else ls.name_end
            self._splice(stmt.line, ls.name_end, stop, "".join(" " + a for a in args))
        stmt.args = list(args)

    def rename(self, stmt: Statement, directive: str) -> None:
        """Turn one directive into another with no arguments (ip_hash -> least_conn)."""
        self.set_args(stmt, [])
        ls = self.locate(stmt)
        self._splice(stmt.line, ls.start, ls.name_end, directive)
        stmt.directive = directive

    def set_param(self, stmt: Statement, key: str, value: str | None) -> None:
        """Set (None: drop) a `key=value` argument of a directive (upstream `server` lines)."""
        ls = self.locate(stmt)
        hits = [a for a in ls.args if a[2].startswith(key + "=")]
        new = None if value is None else f"{key}={value}"
        if hits and new is not None:
            self._splice(stmt.line, hits[0][0], hits[0][1], new)
        elif hits:
            start, end, _ = hits[0]
            body = self.bodies[stmt.line - 1]
            self._splice(stmt.line, len(body[:start].rstrip()), end, "")
        elif new is not None:
            at = ls.args[-1][1] if ls.args else ls.name_end
            self._splice(stmt.line, at, at, " " + new)
        stmt.args = [a[2] for a in self.locate(stmt).args]

    def delete(self, stmt: Statement) -> None:
        """Remove a directive: its whole line when nothing else but a comment is on it."""
        ls = self.locate(stmt)
        body = self.bodies[stmt.line - 1]
        end = ls.end or len(body)
        rest = body[end:].strip()
        if not body[: ls.start].strip() and (not rest or rest.startswith("#")):
            self.deleted.add(stmt.line)
        else:
            self._splice(stmt.line, ls.start, end + len(body[end:]) - len(body[end:].lstrip()), "")
        self.by_line[stmt.line].remove(stmt)
        siblings = stmt.parent.block if stmt.parent is not None else self.stmts
        (siblings or []).remove(stmt)

    def indent_in(self, parent: Statement | None) -> str:
        """The indentation of a new directive in `parent`'s block: that of its siblings."""
        siblings = parent.block if parent is not None else self.stmts
        for s in siblings or []:
            body = self.bodies[s.line - 1]
            head = body[: len(body) - len(body.lstrip())]
            if body.lstrip().startswith(s.directive) and s in self.by_line[s.line][:1]:
                return head
        if parent is None:
            return ""
        body = self.bodies[parent.line - 1]
        return body[: len(body) - len(body.lstrip())] + self.unit

    def insert_after(
        self, line: int, parent: Statement | None, directive: str, args: list[str]
    ) -> None:
        """Add `directive args;` on a new line after line `line` (0: at the top of the file)."""
        if parent is not None and line == parent.open_line and parent.end_line == line:
            raise EditorError(
                f"{self.name}:{line}: the '{parent.directive}' block is on one line; "
                f"put its braces on lines of their own so '{directive}' can be added"
            )
        text = self.indent_in(parent) + " ".join([directive, *args]) + ";"
        self.inserts.setdefault(line, []).append(text)

    def render(self) -> str:
        """The text with every edit so far; other lines byte for byte as they were."""
        eol = dominant_eol(self.text)
        out: list[str] = [new + eol for new in self.inserts.get(0, [])]
        for number, (body, end) in enumerate(zip(self.bodies, self.eols, strict=True), 1):
            added = self.inserts.get(number, [])
            if number not in self.deleted:
                out.append(body + (end or (eol if added else "")))
            out += [new + eol for new in added]
        text = "".join(out)
        if self.text and not self.text.endswith("\n") and text.endswith(eol):
            text = text[: -len(eol)]
        return text


def _fits(doc: NginxSource, block: str) -> bool:
    """True when the statements of `doc` (parsed, not yet checked) are valid inside `block`."""
    try:
        _check(doc.stmts, (block,), doc.name)
    except (NgxParserBaseException, AttributeError):
        return False
    return True


def _context(stmts: list[Statement]) -> tuple[str, ...]:
    top = {s.directive for s in stmts}
    if top & set(_MAIN_MARKERS):
        return ()
    if "location" in top and not top & {"server", "upstream"}:
        return ("http", "server")
    return ("http",)


def includes(name: str, text: str, ctx: tuple[str, ...] | None = None
             ) -> list[tuple[str, tuple[str, ...], int]]:
    """Each `include` of a file: its pattern (maybe a glob, maybe relative), the context it
    stands in -- the context of the files it names -- and its line. [] when the file does not
    tokenize; nothing is checked beyond braces and semicolons (the files are judged later)."""
    try:
        stmts = _build(_tokens(text, name), name)
    except NgxParserBaseException:
        return []
    return _includes_in(stmts, _context(stmts) if ctx is None else ctx)


def _includes_in(stmts: list[Statement], top: tuple[str, ...]
                 ) -> list[tuple[str, tuple[str, ...], int]]:
    """`includes` of parsed statements whose file stands in context `top`."""
    out = []
    for s in walk(stmts):
        if s.directive != "include" or len(s.args) != 1:
            continue
        chain, block = [], s.parent
        while block is not None:
            chain.append(block)
            block = block.parent
        inner = top
        for stmt in reversed(chain):
            inner = enter_block_ctx({"directive": stmt.directive, "args": stmt.args}, inner)
        out.append((s.args[0], inner, s.line))
    return out


def included_contexts(files: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """{name: context} for each of `files` ({name: text}) that a main nginx.conf among them
    includes: its include patterns (globs; relative ones from that nginx.conf's folder) are
    matched against the other names, so a file included inside `stream {}` is known as such.
    Files no main config names are absent: their context is guessed from their text."""
    out: dict[str, tuple[str, ...]] = {}
    for main, text in files.items():
        try:
            stmts = _build(_tokens(text, main), main)
        except NgxParserBaseException:
            continue
        if _context(stmts) != ():
            continue
        for pattern, ctx, _ in _includes_in(stmts, ()):
            where = posixpath.normpath(posixpath.join(posixpath.dirname(main), pattern))
            for name in files:
                if ctx and name != main and fnmatch.fnmatchcase(posixpath.normpath(name), where):
                    out.setdefault(name, ctx)
    return out


def child(stmts: list[Statement] | None, directive: str) -> Statement | None:
    """The first statement named `directive` among `stmts` (a block's body)."""
    return next((s for s in stmts or [] if s.directive == directive), None)
