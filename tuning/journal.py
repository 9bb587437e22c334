"""The change journal: every config file eiperf changes can be put back byte for byte.

A journal is a folder `results/.journal/<id>/` holding `journal.json` (state, cluster file, the
files changed, a few notes for recovery) and `orig/<n>` (each file's original bytes). Before the
FIRST write of a file (per host and path) its original bytes and mode -- or the fact that it did
not exist -- are saved and fsync'ed, and `journal.json` names it, before the file itself is
touched. Every write is atomic (the transport writes a temp file and renames it).

States (`JournalState`):

* `open`    -- a command is changing files. The owning process holds an flock on the journal's
  `lock` file, so a journal that is open but not locked was left by a crash or SIGKILL:
  `unfinished_journals` finds those, and eiperf restores them before its next command.
* `applied` -- `eiperf tune apply` finished and left its change in place on purpose; the journal
  stays so `eiperf tune restore` can bring the originals back later. Automatic recovery leaves
  these alone.
* `restored` -- the originals are back; `close()` then removes the folder.

Test hook: when the environment variable `EIPERF_TEST_PAUSE_AFTER_WRITE` holds a number of
seconds (at most 60), the process sleeps that long after the first file write of a journal, so a
test can SIGKILL it at a known point. It is meant for eiperf's own tests only.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import stat
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from eicore.cluster import Cluster
from eicore.errors import ConfigError, EiperfError
from eicore.fsutil import atomic_write_bytes, lock_held
from eicore.results import journal_root
from eicore.transport import LocalTransport, NodeTransport, transport_for_host

SCHEMA_VERSION = 1  # 1: first version (state, cluster, label, files, notes)
PAUSE_ENV = "EIPERF_TEST_PAUSE_AFTER_WRITE"


class JournalState(StrEnum):
    OPEN = "open"
    APPLIED = "applied"
    RESTORED = "restored"


class JournalError(EiperfError):
    """A journal that cannot be read or restored as it stands."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode(transport: NodeTransport, path: str) -> int | None:
    """Permission bits of a file on the transport's host (None when they cannot be read)."""
    if isinstance(transport, LocalTransport):
        return stat.S_IMODE(os.stat(path).st_mode)
    r = transport.run(["stat", "-c", "%a", path], timeout=30)
    text = r.stdout.strip()
    return int(text, 8) if r.ok and text and set(text) <= set("01234567") else None


