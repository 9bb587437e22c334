"""The passthru-http.properties editor: set in place, uncomment, append, unset; bytes kept."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from tuning.edit import EditorError
from tuning.params import ParameterError
from tuning.passthru_properties import (
    apply_passthru_changes,
    read_properties,
    set_property,
    unset_property,
)

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]
SHIPPED = {
    "http.socket.timeout": "180000",
    "worker_pool_size_core": "400",
    "worker_pool_size_max": "500",
    "io_buffer_size": "16384",
}


def shipped() -> str:
    return (FIXTURES / "passthru-http.properties").read_bytes().decode()


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return (
        [line[1:].rstrip("\r") for line in body if line.startswith("-")],
        [line[1:].rstrip("\r") for line in body if line.startswith("+")],
    )


def test_reads_the_active_keys_only():
    assert read_properties(shipped()) == SHIPPED


def test_the_live_testbed_template_matches_the_shipped_defaults():
    source = (REPO / "testbed/templates/passthru-http.properties.j2").read_text()
    assert read_properties(jinja2.Template(source).render()) == SHIPPED


def test_set_replaces_a_value_in_place():
    edit = set_property(shipped(), "worker_pool_size_core", "200")
    assert edit.diff.startswith("--- a/passthru-http.properties\n+++ b/passthru-http.properties\n")
    assert changed_lines(edit.diff) == (
        ["worker_pool_size_core=400"],
        ["worker_pool_size_core=200"],
    )
    assert read_properties(edit.new_text)["worker_pool_size_core"] == "200"


def test_set_uncomments_a_shipped_default_where_it_is_documented():
    edit = set_property(shipped(), "worker_thread_keepalive_sec", "30")
    assert changed_lines(edit.diff) == (
        ["#worker_thread_keepalive_sec=60"],
        ["worker_thread_keepalive_sec=30"],
    )
    edit = set_property(shipped(), "http.max.connection.per.host.port", "1000")
    assert changed_lines(edit.diff) == (
        ["#http.max.connection.per.host.port=32767"],
        ["http.max.connection.per.host.port=1000"],
    )


def test_set_appends_an_unknown_key_at_the_end():
    edit = set_property(shipped(), "http.socket.rcv-buffer-size", "8192")
    assert changed_lines(edit.diff) == ([], ["http.socket.rcv-buffer-size=8192"])
    assert edit.new_text == shipped() + "http.socket.rcv-buffer-size=8192\n"


def test_prose_in_comments_is_not_a_key():
    # "# Maximum number of connections per host port" must not be taken for key "Maximum".
    edit = set_property(shipped(), "Maximum", "1")
    assert edit.new_text == shipped() + "Maximum=1\n"


def test_unset_comments_out_and_set_restores():
    text = shipped()
    off = unset_property(text, "io_buffer_size")
    assert changed_lines(off.diff) == (["io_buffer_size=16384"], ["#io_buffer_size=16384"])
    assert "io_buffer_size" not in read_properties(off.new_text)
    assert set_property(off.new_text, "io_buffer_size", "16384").new_text == text
    # Unsetting a key that is not active changes nothing.
    assert not unset_property(text, "worker_pool_queue_length").changed


def test_uncommenting_a_shipped_default_and_commenting_it_again():
    text = shipped()
    on = set_property(text, "io_threads_per_reactor", "2")
    assert unset_property(on.new_text, "io_threads_per_reactor").new_text == text


def test_no_change_returns_identical_bytes():
    text = shipped()
    for edit in (
        apply_passthru_changes(text, {}),
        set_property(text, "worker_pool_size_max", "500"),
        apply_passthru_changes(text, {"passthru.http.socket.timeout": 180000}),
    ):
        assert edit.new_text == text and edit.diff == "" and not edit.changed


def test_crlf_separators_spacing_and_a_missing_final_newline_are_kept():
    text = "# tuned\r\nworker_pool_size_core = 400\r\n  io_buffer_size: 16384\r\n#io_threads_per_reactor=2\r\nlast=1"
    edit = apply_passthru_changes(
        text,
        {
            "passthru.worker_pool_size_core": 100,
            "passthru.io_buffer_size": 8192,
            "passthru.io_threads_per_reactor": 4,
            "passthru.worker_pool_queue_length": 50,
        },
    )
    assert edit.new_text == (
        "# tuned\r\nworker_pool_size_core = 100\r\n  io_buffer_size: 8192\r\nio_threads_per_reactor=4\r\n"
        "last=1\r\nworker_pool_queue_length=50\r\n"
    )


def test_every_active_duplicate_is_set():
    text = "a=1\nb=2\na=3\n"
    assert read_properties(text) == {"a": "3", "b": "2"}
    assert set_property(text, "a", "9").new_text == "a=9\nb=2\na=9\n"
    assert unset_property(text, "a").new_text == "#a=1\nb=2\n#a=3\n"


def test_continuation_lines_are_not_keys_and_are_not_edited_in_place():
    text = "list=a,\\\n    b=c\nother=1\n"
    assert read_properties(text) == {"list": "a,\\", "other": "1"}
    with pytest.raises(EditorError) as info:
        set_property(text, "list", "x")
    assert str(info.value) == (
        "passthru-http.properties:1: 'list' goes on over several lines; put it on one line "
        "so it can be edited in place"
    )


def test_bad_changes_give_one_clear_line():
    with pytest.raises(ParameterError) as info:
        apply_passthru_changes(shipped(), {"nginx.max_fails": 1})
    assert str(info.value) == (
        "nginx.max_fails: not a pass-through parameter; passthru-http.properties takes only passthru.* changes"
    )
    with pytest.raises(
        ParameterError, match=r"^passthru.worker_pool_size_core: 'many' is not a whole number"
    ):
        apply_passthru_changes(shipped(), {"passthru.worker_pool_size_core": "many"})
    with pytest.raises(EditorError) as info:
        set_property(shipped(), "a", "1\n2")
    assert (
        str(info.value)
        == "passthru-http.properties: the value for a spans lines; give it on one line"
    )


# ---- pairs judged on the file as it would be: the worker pool's core and max ------------------


def ops() -> str:
    return (FIXTURES / "passthru-http-ops-crlf.properties").read_bytes().decode()


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        (shipped(), {"passthru.worker_pool_size_core": 600},
         "passthru-http.properties: worker_pool_size_core 600 would be above "
         "worker_pool_size_max 500 (line 16); EI's worker pool refuses that and the pass-through "
         "transport does not start; set passthru.worker_pool_size_max too"),
        (shipped(), {"passthru.worker_pool_size_max": 300},
         "passthru-http.properties: worker_pool_size_core 400 would be above "
         "worker_pool_size_max 300 (line 16); EI's worker pool refuses that and the pass-through "
         "transport does not start; give passthru.worker_pool_size_max 400 or more"),
        # unset: the max falls back to Synapse's default, 200, below the file's core of 400
        (shipped(), {"passthru.worker_pool_size_max": None},
         "passthru-http.properties: worker_pool_size_core 400 would be above "
         "worker_pool_size_max 200 (not set: EI's default)"),
        # the ops file keeps its max commented out: core 300 is above the default 200
        (ops(), {"passthru.worker_pool_size_core": 300},
         "passthru-http.properties: worker_pool_size_core 300 would be above "
         "worker_pool_size_max 200 (not set: EI's default)"),
    ],
)
def test_a_core_above_the_files_max_is_refused(text, changes, message):
    with pytest.raises(EditorError) as info:
        apply_passthru_changes(text, changes)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_pairs_that_hold_after_the_change_pass():
    assert apply_passthru_changes(shipped(), {"passthru.worker_pool_size_core": 500}).changed
    both = {"passthru.worker_pool_size_core": 600, "passthru.worker_pool_size_max": 800}
    edit = apply_passthru_changes(shipped(), both)
    assert read_properties(edit.new_text)["worker_pool_size_core"] == "600"
    edit = apply_passthru_changes(ops(), {"passthru.worker_pool_size_max": 400})
    assert edit.new_text.count("\r\n") == ops().count("\r\n")
    assert "worker_pool_size_max=400\r\n" in edit.new_text and edit.notes == ()


def test_a_max_with_an_unbounded_queue_is_said_to_have_no_effect():
    edit = apply_passthru_changes(shipped(), {"passthru.worker_pool_size_max": 800})
    assert edit.notes == (
        "passthru-http.properties: worker_pool_queue_length is -1 (an unbounded queue), so the "
        "pool never grows past worker_pool_size_core 400: worker_pool_size_max 800 has no effect "
        "until the queue has a length",)
