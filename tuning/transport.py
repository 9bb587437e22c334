"""Node transports: how eiperf reads and writes a node's files and runs its commands.

`NodeTransport` is the contract; `LocalTransport` (this machine) and `SSHTransport`
(`tuning.ssh_transport`) implement it and pass one shared test suite. Only transports run
commands or touch a node's files; editors stay pure.
"""

from __future__ import annotations

import os
import signal
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from eiperf.errors import EiperfError
from eiperf.fsutil import atomic_write_bytes


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

    Contract (each implementation passes tests/tuning/test_transport.py):
    - paths are absolute POSIX paths on that host;
    - `write_bytes` is atomic (temp file in the same folder, then rename) and keeps the mode of
      a file it replaces; `read_bytes` of a missing file raises FileNotFoundError;
    - `write_bytes` creates missing parent folders; a new file gets `mode` or 0644;
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

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def read_from(self, path: str, offset: int) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes, 0 when the file does not exist."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file; a missing file is not an error."""

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


class LocalTransport(NodeTransport):
    """This machine's files and processes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def read_from(self, path: str, offset: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        atomic_write_bytes(Path(path), data, mode)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            return 0

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def run(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            p = subprocess.run(
                argv,
                env=full_env,
                cwd=cwd,
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            raise TransportError(
                f"{' '.join(argv[:3])}: no answer in {timeout:.0f} s on {self.host}"
            ) from None
        return CommandResult(
            p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        )

    def pid_alive(self, pid: int) -> bool:
        return local_pid_alive(pid)

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def local_pid_alive(pid: int) -> bool:
    """True while `pid` runs here (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):  # it exited while we read
        return False


def transport_for(node_or_lb: object) -> NodeTransport:
    """The transport a cluster file names for a node (or the load balancer)."""
    kind = getattr(node_or_lb, "transport", "local")
    if kind == "ssh":
        from tuning.ssh_transport import SSHTransport

        return SSHTransport.for_node(node_or_lb)
    return LocalTransport(getattr(node_or_lb, "host", "127.0.0.1"))
