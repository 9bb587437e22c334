"""The result of a pure config edit: new text, its unified diff, and the editors' error type.

All three editors (integrator.sh, nginx, passthru-http.properties) work on text and return an
`Edit`; only the change journal writes files. Lines are split on "\\n" alone, so CRLF line ends,
stray form feeds and other odd bytes stay exactly where they were.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from eicore.errors import EiperfError

NO_NEWLINE_MARKER = "\\ No newline at end of file\n"


class EditorError(EiperfError, ValueError):
    """A file an editor cannot change as asked; the message is one line naming the file."""


@dataclass(frozen=True)
class Edit:
    """A proposed change to one file: the whole new text and the unified diff from the old."""

    new_text: str
    diff: str
    changed: bool

    @classmethod
    def between(cls, old_text: str, new_text: str, name: str) -> Edit:
        """The edit that turns `old_text` into `new_text` (empty diff when they are equal)."""
        return cls(new_text, unified_diff(old_text, new_text, name), new_text != old_text)


def split_lines(text: str) -> list[str]:
    """Split after each "\\n", keeping line ends; "".join(result) == text."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def split_eol(line: str) -> tuple[str, str]:
    """A line without its end, and the end ("\\r\\n", "\\n" or "" for an unterminated last line)."""
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""


def dominant_eol(text: str) -> str:
    """The line end most lines of `text` use ("\\n" when there are none), for inserted lines."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def unified_diff(old_text: str, new_text: str, name: str) -> str:
    """A `diff -u`-style diff of one file as `a/<name>` -> `b/<name>`; "" when nothing changed."""
    if old_text == new_text:
        return ""
    out = []
    for line in difflib.unified_diff(
        split_lines(old_text), split_lines(new_text), f"a/{name}", f"b/{name}"
    ):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n" + NO_NEWLINE_MARKER)
    return "".join(out)