def _try_lock(lock_path: Path) -> int | None:
    """An fd holding an exclusive flock on `lock_path`, or None when another process holds it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Journal:
    """One set of changes to a cluster's files, and the originals to put back."""

    def __init__(self, path: Path, data: dict[str, Any], lock_fd: int | None) -> None:
        self.path = Path(path)
        self.id: str = data["id"]
        self._data = data
        self._lock_fd = lock_fd
        self._transports: dict[str, NodeTransport] = {}
        self._paused = False

    # ---- creating and loading ------------------------------------------------------------------

    @classmethod
    def begin(cls, results_dir: Path, cluster_file: Path | None, label: str) -> Journal:
        """A new, empty journal in state "open", locked by this process."""
        root = journal_root(results_dir)
        root.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        jid = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{secrets.token_hex(2)}"
        tmp = root / f".new-{jid}"
        (tmp / "orig").mkdir(parents=True)
        fd = _try_lock(tmp / "lock")
        assert fd is not None  # nobody else knows this folder yet
        data = {
            "schema_version": SCHEMA_VERSION,
            "id": jid,
            "state": JournalState.OPEN.value,
            "label": label,
            "created": now.isoformat(),
            "cluster": str(Path(cluster_file).absolute()) if cluster_file else None,
            "pid": os.getpid(),
            "files": [],
            "notes": {},
        }
        journal = cls(tmp, data, fd)
        journal._save()
        os.replace(tmp, root / jid)  # visible to scanners only once complete and locked
        _fsync_dir(root)
        journal.path = root / jid
        return journal

    @classmethod
    def load(cls, path: Path, lock: bool = True) -> Journal | None:
        """The journal in `path`; None when another live process holds it (with `lock`)."""
        path = Path(path)
        fd = _try_lock(path / "lock") if lock else None
        if lock and fd is None:
            return None
        try:
            data = json.loads((path / "journal.json").read_text("utf-8"))
        except (OSError, ValueError) as e:
            if fd is not None:
                os.close(fd)
            raise JournalError(f"{path}: cannot read journal.json ({e}); inspect it by hand") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            if fd is not None:
                os.close(fd)
            raise JournalError(
                f"{path}: journal schema_version {data.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; restore it with the eiperf version that wrote it"
            )
        return cls(path, data, fd)

    # ---- what it holds -------------------------------------------------------------------------

    @property
    def state(self) -> JournalState:
        return JournalState(self._data["state"])

    @property
    def label(self) -> str:
        return str(self._data.get("label", ""))

    @property
    def created(self) -> str:
        return str(self._data.get("created", ""))

    @property
    def cluster_file(self) -> Path | None:
        c = self._data.get("cluster")
        return Path(c) if c else None

    @property
    def notes(self) -> dict[str, Any]:
        """Free-form facts a caller records for recovery (e.g. which nodes it restarted)."""
        return dict(self._data["notes"])

    def note(self, key: str, value: Any) -> None:
        """Record (durably) a fact for recovery, e.g. note("restarted", ["node1"])."""
        self._data["notes"][key] = value
        self._save()

    def changed_files(self) -> list[tuple[str, str]]:
        """(host, path) of every file written through this journal, in first-write order."""
        return [(f["host"], f["path"]) for f in self._data["files"]]

    def _entry(self, host: str, path: str) -> dict[str, Any] | None:
        return next(
            (f for f in self._data["files"] if f["host"] == host and f["path"] == path), None
        )

    # ---- writing -------------------------------------------------------------------------------

    def write(self, transport: NodeTransport, path: str, data: bytes) -> None:
        """Write `data` to `path` atomically, saving the original first (once per file)."""
        if self.state is not JournalState.OPEN:
            raise JournalError(f"journal {self.id} is {self.state.value}; begin a new one to write")
        self._transports.setdefault(transport.host, transport)
        if self._entry(transport.host, path) is None:
            self._record_original(transport, path)
        transport.write_bytes(path, data)
        self._maybe_pause()

    def _record_original(self, transport: NodeTransport, path: str) -> None:
        try:
            original: bytes | None = transport.read_bytes(path)
        except FileNotFoundError:
            original = None
        n = len(self._data["files"]) + 1
        entry: dict[str, Any] = {
            "host": transport.host,
            "path": path,
            "transport": transport.kind,
            "original": None,
            "mode": None,
            "size": None,
        }
        if original is not None:
            entry["original"] = f"orig/{n:04d}"
            entry["mode"] = _file_mode(transport, path)
            entry["size"] = len(original)
            atomic_write_bytes(self.path / entry["original"], original, 0o600)
            _fsync_dir(self.path / "orig")
        self._data["files"].append(entry)
        self._save()

    def _maybe_pause(self) -> None:
        raw = os.environ.get(PAUSE_ENV)
        if not raw or self._paused:
            return
        self._paused = True
        try:
            seconds = min(float(raw), 60.0)
        except ValueError:
            return
        time.sleep(max(seconds, 0.0))

    def _save(self) -> None:
        text = json.dumps(self._data, indent=2) + "\n"
        atomic_write_bytes(self.path / "journal.json", text.encode("utf-8"), 0o600)
        _fsync_dir(self.path)

    # ---- restoring -----------------------------------------------------------------------------

    def _transport(self, entry: dict[str, Any], cluster: Cluster | None) -> NodeTransport:
        host = entry["host"]
        if host not in self._transports:
            kind = entry.get("transport", "local")
            kind = "ssh" if kind == "remote" else kind  # journals of eiperf <= 0.1 said "remote"
            try:
                self._transports[host] = transport_for_host(cluster, host, kind)
            except ConfigError as e:
                raise JournalError(f"journal {self.id}: {e}; restore its files by hand from "
                                   f"{self.path / 'orig'}") from None
        return self._transports[host]

    def restore(self, only: list[tuple[str, str]] | None = None,
                cluster: Cluster | None = None) -> list[str]:
        """Put the originals back (mode too; files that were absent are removed).

        Hosts this process wrote to are reached as they were; other remote hosts (a journal
        left by a killed eiperf) as `cluster` -- the cluster file it names -- says.

        Returns "host:path" of each file restored. With `only`, just those files are restored
        and forgotten (the journal stays open for the rest); otherwise every file is, and the
        state becomes "restored". Restoring twice is harmless.
        """
        done = []
        keep = []
        for entry in self._data["files"]:
            key = (entry["host"], entry["path"])
            if only is not None and key not in only:
                keep.append(entry)
                continue
            t = self._transport(entry, cluster)
            if entry["original"] is None:
                t.remove(entry["path"])
            else:
                data = (self.path / entry["original"]).read_bytes()
                if entry.get("size") is not None and len(data) != entry["size"]:
                    raise JournalError(
                        f"journal {self.id}: saved original of {entry['path']} is damaged "
                        f"({len(data)} bytes, expected {entry['size']})"
                    )
                t.write_bytes(entry["path"], data, entry.get("mode"))
            done.append(f"{entry['host']}:{entry['path']}")
        if only is not None:
            self._data["files"] = keep
        else:
            self._data["state"] = JournalState.RESTORED.value
        self._save()
        return done

    def mark_applied(self) -> None:
        """Keep the change in place on purpose (`tune apply`): state "applied", lock released."""
        self._data["state"] = JournalState.APPLIED.value
        self._save()
        self.release()

    def release(self) -> None:
        """Give up this process's lock (the journal stays on disk)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for t in self._transports.values():
            t.close()

    def close(self) -> None:
        """Restore the files if not yet done, then remove the journal folder."""
        if self.state is not JournalState.RESTORED:
            self.restore()
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.path.parent.rmdir()  # the last journal gone: recovery checks are one stat again
        except OSError:
            pass
        self.release()

    def __repr__(self) -> str:
        return f"Journal({self.id!r}, {self.state.value}, {len(self._data['files'])} file(s))"


def _journal_dirs(results_dir: Path) -> list[Path]:
    root = journal_root(results_dir)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [root / n for n in names if not n.startswith(".") and (root / n).is_dir()]


def unfinished_journals(results_dir: Path, include_applied: bool = False) -> list[Journal]:
    """Journals left "open" by a process that is gone (crash, SIGKILL), newest first.

    With `include_applied`, also those `tune apply` left in place (for `tune restore`). Each
    journal returned is locked by this process; journals a running eiperf holds are skipped.
    """
    out = []
    for path in _journal_dirs(results_dir):
        if not (path / "journal.json").exists():
            continue
        journal = Journal.load(path)
        if journal is None:
            continue
        wanted = {JournalState.OPEN} | ({JournalState.APPLIED} if include_applied else set())
        if journal.state in wanted:
            out.append(journal)
        elif journal.state is JournalState.RESTORED:
            journal.close()  # restored but not yet removed when its process died
        else:
            journal.release()
    return sorted(out, key=lambda j: j.id, reverse=True)


def busy_journals(results_dir: Path) -> list[str]:
    """Ids of journals a running eiperf process holds (for messages)."""
    return [path.name for path in _journal_dirs(results_dir) if lock_held(path / "lock")]
