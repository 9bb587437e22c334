"""A transport that becomes root for just what a root-owned nginx needs, through sudo.

On a real load balancer nginx and its files belong to root, and eiperf logs in as an ordinary
user. `BecomeTransport` wraps that user's transport (usually SSH) and changes only two things:

- nginx commands (`nginx -t`, `nginx -s reload`: argv[0] is the cluster's nginx binary) run as
  `sudo -n <argv>`;
- writes go through the write helper as `sudo -n <helper> DEST` with the content on standard
  input: it replaces DEST (through a symlink: its target) atomically and keeps its mode and
  owner, and refuses anything outside the nginx configuration folder.

Reads, `stat`, log tails and everything else run as the user. The sudoers rule therefore names
three commands and nothing more (see README, "The multi-host testbed"); `sudo -n` never waits
for a password, so a missing rule is one clear error, not a hang.
"""

from __future__ import annotations

import base64
import shlex
import signal

from eicore.transport.base import CommandResult, NodeTransport, TransportError

#: The write helper's path on the load balancer host (the testbed installs it there).
DEFAULT_WRITE_HELPER = "/srv/eiperf-host/bin/eiperf-conf-write"
#: Content rides in the command line (base64); one argument may hold 128 KiB on Linux.
MAX_WRITE = 90 * 1024


class BecomeTransport(NodeTransport):
    """`inner` as its user; nginx commands and file writes as root through `sudo -n`."""

    def __init__(self, inner: NodeTransport, root_commands: tuple[str, ...],
                 write_helper: str = DEFAULT_WRITE_HELPER) -> None:
        self.inner = inner
        self.host = inner.host
        self.kind = inner.kind
        self.root_commands = root_commands
        self.write_helper = write_helper

    def read_bytes(self, path: str) -> bytes:
        return self.inner.read_bytes(path)

    def read_from(self, path: str, offset: int) -> bytes:
        return self.inner.read_from(path, offset)

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        if len(data) > MAX_WRITE:
            raise TransportError(f"{path}: {len(data)} bytes is more than eiperf writes through "
                                 f"sudo on {self.host} ({MAX_WRITE} at most)")
        encoded = base64.b64encode(data).decode()
        pipeline = (f"printf %s {encoded} | base64 -d | sudo -n {shlex.quote(self.write_helper)} "
                    f"{shlex.quote(path)}")
        r = self.inner.run(["sh", "-c", pipeline], timeout=60)
        if not r.ok:
            raise TransportError(self._refusal(f"writing {path}", r))

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def mode(self, path: str) -> int:
        return self.inner.mode(path)

    def readlink(self, path: str) -> str | None:
        return self.inner.readlink(path)

    def symlink(self, target: str, path: str) -> None:
        if self.inner.readlink(path) == target:
            return
        raise TransportError(f"{path} on {self.host}: eiperf does not make links in root-owned "
                             f"folders; link it to {target} by hand")

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def remove(self, path: str) -> None:
        if self.inner.exists(path):
            raise TransportError(f"{path} on {self.host}: eiperf does not remove root-owned "
                                 "files; remove it by hand")

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 60.0,
            cwd: str | None = None) -> CommandResult:
        if argv and argv[0] in self.root_commands:
            r = self.inner.run(["sudo", "-n", *argv], env=env, timeout=timeout, cwd=cwd)
            if r.returncode == 1 and "sudo:" in r.stderr and "password" in r.stderr:
                raise TransportError(self._refusal(" ".join(argv[:4]), r))
            return r
        return self.inner.run(argv, env=env, timeout=timeout, cwd=cwd)

    def pid_alive(self, pid: int) -> bool:
        return self.inner.pid_alive(pid)

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        self.inner.kill(pid, sig)

    def close(self) -> None:
        self.inner.close()

    def _refusal(self, what: str, r: CommandResult) -> str:
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        if "sudo:" in r.stderr:
            return (f"{what} on {self.host}: sudo refused ({why}); the user needs a sudoers rule "
                    f"for {', '.join(self.root_commands)} and {self.write_helper} "
                    "(see README, 'The multi-host testbed')")
        return f"{what} on {self.host} failed: {why}"
