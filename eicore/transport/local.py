"""LocalTransport: this machine's files and processes (the testbed, or a node on this host)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import uuid
from pathlib import Path

from eicore.fsutil import write_through_link
from eicore.transport.base import CommandResult, NodeTransport, TransportError


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


class LocalTransport(NodeTransport):
    """This machine's files and processes."""

    kind = "local"

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
        write_through_link(Path(path), data, mode)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    def readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:  # missing, or not a link
            return None

    def symlink(self, target: str, path: str) -> None:
        folder = os.path.dirname(path) or "/"
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.lnk")
        os.symlink(target, tmp)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

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
