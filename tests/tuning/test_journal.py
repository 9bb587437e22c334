"""The change journal on real files: originals back byte for byte (mode too), absent files
removed, durability before the first write, and recovery of a journal whose process was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eicore.results import journal_root
from eicore.transport import LocalTransport
from tuning.journal import Journal, busy_journals, unfinished_journals
from tuning.journal_pause import PAUSE_ENV
from tuning.journal_record import JournalError, JournalState


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and permission bits."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    (d / "bin").mkdir(parents=True)
    script = d / "bin" / "integrator.sh"
    script.write_bytes(b'#!/bin/sh\r\nJVM_MEM_OPTS="-Xms256m -Xmx1024m"\r\n\x0c odd bytes \xff\n')
    script.chmod(0o750)
    props = d / "passthru-http.properties"
    props.write_bytes(b"worker_pool_size_core=400\n")
    props.chmod(0o640)
    return d


def test_restore_brings_back_bytes_and_mode_and_removes_new_files(tmp_path, files):
    before = snapshot(files)
    t = LocalTransport()
    j = Journal.begin(tmp_path / "results", None, "test")
    assert j.state is JournalState.OPEN
    script = str(files / "bin" / "integrator.sh")
    j.write(t, script, b"changed once\n")
    j.write(t, script, b"changed twice\n")  # the original is saved only before the first write
    j.write(t, str(files / "passthru-http.properties"), b"worker_pool_size_core=8\n")
    j.write(t, str(files / "new.conf"), b"did not exist\n")
    assert (files / "bin" / "integrator.sh").read_bytes() == b"changed twice\n"
    assert snapshot(files) != before
    assert j.changed_files() == [
        ("127.0.0.1", script),
        ("127.0.0.1", str(files / "passthru-http.properties")),
        ("127.0.0.1", str(files / "new.conf")),
    ]
    restored = j.restore()
    assert len(restored) == 3
    assert snapshot(files) == before
    assert j.state is JournalState.RESTORED
    j.close()
    assert not j.path.exists()
    assert snapshot(files) == before


def test_originals_are_on_disk_before_the_file_changes(tmp_path, files):
    t = LocalTransport()
    j = Journal.begin(tmp_path / "results", None, "test")
    script = files / "bin" / "integrator.sh"
    original = script.read_bytes()
    j.write(t, str(script), b"new\n")
    saved = list((j.path / "orig").iterdir())
    assert [p.read_bytes() for p in saved] == [original]
    # another process reading the folder sees the same journal, locked by us
    assert Journal.load(j.path) is None
    assert busy_journals(tmp_path / "results") == [j.id]
    assert unfinished_journals(tmp_path / "results") == []
    j.close()
    assert script.read_bytes() == original


def test_partial_restore_forgets_only_those_files(tmp_path, files):
    t = LocalTransport()
    j = Journal.begin(tmp_path / "results", None, "test")
    a, b = str(files / "bin" / "integrator.sh"), str(files / "passthru-http.properties")
    orig_a, orig_b = Path(a).read_bytes(), Path(b).read_bytes()
    j.write(t, a, b"A\n")
    j.write(t, b, b"B\n")
    assert j.restore(only=[("127.0.0.1", b)]) == [f"127.0.0.1:{b}"]
    assert Path(b).read_bytes() == orig_b and Path(a).read_bytes() == b"A\n"
    assert j.changed_files() == [("127.0.0.1", a)]
    assert j.state is JournalState.OPEN
    j.close()
    assert Path(a).read_bytes() == orig_a


def test_a_file_first_written_after_a_partial_restore_keeps_its_own_original(tmp_path, files):
    """The numbers of originals a partial restore forgot are not reused for a later file's."""
    t = LocalTransport()
    j = Journal.begin(tmp_path / "results", None, "test")
    a, b = str(files / "bin" / "integrator.sh"), str(files / "passthru-http.properties")
    c = files / "later.conf"
    c.write_bytes(b"worker_pool_size_core=999\n")  # b's size: only the bytes tell them apart
    before = snapshot(files)
    j.write(t, a, b"A\n")
    j.write(t, b, b"B\n")
    j.restore(only=[("127.0.0.1", a)])
    j.write(t, str(c), b"C\n")
    j.restore()
    assert snapshot(files) == before
    j.close()


def test_applied_journal_is_left_to_tune_restore(tmp_path, files):
    results = tmp_path / "results"
    t = LocalTransport()
    script = files / "bin" / "integrator.sh"
    original = script.read_bytes()
    j = Journal.begin(results, None, "tune apply")
    j.write(t, str(script), b"applied\n")
    j.mark_applied()
    assert unfinished_journals(results) == []  # automatic recovery leaves it
    found = unfinished_journals(results, include_applied=True)
    assert [x.id for x in found] == [j.id]
    assert found[0].state is JournalState.APPLIED
    found[0].close()
    assert script.read_bytes() == original
    assert not journal_root(results).joinpath(j.id).exists()


def test_write_after_restore_is_refused(tmp_path, files):
    j = Journal.begin(tmp_path / "results", None, "test")
    j.restore()
    with pytest.raises(JournalError, match="restored"):
        j.write(LocalTransport(), str(files / "x"), b"")
    j.close()


def test_unknown_schema_is_refused_with_a_clear_line(tmp_path):
    j = Journal.begin(tmp_path / "results", None, "test")
    j.release()
    raw = (j.path / "journal.json").read_text().replace('"schema_version": 2', '"schema_version": 9')
    (j.path / "journal.json").write_text(raw)
    with pytest.raises(JournalError, match="schema_version 9"):
        unfinished_journals(tmp_path / "results")


