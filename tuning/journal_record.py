"""journal.json: what a change journal records on disk, read and written durably.

The record names the journal's state, the cluster file it was written for, every file written
through it (`FileEntry`: where its original is kept) and a few notes for recovery. It is
rewritten atomically and the folder fsync'ed on every change, so what it names is on disk
before the file it describes is touched.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_bytes

# 1: first version (state, cluster, label, files, notes)
# 2: a file entry says whether the path was a symlink (`link`, its text) and which file it named
#    (`target`), so a restore puts back a link, not a copy. Version 1 journals are read as
#    having no links; an eiperf that knows only 1 refuses a 2 rather than break a link.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
RECORD_FILE = "journal.json"


class JournalState(StrEnum):
    """open: files are being changed; applied: changed on purpose (`tune apply`); restored."""

    OPEN = "open"
    APPLIED = "applied"
    RESTORED = "restored"


class JournalError(EiperfError):
    """A journal that cannot be read or restored as it stands."""


class FileEntry(TypedDict):
    """One file written through a journal, and where its original is kept."""

    host: str
    path: str
    transport: str  # the transport kind that reached it ("local", "ssh"; eiperf <= 0.1: "remote")
    original: str | None  # "orig/<n>" in the journal folder; None: the file did not exist
    mode: int | None  # permission bits of the original (None when they could not be read)
    size: int | None  # length of the original, to refuse a damaged copy
    link: NotRequired[str | None]  # v2: the symlink text when `path` was a link, else None
    target: NotRequired[str | None]  # v2: the file that link named (absolute), else None


class JournalRecord(TypedDict):
    """The whole of journal.json."""

    schema_version: int
    id: str
    state: str  # a JournalState value
    label: str
    created: str  # ISO 8601, UTC
    cluster: str | None  # absolute path of the cluster file, if any
    pid: int  # the process that began the journal
    files: list[FileEntry]  # in first-write order
    notes: dict[str, Any]  # facts a caller records for recovery


def new_record(jid: str, created: datetime, cluster_file: Path | None, label: str) -> JournalRecord:
    """The record of a new, empty journal in state "open"."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": jid,
        "state": JournalState.OPEN.value,
        "label": label,
        "created": created.isoformat(),
        "cluster": str(Path(cluster_file).absolute()) if cluster_file else None,
        "pid": os.getpid(),
        "files": [],
        "notes": {},
    }


def read_record(folder: Path) -> JournalRecord:
    """journal.json of `folder`; JournalError when it cannot be read or is another version."""
    try:
        data = json.loads((folder / RECORD_FILE).read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise JournalError(f"{folder}: cannot read {RECORD_FILE} ({e}); inspect it by hand") from None
    if data.get("schema_version") not in READABLE_VERSIONS:
        raise JournalError(
            f"{folder}: journal schema_version {data.get('schema_version')!r} is not one this "
            f"eiperf reads ({', '.join(map(str, READABLE_VERSIONS))}); restore it with the "
            "eiperf version that wrote it"
        )
    return data


def write_record(folder: Path, record: JournalRecord) -> None:
    """Write journal.json atomically and fsync `folder`."""
    text = json.dumps(record, indent=2) + "\n"
    atomic_write_bytes(folder / RECORD_FILE, text.encode("utf-8"), 0o600)
    fsync_dir(folder)


def find_entry(record: JournalRecord, host: str, path: str) -> FileEntry | None:
    """The entry of `path` on `host`, None when it was not written through this journal."""
    return next((f for f in record["files"] if f["host"] == host and f["path"] == path), None)


def fsync_dir(path: Path) -> None:
    """Make the entries of a folder (new and renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
