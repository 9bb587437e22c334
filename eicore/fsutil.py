"""Atomic file writes: results and configs are never seen half-written."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

#: how many symlinks in a row `link_target` follows (the kernel's own limit is 40)
MAX_LINKS = 40


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    `path` itself is replaced: a symlink there becomes a regular file (what eiperf's own files
    want; a node's config files go through `write_through_link`)."""
    _replace(Path(path), data, mode, keep_owner=False)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def write_through_link(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Replace the file `path` names atomically, keeping it what it was; returns that file.

    When `path` is a symlink (or a chain of them) the file it points to is written -- the temp
    file goes in that file's folder and is renamed over it -- so the link stays a link. The
    mode of the file replaced is kept (unless `mode` is given; a new file gets 0644), and so
    is its owner where this process may set it (as root, or when it owns the file)."""
    target = link_target(Path(path))
    _replace(target, data, mode, keep_owner=True)
    return target


def link_target(path: Path) -> Path:
    """The file `path` names once every symlink in its last component is followed (the path
    itself when it is no link); the target need not exist. OSError ELOOP past MAX_LINKS."""
    path = Path(os.path.abspath(path))
    for _ in range(MAX_LINKS):
        try:
            text = os.readlink(path)
        except FileNotFoundError:
            return path
        except OSError as e:
            if e.errno == errno.EINVAL:  # not a link
                return path
            raise
        path = Path(os.path.normpath(path.parent / text))
    raise OSError(errno.ELOOP, f"{path}: more than {MAX_LINKS} symlinks in a row")


def _replace(path: Path, data: bytes, mode: int | None, keep_owner: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_owner and old is not None:  # before chmod: a chown clears set-id bits
            keep_ownership(tmp, old.st_uid, old.st_gid)
        if mode is not None:
            os.chmod(tmp, mode)
        elif old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def keep_ownership(path: str | Path, uid: int, gid: int) -> None:
    """Give `path` this owner and group, where allowed: as root; as the owner, the group only
    (when this user is in it). Anything else is left as it is, without an error."""
    me = os.geteuid()
    st = os.stat(path)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    if me != 0 and me != uid:
        return
    try:
        os.chown(path, uid if me == 0 else -1, gid)
    except PermissionError:
        pass


def lock_held(path: Path) -> bool | None:
    """Whether some process holds an flock on `path` (how a running sweep or change journal
    marks itself): False when the lock is free or the file absent, None when it cannot be told.
    Taking the lock to test it is released at once; the file is not created."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False