def test_sigkill_after_first_write_leaves_an_unfinished_journal(tmp_path, files):
    """A writer killed mid-change: its journal is found (lock gone) and restores the file."""
    results = tmp_path / "results"
    script = files / "bin" / "integrator.sh"
    before = snapshot(files)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tuning.journal import Journal\n"
        "from eicore.transport import LocalTransport\n"
        "j = Journal.begin(Path(sys.argv[1]), None, 'killed')\n"
        "j.write(LocalTransport(), sys.argv[2], b'half-way\\n')\n"
        "j.write(LocalTransport(), sys.argv[3], b'never\\n')\n"
    )
    env = dict(os.environ, **{PAUSE_ENV: "30"})
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(results), str(script), str(files / "passthru-http.properties")],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 20
        while script.read_bytes() != b"half-way\n":
            assert proc.poll() is None, "the writer exited early"
            assert time.monotonic() < deadline, "the writer never wrote"
            time.sleep(0.02)
        assert unfinished_journals(results) == []  # still held by the live writer
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    found = unfinished_journals(results)
    assert len(found) == 1 and found[0].label == "killed"
    found[0].close()
    assert snapshot(files) == before
    assert unfinished_journals(results) == []


# ---- symlinked files (nginx's sites-enabled/x -> ../sites-available/x), locally and over SSH ----


@pytest.fixture(params=["local", "ssh"])
def transport(request):
    if request.param == "local":
        return LocalTransport()
    return request.getfixturevalue("ssh_transport")  # a real sshd on loopback (tests/conftest.py)


@pytest.fixture
def vhost_link(tmp_path: Path) -> tuple[Path, Path]:
    """A Debian-style nginx layout: the enabled vhost is a relative link to the available one."""
    available, enabled = tmp_path / "nginx" / "sites-available", tmp_path / "nginx" / "sites-enabled"
    available.mkdir(parents=True)
    enabled.mkdir()
    target = available / "ei.http.conf"
    target.write_bytes(b"upstream ei {\r\n    server 10.0.0.1:8280;\r\n}\r\n")
    target.chmod(0o640)
    link = enabled / "ei.http.conf"
    link.symlink_to("../sites-available/ei.http.conf")
    return link, target


def test_a_symlinked_file_is_written_through_and_restored_as_a_link(tmp_path, vhost_link, transport):
    link, target = vhost_link
    original = target.read_bytes()
    j = Journal.begin(tmp_path / "results", None, "test")
    j.write(transport, str(link), b"changed\n")
    assert link.is_symlink() and os.readlink(link) == "../sites-available/ei.http.conf"
    assert target.read_bytes() == b"changed\n" and target.stat().st_mode & 0o7777 == 0o640
    j.close()
    assert link.is_symlink() and os.readlink(link) == "../sites-available/ei.http.conf"
    assert target.read_bytes() == original and target.stat().st_mode & 0o7777 == 0o640
    assert sorted(os.listdir(link.parent)) == ["ei.http.conf"]
    assert sorted(os.listdir(target.parent)) == ["ei.http.conf"]


@pytest.mark.parametrize("damage", ["replaced by a copy", "removed"])
def test_a_link_replaced_or_removed_after_the_write_comes_back_as_a_link(
    tmp_path, vhost_link, transport, damage
):
    """What an editor that ignores links leaves (the copy), or a hand's `rm`: restore puts the
    link back and the original bytes into the file it names."""
    link, target = vhost_link
    original = target.read_bytes()
    j = Journal.begin(tmp_path / "results", None, "test")
    j.write(transport, str(link), b"changed\n")
    link.unlink()
    if damage == "replaced by a copy":
        link.write_bytes(b"changed\n")
    j.close()
    assert link.is_symlink() and os.readlink(link) == "../sites-available/ei.http.conf"
    assert target.read_bytes() == original and target.stat().st_mode & 0o7777 == 0o640


def test_a_dangling_link_written_through_is_a_dangling_link_again(tmp_path, transport):
    link = tmp_path / "sites-enabled" / "new.conf"
    link.parent.mkdir()
    link.symlink_to("../sites-available/new.conf")
    (tmp_path / "sites-available").mkdir()
    j = Journal.begin(tmp_path / "results", None, "test")
    j.write(transport, str(link), b"new\n")
    assert (tmp_path / "sites-available" / "new.conf").read_bytes() == b"new\n"
    j.close()
    assert link.is_symlink() and not (tmp_path / "sites-available" / "new.conf").exists()


def test_a_file_that_became_a_link_is_a_file_again(tmp_path, files):
    script = files / "bin" / "integrator.sh"
    before = snapshot(files)
    j = Journal.begin(tmp_path / "results", None, "test")
    j.write(LocalTransport(), str(script), b"changed\n")
    elsewhere = tmp_path / "elsewhere.sh"
    elsewhere.write_bytes(b"someone else's\n")
    script.unlink()
    script.symlink_to(elsewhere)
    j.close()
    assert not script.is_symlink() and snapshot(files) == before
    assert elsewhere.read_bytes() == b"someone else's\n"


def test_a_version_1_journal_is_still_restored(tmp_path, files):
    """Journals written before links were recorded (schema 1) have no `link`: plain files."""
    results = tmp_path / "results"
    before = snapshot(files)
    j = Journal.begin(results, None, "old")
    j.write(LocalTransport(), str(files / "bin" / "integrator.sh"), b"changed\n")
    j.release()
    record = json.loads((j.path / "journal.json").read_text())
    record["schema_version"] = 1
    for entry in record["files"]:
        del entry["link"], entry["target"]
    (j.path / "journal.json").write_text(json.dumps(record))
    [found] = unfinished_journals(results)
    found.close()
    assert snapshot(files) == before
