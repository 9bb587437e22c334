"""The change journal: every config file eiperf changes can be put back byte for byte.

A journal is a folder `results/.journal/<id>/` holding `journal.json` (the record: state,
cluster file, the files changed, a few notes for recovery; `tuning.journal_record`) and
`orig/<n>` (each file's original bytes; `tuning.journal_originals`). Before the FIRST write of a
file (per host and path) its original bytes and mode -- or the fact that it did not exist -- are
saved and fsync'ed, and `journal.json` names it, before the file itself is touched. Every write
is atomic (the transport writes a temp file and renames it).

States (`JournalState`):

* `open`    -- a command is changing files. The owning process holds an flock on the journal's
  `lock` file, so a journal that is open but not locked was left by a crash or SIGKILL:
  `unfinished_journals` finds those, and eiperf restores them before its next command.
* `applied` -- `eiperf tune apply` finished and left its change in place on purpose; the journal
  stays so `eiperf tune restore` can bring the originals back later. Automatic recovery leaves
  these alone.
* `restored` -- the originals are back; `close()` then removes the folder.

Tests can make a writer pause after its first write (`tuning.journal_pause`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eicore.cluster import Cluster
from eicore.errors import ConfigError
from eicore.fsutil import lock_held
from eicore.results import journal_root
from eicore.transport import NodeTransport, transport_for_host
from tuning.journal_originals import ORIGINALS_DIR, put_back, save_original
from tuning.journal_pause import PauseAfterFirstWrite
from tuning.journal_record import (
    RECORD_FILE,
    FileEntry,
    JournalError,
    JournalRecord,
    JournalState,
    find_entry,
    fsync_dir,
    new_record,
    read_record,
    write_record,
)

LOCK_FILE = "lock"


class Journal:
    """One set of changes to a cluster's files, and the originals to put back."""

    def __init__(self, path: Path, record: JournalRecord, lock_fd: int | None) -> None:
        self.path = Path(path)
        self.id: str = record["id"]
        self._record = record
        self._lock_fd = lock_fd
        self._transports: dict[str, NodeTransport] = {}
        self._pause = PauseAfterFirstWrite()

    # ---- creating and loading ------------------------------------------------------------------

    @classmethod
    def begin(cls, results_dir: Path, cluster_file: Path | None, label: str) -> Journal:
        """A new, empty journal in state "open", locked by this process."""
        root = journal_root(results_dir)
        root.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        jid = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{secrets.token_hex(2)}"
        tmp = root / f".new-{jid}"
        (tmp / ORIGINALS_DIR).mkdir(parents=True)
        fd = _try_lock(tmp)
        assert fd is not None  # nobody else knows this folder yet
        journal = cls(tmp, new_record(jid, now, cluster_file, label), fd)
        journal._save()
        os.replace(tmp, root / jid)  # visible to scanners only once complete and locked
        fsync_dir(root)
        journal.path = root / jid
        return journal

    @classmethod
    def load(cls, path: Path, lock: bool = True) -> Journal | None:
        """The journal in `path`; None when another live process holds it (with `lock`)."""
        path = Path(path)
        fd = _try_lock(path) if lock else None
        if lock and fd is None:
            return None
        try:
            record = read_record(path)
        except JournalError:
            if fd is not None:
                os.close(fd)
            raise
        return cls(path, record, fd)

    # ---- what it holds -------------------------------------------------------------------------

    @property
    def state(self) -> JournalState:
        return JournalState(self._record["state"])

    @property
    def label(self) -> str:
        return str(self._record.get("label", ""))

    @property
    def created(self) -> str:
        return str(self._record.get("created", ""))

    @property
    def cluster_file(self) -> Path | None:
        c = self._record.get("cluster")
        return Path(c) if c else None

    @property
    def notes(self) -> dict[str, Any]:
        """Free-form facts a caller records for recovery (e.g. which nodes it restarted)."""
        return dict(self._record["notes"])

    def note(self, key: str, value: Any) -> None:
        """Record (durably) a fact for recovery, e.g. note("restarted", ["node1"])."""
        self._record["notes"][key] = value
        self._save()

    def changed_files(self) -> list[tuple[str, str]]:
        """(host, path) of every file written through this journal, in first-write order."""
        return [(f["host"], f["path"]) for f in self._record["files"]]

    # ---- writing -------------------------------------------------------------------------------

    def write(self, transport: NodeTransport, path: str, data: bytes) -> None:
        """Write `data` to `path` atomically, saving the original first (once per file)."""
        if self.state is not JournalState.OPEN:
            raise JournalError(f"journal {self.id} is {self.state.value}; begin a new one to write")
        self._transports.setdefault(transport.host, transport)
        if find_entry(self._record, transport.host, path) is None:
            files = self._record["files"]
            files.append(save_original(self.path, transport, path, len(files) + 1))
            self._save()
        transport.write_bytes(path, data)
        self._pause()

    # ---- restoring -----------------------------------------------------------------------------

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
        for entry in self._record["files"]:
            if only is not None and (entry["host"], entry["path"]) not in only:
                keep.append(entry)
                continue
            put_back(self.path, entry, self._transport(entry, cluster), self.id)
            done.append(f"{entry['host']}:{entry['path']}")
        if only is not None:
            self._record["files"] = keep
        else:
            self._record["state"] = JournalState.RESTORED.value
        self._save()
        return done

    def _transport(self, entry: FileEntry, cluster: Cluster | None) -> NodeTransport:
        host = entry["host"]
        if host not in self._transports:
            kind = entry.get("transport", "local")
            kind = "ssh" if kind == "remote" else kind  # journals of eiperf <= 0.1 said "remote"
            try:
                self._transports[host] = transport_for_host(cluster, host, kind)
            except ConfigError as e:
                raise JournalError(f"journal {self.id}: {e}; restore its files by hand from "
                                   f"{self.path / ORIGINALS_DIR}") from None
        return self._transports[host]

    # ---- ending --------------------------------------------------------------------------------

    def mark_applied(self) -> None:
        """Keep the change in place on purpose (`tune apply`): state "applied", lock released."""
        self._record["state"] = JournalState.APPLIED.value
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

    def _save(self) -> None:
        write_record(self.path, self._record)

    def __repr__(self) -> str:
        return f"Journal({self.id!r}, {self.state.value}, {len(self._record['files'])} file(s))"


# ---- finding journals: the lock tells a live owner from a crashed one ---------------------------


def _try_lock(folder: Path) -> int | None:
    """An fd holding an exclusive flock on the journal's lock file; None when another process
    holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


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
    wanted = {JournalState.OPEN} | ({JournalState.APPLIED} if include_applied else set())
    out = []
    for path in _journal_dirs(results_dir):
        if not (path / RECORD_FILE).exists():
            continue
        journal = Journal.load(path)
        if journal is None:
            continue
        if journal.state in wanted:
            out.append(journal)
        elif journal.state is JournalState.RESTORED:
            journal.close()  # restored but not yet removed when its process died
        else:
            journal.release()
    return sorted(out, key=lambda j: j.id, reverse=True)


def busy_journals(results_dir: Path) -> list[str]:
    """Ids of journals a running eiperf process holds (for messages)."""
    return [path.name for path in _journal_dirs(results_dir) if lock_held(path / LOCK_FILE)]
