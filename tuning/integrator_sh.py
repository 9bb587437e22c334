"""Read and rewrite the JVM options in a node's start-up script (bin/integrator.sh, wso2server.sh).

Two forms exist (DESIGN.md):

* EI 6.x: `JVM_MEM_OPTS="-Xms256m -Xmx1024m"` is the default set when the variable is unset,
  maybe followed by a line that appends `-XX:MaxPermSize=256m` for Java older than 1.8. The
  java command then starts with `$JVM_MEM_OPTS`.
* Older Carbon: a literal `-Xms256m -Xmx1024m -XX:MaxPermSize=256m \\` line inside the
  multi-line java command.

Edits go onto the line that holds the memory options (the default `JVM_MEM_OPTS=` line, or the
literal line). New -XX flags go there too rather than onto a line of their own in the java
command: that line is where a reader (and WSO2's docs) look for JVM tuning, the `-z` default is
overridden wholesale by an exported JVM_MEM_OPTS (so a user who sets it keeps full control), and
one changed line keeps the diff small. A flag that already stands on the java command itself
(e.g. `-XX:+HeapDumpOnOutOfMemoryError`) is edited where it stands, because HotSpot takes the
last occurrence of a flag and the command's own flags come after `$JVM_MEM_OPTS`. Only the
option tokens change; quoting, comments, continuation backslashes, trailing whitespace and line
ends (CRLF too) stay as they were. The JVM_MEM_OPTS value must be one shell word on one line
("..." with escapes, '...', or plain), else it is refused; lines of here-documents are text, not
read. The conditional old-Java append line is read (with its line
number, so `tuning.jdk_checks` can say a flag there was left alone) but not edited. A change
that would leave -Xms above -Xmx, or two collectors selected, is refused: the JVM refuses both.

`IntegratorShEditor` is this module's `tuning.edit.ConfigEditor`; `apply_jvm_changes` is its
one-file shorthand. Which flags a JDK refuses, and the `java <flags> -version` check, are in
`tuning.jvm_flags` (re-exported here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tuning.edit import ConfigEditor, Edit, EditorError, split_eol, split_lines
from tuning.jvm_flags import (
    GC_BY_FLAG,
    GC_FLAGS,
    XX_FLAG,
    FlagFix,
    apply_flag_fixes,
    fixes_as_changes,
    flag_name,
    gc_log_flags,
    gc_log_setting,
    is_gc_log_flag,
    legacy_flag_fixes,
    parse_java_version_output,
    parse_refusal,
    validate_flags_command,
)
from tuning.params import GC_CHOICES, GC_LOG_OFF, Target, Value, size_to_bytes

# The JDK-facing flag checks live in tuning.jvm_flags; the API names them here too.
__all__ = [
    "FlagFix",
    "IntegratorShEditor",
    "JvmOptions",
    "ScriptForm",
    "apply_flag_fixes",
    "apply_jvm_changes",
    "fixes_as_changes",
    "legacy_flag_fixes",
    "parse_java_version_output",
    "parse_refusal",
    "read_jvm_options",
    "validate_flags_command",
]

_TOKEN = re.compile(r"""(?:[^\s"'\\]|\\.|"(?:[^"\\]|\\.)*"|'[^']*')+""")
_MEM_OPTS_START = re.compile(r"^\s*(?:export\s+)?JVM_MEM_OPTS=")
# The value is one word: "..." (backslash escapes inside), '...', or plain, ending the word.
_MEM_OPTS = re.compile(
    r"""^(?P<pre>\s*(?:export\s+)?JVM_MEM_OPTS=)(?:(?P<q>")(?P<qval>(?:[^"\\]|\\.)*)"|"""
    r"""(?P<sq>')(?P<sqval>[^']*)'|(?P<val>[^\s"'\\;&|()<>]*))(?=[\s;&|)]|$)"""
)
_HEREDOC = re.compile(r"""(?<!<)<<-?(?!<)\s*(?P<q>['"]?)(?P<word>[A-Za-z_]\w*)(?P=q)""")
_SELF_REF = re.compile(r"\$\{?JVM_MEM_OPTS\b")
_JAVACMD = re.compile(r"\$\{?JAVACMD\b")
_CONTINUED = re.compile(r"\\\s*$")
_HEAP = re.compile(r"-Xm[sx]")


class ScriptForm(StrEnum):
    """Where a script keeps its JVM memory options."""

    JVM_MEM_OPTS = "jvm_mem_opts"  # EI 6.x: the default JVM_MEM_OPTS="..." line
    LITERAL = "literal"  # older Carbon: a literal -Xms... line inside the java command


@dataclass(frozen=True)
class JvmOptions:
    """The JVM options a start-up script sets, as the JVM would see them (last one wins)."""

    form: ScriptForm
    lines: tuple[int, ...]  # 1-based numbers of the line(s) holding the memory options
    options: tuple[str, ...]  # the tokens on the (first) options line, as written
    command_flags: tuple[str, ...]  # -XX flags written on the java command itself
    conditional: tuple[str, ...]  # tokens appended only for Java older than 1.8 (EI 6.x)
    conditional_lines: tuple[int, ...] = ()  # 1-based numbers of the lines that append them
    xms: str | None = None
    xmx: str | None = None
    gc: str | None = None  # G1, Parallel, ..., or CMS/ParNew/Epsilon; None: the JVM default
    max_metaspace: str | None = None
    flags: dict[str, bool | str] = field(default_factory=dict)  # other -XX flags by name
    gc_log: str | None = None  # the GC log file (relative to EI_HOME), "off", None: no flags

    def as_params(self) -> dict[str, Value]:
        """The settings as `jvm.*` parameters (for `tune show` and run snapshots)."""
        out: dict[str, Value] = {}
        for name, value in (
            ("jvm.xms", self.xms),
            ("jvm.xmx", self.xmx),
            ("jvm.gc", self.gc),
            ("jvm.max_metaspace", self.max_metaspace),
            ("jvm.gc_log", self.gc_log),
        ):
            if value is not None and (name != "jvm.gc" or value in GC_CHOICES):
                out[name] = value
        if self.gc is not None and self.gc not in GC_CHOICES:
            legacy = next(f for f, gc in GC_BY_FLAG.items() if gc == self.gc)
            out[f"jvm.flag.{legacy}"] = True
        out.update({f"jvm.flag.{name}": value for name, value in self.flags.items()})
        return out


@dataclass
class _Segment:
    """The part of one line that holds option tokens; edited as text, spliced back at the end."""

    line: int  # 0-based index into the file's lines
    start: int
    end: int
    value: str
    quote: str | None = None  # JVM_MEM_OPTS= only: its quote, "" when unquoted (=-Xmx1g)
    original: str = ""

    def __post_init__(self) -> None:
        self.original = self.value

    def tokens(self) -> list[re.Match[str]]:
        return list(_TOKEN.finditer(self.value))


@dataclass
class _Script:
    form: ScriptForm
    options: list[_Segment]  # the memory options line(s)
    command: list[_Segment]  # java command lines holding -XX flags
    conditional: list[str]
    conditional_lines: list[int]  # 0-based


def _locate(bodies: Sequence[str], name: str) -> _Script:
    options: list[_Segment] = []
    conditional: list[str] = []
    conditional_lines: list[int] = []
    text_lines = _heredoc_lines(bodies)
    for i, body in enumerate(bodies):
        if i in text_lines or not _MEM_OPTS_START.match(body):
            continue
        m = _MEM_OPTS.match(body)
        if m is None:
            raise EditorError(
                f"{name}:{i + 1}: the JVM_MEM_OPTS value is not one word on one line (a quote "
                "not closed on the line, or quoted and unquoted parts joined); put it in one "
                "pair of quotes on one line so it can be edited in place"
            )
        group, quote = ("qval", '"') if m.group("q") else ("sqval", "'") if m.group("sq") \
            else ("val", "")
        seg = _Segment(i, m.start(group), m.end(group), m.group(group), quote)
        if _SELF_REF.search(seg.value):
            conditional += [t.group() for t in seg.tokens() if not _SELF_REF.match(t.group())]
            conditional_lines.append(i)
        else:
            options.append(seg)
    form = ScriptForm.JVM_MEM_OPTS
    command = _command_segments(bodies)
    if not options:
        form = ScriptForm.LITERAL
        options = [s for s in command if _is_literal_line(s)][:1]
        command = [s for s in command if s not in options]
    if not options:
        raise EditorError(
            f'{name}: no JVM memory options found (neither EI 6.x\'s JVM_MEM_OPTS="..." line '
            "nor a literal -Xms/-Xmx line in the java command); is this integrator.sh or wso2server.sh?"
        )
    command = [s for s in command if any(flag_name(t.group()) for t in s.tokens())]
    return _Script(form, options, command, conditional, conditional_lines)


def _heredoc_lines(bodies: Sequence[str]) -> set[int]:
    """The 0-based lines inside here-documents (`cat <<EOF ... EOF`): text, not commands."""
    out: set[int] = set()
    ends: list[str] = []
    for i, body in enumerate(bodies):
        if ends:
            out.add(i)
            if body.lstrip("\t") == ends[0]:
                ends.pop(0)
        elif not body.lstrip().startswith("#"):
            ends = [m.group("word") for m in _HEREDOC.finditer(body)]
    return out


def _command_segments(bodies: Sequence[str]) -> list[_Segment]:
    """One segment per line of each multi-line `$JAVACMD \\` command (the continuation lines)."""
    segments, inside = [], False
    text_lines = _heredoc_lines(bodies)
    for i, body in enumerate(bodies):
        if i in text_lines:
            continue
        if inside and not body.lstrip().startswith("#"):
            cont = _CONTINUED.search(body)
            end = cont.start() if cont else len(body)
            segments.append(_Segment(i, 0, end, body[:end]))
        if _JAVACMD.search(body) and not body.lstrip().startswith("#"):
            inside = True
        inside = inside and bool(_CONTINUED.search(body))
    return segments


def _is_literal_line(seg: _Segment) -> bool:
    tokens = [t.group() for t in seg.tokens()]
    return (
        bool(tokens)
        and all(t.startswith("-X") for t in tokens)
        and any(_HEAP.match(t) for t in tokens)
    )


def read_jvm_options(text: str, name: str = "integrator.sh") -> JvmOptions:
    """The JVM options `text` (a start-up script) sets; EditorError when it has none."""
    bodies = [split_eol(line)[0] for line in split_lines(text)]
    script = _locate(bodies, name)
    options = tuple(t.group() for t in script.options[0].tokens())
    command_flags = tuple(
        t.group() for s in script.command for t in s.tokens() if flag_name(t.group())
    )
    values: dict[str, str | None] = {"xms": None, "xmx": None, "gc": None, "max_metaspace": None}
    flags: dict[str, bool | str] = {}
    for token in options + command_flags:
        if token.startswith(("-Xms", "-Xmx")):
            values["xms" if token.startswith("-Xms") else "xmx"] = token[4:]
        m = XX_FLAG.match(token)
        if not m:
            continue
        sign, flag, value = m.groups()
        if flag in GC_BY_FLAG:
            if sign == "+":
                values["gc"] = GC_BY_FLAG[flag]
            elif values["gc"] == GC_BY_FLAG[flag]:
                values["gc"] = None
        elif flag == "MaxMetaspaceSize" and value is not None:
            values["max_metaspace"] = value
        else:
            flags[flag] = (sign == "+") if sign else (value if value is not None else "")
    return JvmOptions(
        form=script.form,
        lines=tuple(s.line + 1 for s in script.options),
        options=options,
        command_flags=command_flags,
        conditional=tuple(script.conditional),
        conditional_lines=tuple(i + 1 for i in script.conditional_lines),
        flags=flags,
        gc_log=gc_log_setting(options + command_flags),
        **values,
    )


def _matcher(name: str) -> Callable[[str], bool]:
    """A predicate for the tokens that set one `jvm.*` parameter."""
    if name in ("jvm.xms", "jvm.xmx"):
        prefix = "-X" + name[-2:]
        return lambda t: t.startswith(prefix)
    if name == "jvm.gc":
        return lambda t: flag_name(t) in GC_BY_FLAG
    if name == "jvm.gc_log":
        return is_gc_log_flag
    flag = "MaxMetaspaceSize" if name == "jvm.max_metaspace" else name.removeprefix("jvm.flag.")
    return lambda t: flag_name(t) == flag


def _new_token(name: str, value: Value, java_major: int | None) -> str | None:
    """The token(s) that set a parameter (None: none, e.g. jvm.gc_log=off)."""
    if name == "jvm.gc_log":
        return None if value == GC_LOG_OFF else " ".join(gc_log_flags(str(value), java_major))
    if name in ("jvm.xms", "jvm.xmx"):
        return f"-X{name[-2:]}{value}"
    if name == "jvm.gc":
        return f"-XX:+{GC_FLAGS[str(value)]}"
    if name == "jvm.max_metaspace":
        return f"-XX:MaxMetaspaceSize={value}"
    flag = name.removeprefix("jvm.flag.")
    if isinstance(value, bool):
        return f"-XX:{'+' if value else '-'}{flag}"
    return f"-XX:{flag}={value}"


def _remove_token(seg: _Segment, m: re.Match[str]) -> None:
    """Drop a token with the whitespace before it (after it, when it is the first)."""
    start, end = m.start(), m.end()
    if seg.value[:start].strip():
        start = len(seg.value[:start].rstrip())
    else:
        end += len(seg.value[end:]) - len(seg.value[end:].lstrip())
    seg.value = seg.value[:start] + seg.value[end:]


def _append_token(seg: _Segment, token: str) -> None:
    tokens = seg.tokens()
    at = tokens[-1].end() if tokens else len(seg.value)
    sep = " " if tokens else ""
    seg.value = seg.value[:at] + sep + token + seg.value[at:]


def _set(options: _Segment, command: list[_Segment], name: str, value: Value | None,
         java_major: int | None = None, file: str = "integrator.sh") -> None:
    """Set one parameter (None removes it): the first token that sets it is replaced in place,
    later ones are dropped, and a new token goes at the end of the options line."""
    matches = _matcher(name)
    new = None if value is None else _new_token(name, value, java_major)
    found = [(seg, m) for seg in [options, *command] for m in seg.tokens() if matches(m.group())]
    for seg, m in found:  # -XX:HeapDumpPath=\"/a b\" inside "...": the shell splits it at the space
        if m.group().count('\\"') % 2:
            raise EditorError(
                f"{file}:{seg.line + 1}: {m.group()} is cut at a space inside escaped quotes "
                "(the shell splits it into two words there); give it a value without spaces "
                "by hand first"
            )
    for index in reversed(range(len(found))):  # right to left, so earlier spans stay valid
        seg, m = found[index]
        if index == 0 and new is not None:
            seg.value = seg.value[: m.start()] + new + seg.value[m.end() :]
        else:
            _remove_token(seg, m)
    if new is not None and not found:
        _append_token(options, new)


class IntegratorShEditor(ConfigEditor):
    """`jvm.*` changes in start-up scripts (bin/integrator.sh, wso2server.sh), each on its own.

    Every options line of a script gets the change (EI scripts have one); all other bytes are
    kept. Removing a flag added earlier restores the text from before. `jvm.gc_log` writes the
    flags of JDK `java_major` (None: 9 or later, unified logging); give the node's JDK when
    `needs_java_major` says a change writes them.
    """

    target = Target.JVM
    describes = "a JVM parameter"

    def __init__(self, java_major: int | None = None) -> None:
        self.java_major = java_major

    @staticmethod
    def needs_java_major(changes: Mapping[str, object]) -> bool:
        """Whether `changes` write flags whose syntax depends on the JDK (a GC log file)."""
        value = changes.get("jvm.gc_log")
        return value is not None and str(value).lower() not in (GC_LOG_OFF, "false")

    def rewrite(
        self, files: Mapping[str, str], changes: Mapping[str, Value | None]
    ) -> dict[str, Edit]:
        return {name: _edit_script(text, changes, name, self.java_major)
                for name, text in files.items()}


def apply_jvm_changes(
    text: str, changes: Mapping[str, object], name: str = "integrator.sh"
) -> Edit:
    """`IntegratorShEditor` on one script: `jvm.*` changes (value None removes) to its text."""
    return IntegratorShEditor().edit({name: text}, changes)[name]


def _edit_script(text: str, changes: Mapping[str, Value | None], name: str,
                 java_major: int | None = None) -> Edit:
    lines = split_lines(text)
    bodies = [split_eol(line)[0] for line in lines]
    script = _locate(bodies, name)
    option_lines = {seg.line for seg in script.options}
    for seg in script.options:
        for key, value in changes.items():
            _set(seg, script.command, key, value, java_major, name)
    if script.form is ScriptForm.LITERAL and not any(
        _HEAP.match(t.group()) for t in script.options[0].tokens()
    ):
        raise EditorError(
            f"{name}: removing both -Xms and -Xmx would leave the java command without its "
            "memory options line; set them instead"
        )
    for seg in script.options + script.command:
        if seg.value == seg.original:
            continue
        body, eol = split_eol(lines[seg.line])
        value = seg.value
        if seg.quote == "" and " " in value:
            value = f'"{value}"'
        new_body = body[: seg.start] + value + body[seg.end :]
        if seg.line not in option_lines and not new_body.replace("\\", "").strip():
            lines[seg.line] = ""  # a java-command line left with only its backslash
        else:
            lines[seg.line] = new_body + eol
    new_text = "".join(lines)
    if new_text != text:
        _check_pairs(new_text, name, changes)
    return Edit.between(text, new_text, name)


# ---- pairs of settings the JVM refuses together (on the script as it would be) ---------------

# Collector flags that select the same collector (CMS runs with ParNew, Parallel with ParallelOld).
_GC_FAMILY = {"ParNew": "CMS"}


def _check_pairs(text: str, name: str, changes: Mapping[str, Value | None]) -> None:
    """EditorError when the change leaves -Xms above -Xmx, or two collectors selected."""
    opts = read_jvm_options(text, name)
    if {"jvm.xms", "jvm.xmx"} & set(changes) and opts.xms and opts.xmx:
        try:
            above = size_to_bytes(opts.xms) > size_to_bytes(opts.xmx)
        except ValueError:  # shell text such as -Xmx${HEAP}: only the script knows
            above = False
        if above:
            if "jvm.xmx" in changes:
                fix = f"give jvm.xmx {opts.xms} or more, or lower jvm.xms too"
            else:
                fix = f"set jvm.xmx too (e.g. jvm.xmx={opts.xms}) or a smaller jvm.xms"
            raise EditorError(
                f"{name}:{token_line(text, '-Xmx' + opts.xmx)}: -Xms{opts.xms} would be above "
                f"-Xmx{opts.xmx}, which the JVM refuses (\"Initial heap size set to a larger "
                f"value than the maximum heap size\"); {fix}"
            )
    if "jvm.gc" in changes or any(k.removeprefix("jvm.flag.") in GC_BY_FLAG for k in changes):
        chosen: dict[str, str] = {}
        for token in (*opts.options, *opts.command_flags):
            m = XX_FLAG.match(token)
            if m and m.group(2) in GC_BY_FLAG:
                family = _GC_FAMILY.get(GC_BY_FLAG[m.group(2)], GC_BY_FLAG[m.group(2)])
                if m.group(1) == "+":
                    chosen[family] = token
                else:
                    chosen.pop(family, None)
        if len(chosen) > 1:
            raise EditorError(
                f"{name}: {' and '.join(chosen.values())} would each select a garbage collector, "
                "which the JVM refuses (\"Multiple garbage collectors selected\"); choose one "
                "with jvm.gc=... (it replaces every collector flag)"
            )


def token_line(text: str, token: str) -> int:
    """The 1-based number of the last uncommented line of `text` holding `token` (0: none)."""
    found = 0
    for number, line in enumerate(split_lines(text), 1):
        if token in line and not line.lstrip().startswith("#"):
            found = number
    return found
