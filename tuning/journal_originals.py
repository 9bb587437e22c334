"""The originals a journal keeps: saved before a file's first write, put back byte for byte.

Each original is a file `orig/<n>` in the journal folder (fsync'ed before the journal names
it), with the permission bits and size of the file it came from; a file that did not exist is
recorded as absent, and putting it back removes it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from eicore.fsutil import atomic_write_bytes
from eicore.transport import LocalTransport, NodeTransport
from tuning.journal_record import FileEntry, JournalError, fsync_dir

ORIGINALS_DIR = "orig"


def save_original(folder: Path, transport: NodeTransport, path: str, n: int) -> FileEntry:
    """Keep `path`'s bytes and mode (or its absence) in the journal `folder`, as number `n`
    or the next free one; returns the entry that names it."""
    try:
        original: bytes | None = transport.read_bytes(path)
    except FileNotFoundError:
        original = None
    entry: FileEntry = {
        "host": transport.host,
        "path": path,
        "transport": transport.kind,
        "original": None,
        "mode": None,
        "size": None,
    }
    if original is not None:
        while (folder / ORIGINALS_DIR / f"{n:04d}").exists():  # numbers a partial restore freed
            n += 1
        entry["original"] = f"{ORIGINALS_DIR}/{n:04d}"
        entry["mode"] = file_mode(transport, path)
        entry["size"] = len(original)
        atomic_write_bytes(folder / entry["original"], original, 0o600)
        fsync_dir(folder / ORIGINALS_DIR)
    return entry


def put_back(folder: Path, entry: FileEntry, transport: NodeTransport, journal_id: str) -> None:
    """Restore one file from the journal `folder`: its bytes and mode, or remove it if it was
    absent. JournalError when the saved copy is damaged (not the size it was saved with)."""
    if entry["original"] is None:
        transport.remove(entry["path"])
        return
    data = (folder / entry["original"]).read_bytes()
    if entry.get("size") is not None and len(data) != entry["size"]:
        raise JournalError(
            f"journal {journal_id}: saved original of {entry['path']} is damaged "
            f"({len(data)} bytes, expected {entry['size']})"
        )
    transport.write_bytes(entry["path"], data, entry.get("mode"))


def file_mode(transport: NodeTransport, path: str) -> int | None:
    """Permission bits of a file on the transport's host (None when they cannot be read)."""
    if isinstance(transport, LocalTransport):
        return stat.S_IMODE(os.stat(path).st_mode)
    r = transport.run(["stat", "-c", "%a", path], timeout=30)
    text = r.stdout.strip()
    return int(text, 8) if r.ok and text and set(text) <= set("01234567") else None
