"""The originals a journal keeps: saved before a file's first write, put back byte for byte.

Each original is a file `orig/<n>` in the journal folder (fsync'ed before the journal names
it), with the permission bits and size of the file it came from; a file that did not exist is
recorded as absent, and putting it back removes it. A path that was a symlink
(`sites-enabled/x -> ../sites-available/x`) is recorded as one: its text and the file it named.
Writes go through the link (the transport writes its target), and a restore leaves a link
again -- also when something replaced or removed the link in between.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from eicore.fsutil import MAX_LINKS, atomic_write_bytes
from eicore.transport import NodeTransport
from tuning.journal_record import FileEntry, JournalError, fsync_dir

ORIGINALS_DIR = "orig"


def save_original(folder: Path, transport: NodeTransport, path: str, n: int) -> FileEntry:
    """Keep `path`'s bytes and mode (or its absence), and whether it is a symlink, in the
    journal `folder`, as number `n` or the next free one; returns the entry that names it."""
    link = transport.readlink(path)
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
        "link": link,
        "target": None if link is None else link_target(transport, path),
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
    absent; a path that was a symlink is a symlink again, its target holding the original.
    JournalError when the saved copy is damaged (not the size it was saved with)."""
    path, link, target = entry["path"], entry.get("link"), entry.get("target")
    data = None
    if entry["original"] is not None:
        data = (folder / entry["original"]).read_bytes()
        if entry.get("size") is not None and len(data) != entry["size"]:
            raise JournalError(
                f"journal {journal_id}: saved original of {path} is damaged "
                f"({len(data)} bytes, expected {entry['size']})"
            )
    now = transport.readlink(path)
    if link is None:
        if now is not None or data is None:  # a link where a file was: the file comes back
            transport.remove(path)
        if data is not None:
            transport.write_bytes(path, data, entry.get("mode"))
        return
    where = target or path
    if data is None:
        transport.remove(where)  # the link named no file: the file written through it goes
    else:
        transport.write_bytes(where, data, entry.get("mode"))
    if now != link:  # the link was replaced (a copy in its place) or removed
        transport.symlink(link, path)


def link_target(transport: NodeTransport, path: str) -> str:
    """The file the symlink `path` names once every link in a row is followed (absolute)."""
    for _ in range(MAX_LINKS):
        text = transport.readlink(path)
        if text is None:
            return path
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), text))
    raise JournalError(f"{path}: too many symlinks in a row")


def file_mode(transport: NodeTransport, path: str) -> int | None:
    """Permission bits of a file on the transport's host (None when they cannot be read)."""
    try:
        return transport.mode(path)
    except (FileNotFoundError, PermissionError):
        return None
