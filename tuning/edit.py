"""The config editor contract, and what an edit gives: new text, its unified diff, errors.

`ConfigEditor` is the contract; `IntegratorShEditor` (`tuning.integrator_sh`), `NginxConfEditor`
(`tuning.nginx_conf`) and `PassthruEditor` (`tuning.passthru_properties`) implement it and pass
one shared suite (tests/tuning/test_editor_contract.py). Editors work on text and return an
`Edit` per file; only the change journal writes files. Lines are split on "\\n" alone, so CRLF
line ends, stray form feeds and other odd bytes stay exactly where they were.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from eicore.errors import EiperfError
from tuning.params import ParameterError, Target, Value, format_value, target_of, validate

NO_NEWLINE_MARKER = "\\ No newline at end of file\n"


class EditorError(EiperfError, ValueError):
    """A file an editor cannot change as asked; the message is one line naming the file."""


@dataclass(frozen=True)
class Edit:
    """A proposed change to one file: the whole new text, the unified diff from the old, and
    notes -- one line each, naming file:line -- on what was left alone and why, or on a
    related setting that makes the change moot."""

    new_text: str
    diff: str
    changed: bool
    notes: tuple[str, ...] = ()

    @classmethod
    def between(cls, old_text: str, new_text: str, name: str, notes: Iterable[str] = ()) -> Edit:
        """The edit that turns `old_text` into `new_text` (empty diff when they are equal)."""
        return cls(
            new_text, unified_diff(old_text, new_text, name), new_text != old_text, tuple(notes)
        )


class ConfigEditor(ABC):
    """Change tuning parameters in one kind of config file, as text: text in, `Edit`s out.

    Contract (each implementation passes tests/tuning/test_editor_contract.py):

    - `edit(files, changes)` is pure: `files` maps a name (shown in diff headers and errors,
      e.g. "node1: bin/integrator.sh") to the file's text; nothing else is read or written.
    - `changes` maps parameter names of the editor's `target` to values; None removes a
      setting, so the product's default applies again. A name of another target, a name that
      is no parameter at all, or a bad value raises ParameterError (one line naming the
      parameter) before any file is looked at.
    - It returns one `Edit` per file, keyed and ordered as `files`, unchanged files included
      (`changed` False, empty diff). A file the change cannot be made in raises EditorError
      (one line naming the file); there are no partial results. So does a change that leaves
      a pair of related settings in a state the product refuses, judged on the file as it
      would be after the change (-Xms above -Xmx, a worker pool core above its max, ip_hash
      beside a backup server); only pairs the change touches are judged.
    - What a change leaves alone on purpose (a `stream {}` block; a timeout nginx does not
      take inside `if`, set in the enclosing location instead) or what a related setting makes
      moot (upstream keepalive over HTTP/1.0) is said in `Edit.notes`, one line each.
    - Only the bytes of the values that change differ: line ends (CRLF too; an added line gets
      the file's own), comments (on an edited line too), blank lines, indentation and order
      stay. Setting the value a file already has gives identical bytes.
    - Edits can be undone: after a value the file sets is changed, setting the old value back
      gives the original bytes, and so does `patch -R` with the `Edit.diff` on the new text.
      The script and nginx editors also give them back when a setting they added is removed
      (None); the properties editor comments such a key out instead.
    - Script and properties editors treat each file on its own (several nodes' files in one
      call are independent); the nginx editor takes the files given together (nginx.conf and
      its vhosts) as one configuration, and a change goes wherever it belongs among them.
    """

    #: the parameters this editor takes (`jvm.*`, `nginx.*` or `passthru.*`)
    target: ClassVar[Target]
    #: how a refusal names those parameters: "a JVM parameter", "an nginx parameter", ...
    describes: ClassVar[str]

    def edit(self, files: Mapping[str, str], changes: Mapping[str, object]) -> dict[str, Edit]:
        """One `Edit` per file of `files` ({name: text}) for `changes` ({parameter: value})."""
        checked = self.check(changes, list(files))
        return self.rewrite(files, checked) if files else {}

    def check(self, changes: Mapping[str, object], names: list[str]) -> dict[str, Value | None]:
        """`changes` with checked, normalised values; ParameterError for one it does not take."""
        checked: dict[str, Value | None] = {}
        for key, value in changes.items():
            if target_of(key) is not self.target:
                where = ", ".join(names) or "these files"
                takes = "take" if len(names) > 1 else "takes"
                raise ParameterError(
                    f"{key}: not {self.describes}; {where} {takes} only {self.target.value}.* "
                    "changes"
                )
            checked[key] = validate(key, value)
        return checked

    @abstractmethod
    def rewrite(
        self, files: Mapping[str, str], changes: Mapping[str, Value | None]
    ) -> dict[str, Edit]:
        """`edit` once `changes` are checked: the implementation's part."""


class PerFileEditor(ConfigEditor):
    """An editor whose files are independent and whose changes are single settings: each file
    gets every change in turn (`set_value`), and its notes are judged on the result
    (`notes`, only when the file changed)."""

    def rewrite(
        self, files: Mapping[str, str], changes: Mapping[str, Value | None]
    ) -> dict[str, Edit]:
        out = {}
        for name, text in files.items():
            new = text
            for param, value in changes.items():
                new = self.set_value(new, param, None if value is None else format_value(value),
                                     name)
            out[name] = Edit.between(text, new, name,
                                     self.notes(new, name, changes) if new != text else [])
        return out

    @abstractmethod
    def set_value(self, text: str, param: str, value: str | None, name: str) -> str:
        """`text` with `param` set to `value` (its text; None removes); EditorError if not."""

    def notes(self, text: str, name: str, changes: Mapping[str, Value | None]) -> list[str]:
        """What the changed file `text` makes of related settings, one line each."""
        return []


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
