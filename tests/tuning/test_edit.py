"""The shared Edit record and unified diffs."""

from __future__ import annotations

import dataclasses

import pytest

from tuning.edit import (
    ConfigEditor,
    Edit,
    EditorError,
    dominant_eol,
    split_eol,
    split_lines,
    unified_diff,
)
from tuning.params import ParameterError, Target


def test_split_lines_is_lossless_and_splits_on_newline_only():
    text = "a\r\nb\x0cc\u2028d\n\ne"
    lines = split_lines(text)
    assert lines == ["a\r\n", "b\x0cc\u2028d\n", "\n", "e"]
    assert "".join(lines) == text
    assert split_lines("") == []
    assert [split_eol(line) for line in ("a\r\n", "b\n", "c")] == [
        ("a", "\r\n"),
        ("b", "\n"),
        ("c", ""),
    ]


def test_dominant_eol():
    assert dominant_eol("a\r\nb\r\nc\n") == "\r\n"
    assert dominant_eol("a\nb\n") == "\n"
    assert dominant_eol("") == "\n"


def test_edit_between_and_diff():
    edit = Edit.between("a\nb\nc\n", "a\nB\nc\n", "x.conf")
    assert edit.changed
    assert edit.diff == "--- a/x.conf\n+++ b/x.conf\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    same = Edit.between("a\n", "a\n", "x.conf")
    assert same == Edit("a\n", "", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        same.changed = True  # type: ignore[misc]


def test_diff_marks_a_missing_final_newline_like_diff_does():
    diff = unified_diff("a\nb", "a\nc", "f")
    assert diff == (
        "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )


def test_crlf_lines_keep_their_ends_in_the_diff():
    assert unified_diff("a\r\n", "b\r\n", "f").splitlines(keepends=True)[-2:] == [
        "-a\r\n",
        "+b\r\n",
    ]


def test_editor_error_is_a_value_error():
    assert issubclass(EditorError, ValueError)


class UpperEditor(ConfigEditor):
    """A toy editor for the base class's own part: checking changes before any file."""

    target = Target.PASSTHRU
    describes = "a pass-through parameter"

    def rewrite(self, files, changes):
        return {name: Edit.between(text, text.upper(), name) for name, text in files.items()}


def test_the_base_checks_changes_before_the_files_and_names_them():
    with pytest.raises(TypeError):
        ConfigEditor()  # type: ignore[abstract]
    editor = UpperEditor()
    assert editor.edit({"a": "x\n"}, {"passthru.io_buffer_size": "8192"})["a"].new_text == "X\n"
    assert editor.edit({}, {"passthru.io_buffer_size": 1}) == {}
    with pytest.raises(ParameterError) as info:
        editor.edit({"a": "x", "b": "y"}, {"jvm.xmx": "1g"})
    assert (
        str(info.value)
        == "jvm.xmx: not a pass-through parameter; a, b take only passthru.* changes"
    )
    with pytest.raises(ParameterError, match="^passthru.io_buffer_size: 'lots' is not a whole"):
        editor.edit({"a": "x"}, {"passthru.io_buffer_size": "lots"})
    assert editor.check({"passthru.io_buffer_size": "8192", "passthru.x": None}, ["a"]) == {
        "passthru.io_buffer_size": 8192,
        "passthru.x": None,
    }
