"""The node transport contract: how eiperf reads and writes a host's files and runs commands.

`NodeTransport` is the contract; `LocalTransport` (`eicore.transport.local`, this machine) and
`SSHTransport` (`eicore.transport.ssh`) implement it and pass one shared test suite. Only
transports run commands or touch a node's files; editors stay pure.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass

from eicore.errors import EiperfError


class TransportError(EiperfError):
    """A file or command on a node could not be reached."""


@dataclass(frozen=True)
class CommandResult:
    """What a command on a node printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class NodeTransport(ABC):
    """Reach one host's files and processes.

    Contract (each implementation passes tests/eicore/test_transport.py):
    - paths are absolute POSIX paths on that host;
    - `write_bytes` is atomic (temp file in the same folder, then rename) and keeps the mode of
      a file it replaces; `read_bytes` of a missing file raises FileNotFoundError;
    - `write_bytes` creates missing parent folders; a new file gets `mode` or 0644;
    - symlinks: `read_bytes`, `write_bytes`, `exists`, `size` and `mode` follow them. A write
      to a link replaces the file it points to (temp file in THAT file's folder, renamed over
      it), so the link stays a link (sites-enabled/x -> ../sites-available/x); the owner of
      the file replaced is kept where the login may set it (root, or the owner: its group);
      `remove` and `symlink` act on the link itself; `readlink` tells a link from a file;
    - `read_from(path, offset)` returns the bytes from `offset` to the end (for following logs),
      b"" for a missing file;
    - `run` never raises for a non-zero exit: it returns the CommandResult; it raises
      TransportError only when the host cannot be reached, or on timeout (the command is
      killed then); every argv word arrives unchanged; stdin is empty; a missing command
      exits 127;
    - `pid_alive` is true while the process exists and is not a zombie;
    - `close` frees connections; a transport may be used again after it;
    - one transport may be used from several threads at once.
    """

    host: str = "127.0.0.1"
    #: what a cluster file calls this implementation (`transport = "..."`); journals record it
    kind: str = ""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def read_from(self, path: str, offset: int) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def mode(self, path: str) -> int:
        """Permission bits of a file (of the file a symlink points to); FileNotFoundError."""

    @abstractmethod
    def readlink(self, path: str) -> str | None:
        """The text of the symlink `path` (as written, maybe relative); None when `path` is no
        link or does not exist."""

    @abstractmethod
    def symlink(self, target: str, path: str) -> None:
        """Make `path` a symlink whose text is `target`, atomically replacing a file or link
        at `path` (a link made beside it, then renamed); creates missing parent folders."""

    @abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes, 0 when the file does not exist."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file (a symlink itself, not what it points to); missing is not an error."""

    @abstractmethod
    def run(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: str | None = None,
    ) -> CommandResult: ...

    @abstractmethod
    def pid_alive(self, pid: int) -> bool: ...

    @abstractmethod
    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        """Send a signal to a process; a process already gone is not an error."""

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free connections (nothing to do for local)."""
