"""SSHTransport: a node's files and processes over SSH (paramiko), for real clusters.

Why these choices: key authentication only (no passwords in cluster files); host keys are
checked against known_hosts and an unknown host is refused with the command that adds it,
never accepted silently (a tuning tool rewrites start-up scripts: it must talk to the right
host). Files go over SFTP and are replaced atomically (temp file beside the target, then
posix-rename), commands over one reused connection per node.
"""

from __future__ import annotations

import base64
import errno
import os
import posixpath
import select
import shlex
import signal
import stat
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paramiko

from eicore.errors import ConfigError
from eicore.fsutil import MAX_LINKS
from eicore.transport.base import CommandResult, NodeTransport, TransportError

CONNECT_TIMEOUT_S = 10.0
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_PID_MARK = b"eiperf-pid:"


def _fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key (what `ssh-keygen -lf` prints)."""
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _split(path: str) -> tuple[str, str]:
    """(folder, name) of an absolute POSIX path."""
    folder, name = path.rsplit("/", 1)
    return folder or "/", name


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not in known_hosts, saying how to add it."""

    def __init__(self, known_hosts: str, port: int) -> None:
        self.known_hosts = known_hosts
        self.port = port

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        host = hostname.rsplit(":", 1)[0].strip("[]") if hostname.startswith("[") else hostname
        port_opt = f"-p {self.port} " if self.port != 22 else ""
        raise TransportError(
            f"host key of {hostname} ({key.get_name()} {_fingerprint(key)}) is not in "
            f"{self.known_hosts}; check the fingerprint, then add it with "
            f"'ssh-keyscan {port_opt}-t {key.get_name()} {host} >> {self.known_hosts}' "
            "(or set known_hosts for this node in cluster.toml)"
        )


class SSHTransport(NodeTransport):
    """One host reached over SSH with a key; the connection is opened on first use."""

    kind = "ssh"

    def __init__(
        self,
        host: str,
        user: str,
        port: int = 22,
        key_file: str | None = None,
        known_hosts: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self.known_hosts = os.path.expanduser(known_hosts or DEFAULT_KNOWN_HOSTS)
        self._known_hosts_given = known_hosts is not None
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._sftp_lock = threading.Lock()
        self._has_proc: bool | None = None
        if self.key_file and not os.path.isfile(self.key_file):
            raise ConfigError(f"SSH key {self.key_file} for {self.where} not found; "
                              "fix ssh_key in cluster.toml")
        if self._known_hosts_given and not os.path.isfile(self.known_hosts):
            raise ConfigError(f"known_hosts file {self.known_hosts} for {self.where} not found; "
                              "fix known_hosts in cluster.toml")

    @classmethod
    def for_node(cls, node: object) -> SSHTransport:
        """The transport for a cluster.toml node with `transport = "ssh"`."""
        user = getattr(node, "ssh_user", None)
        if not user:
            name = getattr(node, "name", "the load balancer")
            raise ConfigError(f"{name}: transport is \"ssh\" but no ssh_user is given; "
                              "add ssh_user (and ssh_key) in cluster.toml")
        return cls(
            host=getattr(node, "host", "127.0.0.1"),
            user=user,
            port=getattr(node, "ssh_port", 22),
            key_file=getattr(node, "ssh_key", None),
            known_hosts=getattr(node, "known_hosts", None),
        )

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    # ------------------------------------------------------------------ connection

    def _connected(self) -> paramiko.SSHClient:
        with self._lock:
            c = self._client
            if c is not None and c.get_transport() is not None and c.get_transport().is_active():
                return c
            self.close()
            self._client = self._connect()
            return self._client

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            client.load_system_host_keys(self.known_hosts)  # read only: never written back
        except FileNotFoundError:
            pass  # an absent ~/.ssh/known_hosts knows no host: the policy below explains
        client.set_missing_host_key_policy(_RefuseUnknownHost(self.known_hosts, self.port))
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=self.key_file,
                look_for_keys=self.key_file is None,
                allow_agent=self.key_file is None,
                password=None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except TransportError:
            client.close()
            raise
        except paramiko.BadHostKeyException as e:
            client.close()
            raise TransportError(
                f"host key of {self.host}:{self.port} ({_fingerprint(e.key)}) does not match "
                f"the one in {self.known_hosts}: refusing to connect; if the host was "
                "reinstalled, remove its old line (ssh-keygen -R) and add the new key"
            ) from None
        except paramiko.AuthenticationException as e:
            client.close()
            key = self.key_file or "the default keys (~/.ssh/id_*, ssh-agent)"
            raise TransportError(
                f"{self.where} refused key {key} ({e}); add its public key to the user's "
                "authorized_keys there, or set ssh_key/ssh_user in cluster.toml"
            ) from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise TransportError(
                f"SSH key {self.key_file} is protected by a passphrase; load it into ssh-agent "
                "and leave ssh_key unset, or use a key without a passphrase"
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as e:
            client.close()
            raise TransportError(
                f"cannot reach {self.where} over SSH ({e or type(e).__name__}); "
                "is sshd running there and the port right?"
            ) from None
        return client

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self._connected()
            if self._sftp is None or self._sftp.get_channel().closed:
                try:
                    self._sftp = client.open_sftp()
                except (paramiko.SSHException, OSError) as e:
                    raise TransportError(f"SFTP is not available on {self.where} ({e})") from None
            return self._sftp

    def close(self) -> None:
        """Close the SFTP session and the connection; the next call reconnects."""
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
            if self._client is not None:
                self._client.close()
                self._client = None

    # ------------------------------------------------------------------ files

    def _io(self, what: str, path: str, fn: Any) -> Any:
        """Run one SFTP call; a missing file stays FileNotFoundError, a lost link TransportError."""
        try:
            with self._sftp_lock:  # paramiko's SFTPClient is not safe for concurrent requests
                return fn(self._sftp_client())
        except FileNotFoundError:
            raise
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, f"{path}: no such file on {self.host}") from None
            if isinstance(e, PermissionError) or e.errno == errno.EACCES:
                raise PermissionError(errno.EACCES, f"{what} {path} on {self.where}: permission denied") from None
            raise TransportError(f"{what} {path} on {self.where} failed: {e}") from None
        except (paramiko.SSHException, EOFError) as e:
            self.close()
            raise TransportError(f"{what} {path} on {self.where} failed: {e}") from None

    def read_bytes(self, path: str) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                f.prefetch()
                return f.read()

        return self._io("read", path, read)

    def read_from(self, path: str, offset: int) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                f.seek(offset)
                return f.read()

        try:
            return self._io("read", path, read)
        except FileNotFoundError:
            return b""

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        def write(sftp: paramiko.SFTPClient) -> None:
            target = self._link_target(sftp, path)  # a link stays a link: write what it names
            try:
                old: paramiko.SFTPAttributes | None = sftp.stat(target)
            except FileNotFoundError:
                old = None
            if mode is not None:
                keep = mode
            else:
                keep = stat.S_IMODE(old.st_mode or 0o644) if old is not None else 0o644
            self._makedirs(sftp, _split(target)[0])

            def fill(tmp: str) -> None:
                with sftp.open(tmp, "wb") as f:
                    f.set_pipelined(True)
                    f.write(data)
                if old is not None:  # before chmod: a chown clears set-id bits
                    self._keep_owner(sftp, tmp, old)
                sftp.chmod(tmp, keep)

            self._replace(sftp, target, "tmp", fill)

        self._io("write", path, write)

    @staticmethod
    def _replace(sftp: paramiko.SFTPClient, path: str, suffix: str,
                 make: Callable[[str], None]) -> None:
        """`make` a temp entry beside `path`, then rename it over `path` (atomic on the host);
        the temp entry is removed when either step fails."""
        folder, name = _split(path)
        tmp = f"{folder.rstrip('/')}/.{name}.{uuid.uuid4().hex[:8]}.{suffix}"
        try:
            make(tmp)
            sftp.posix_rename(tmp, path)
        except BaseException:
            try:
                sftp.remove(tmp)
            except OSError:
                pass
            raise

    @staticmethod
    def _link_target(sftp: paramiko.SFTPClient, path: str) -> str:
        """The file `path` names once the symlinks of its last component are followed."""
        for _ in range(MAX_LINKS):
            try:
                st = sftp.lstat(path)
            except FileNotFoundError:
                return path
            if not stat.S_ISLNK(st.st_mode or 0):
                return path
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), sftp.readlink(path)))
        raise OSError(errno.ELOOP, f"{path}: more than {MAX_LINKS} symlinks in a row")

    @staticmethod
    def _keep_owner(sftp: paramiko.SFTPClient, tmp: str, old: paramiko.SFTPAttributes) -> None:
        """Give the new file the owner and group of the one it replaces, where the login may:
        as root, or (its group only) as the owner; otherwise leave them."""
        mine = sftp.stat(tmp)
        if (mine.st_uid, mine.st_gid) == (old.st_uid, old.st_gid):
            return
        if mine.st_uid != 0 and mine.st_uid != old.st_uid:
            return
        try:
            sftp.chown(tmp, old.st_uid or 0, old.st_gid or 0)
        except PermissionError:
            pass
        except OSError as e:  # sftp-server says "Permission denied" as a plain failure too
            if e.errno not in (errno.EPERM, errno.EACCES, None):
                raise

    def mode(self, path: str) -> int:
        return stat.S_IMODE(self._io("stat", path, lambda s: s.stat(path)).st_mode or 0)

    def readlink(self, path: str) -> str | None:
        def read(sftp: paramiko.SFTPClient) -> str | None:
            if not stat.S_ISLNK(sftp.lstat(path).st_mode or 0):
                return None
            return sftp.readlink(path)

        try:
            return self._io("readlink", path, read)
        except FileNotFoundError:
            return None

    def symlink(self, target: str, path: str) -> None:
        def link(sftp: paramiko.SFTPClient) -> None:
            self._makedirs(sftp, _split(path)[0])
            self._replace(sftp, path, "lnk", lambda tmp: sftp.symlink(target, tmp))

        self._io("symlink", path, link)

    @staticmethod
    def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
        missing = []
        current = folder
        while current not in ("", "/"):
            try:
                sftp.stat(current)
                break
            except FileNotFoundError:
                missing.append(current)
                current = current.rsplit("/", 1)[0]
        for d in reversed(missing):
            sftp.mkdir(d)

    def exists(self, path: str) -> bool:
        try:
            self._io("stat", path, lambda s: s.stat(path))
        except FileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        try:
            return int(self._io("stat", path, lambda s: s.stat(path)).st_size or 0)
        except FileNotFoundError:
            return 0

    def listdir(self, path: str) -> list[str]:
        return sorted(self._io("list", path, lambda s: s.listdir(path)))

    def remove(self, path: str) -> None:
        try:
            self._io("remove", path, lambda s: s.remove(path))
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ commands

    def run(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run argv through the remote shell, every word quoted; stdin is empty."""
        command = "exec " + shlex.join(argv)
        if env:
            command = "exec env " + " ".join(
                shlex.quote(f"{k}={v}") for k, v in env.items()) + " " + shlex.join(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        # The shell's PID becomes the command's (exec): known, so a timeout can kill it.
        command = f"printf '{_PID_MARK.decode()}%s\\n' $$; {command}"
        deadline = time.monotonic() + timeout
        try:
            chan = self._connected().get_transport().open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise TransportError(f"cannot open a session on {self.where} ({e})") from None
        out, err = bytearray(), bytearray()
        try:
            chan.exec_command(command)
            chan.shutdown_write()
            exited_at: float | None = None
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                now = time.monotonic()
                if chan.exit_status_ready():
                    if chan.eof_received and not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    exited_at = exited_at or now
                    if now - exited_at > 1.0:  # a background child keeps the output open
                        break
                left = deadline - now
                if left <= 0:
                    self._kill_after_timeout(out)
                    raise TransportError(
                        f"{' '.join(argv[:3])}: no answer in {timeout:.0f} s on {self.host}")
                if chan.eof_received:  # output complete: wait for the exit status
                    chan.status_event.wait(min(left, 0.5))
                else:
                    select.select([chan], [], [], min(left, 0.05 if exited_at else 0.5))
            code = chan.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise TransportError(f"{' '.join(argv[:3])} on {self.where} failed: {e}") from None
        finally:
            chan.close()
        if out.startswith(_PID_MARK):
            del out[: out.find(b"\n") + 1]
        return CommandResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def open_channel(self, command: str) -> paramiko.Channel:
        """A session channel running `command` on the kept connection, stdin left open, for a
        caller that talks to a long-running remote program (e.g. a sampling shell) and closes
        the channel itself. Not part of the transport contract: SSH only."""
        try:
            chan = self._connected().get_transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise TransportError(f"cannot open a session on {self.where} ({e})") from None
        return chan

    def _kill_after_timeout(self, out: bytearray) -> None:
        """KILL the remote command that did not finish in time, as subprocess.run does."""
        line = bytes(out).split(b"\n", 1)[0]
        if line.startswith(_PID_MARK) and line[len(_PID_MARK):].isdigit():
            try:
                self.run(["kill", "-KILL", line[len(_PID_MARK):].decode()], timeout=10)
            except TransportError:
                pass

    def pid_alive(self, pid: int) -> bool:
        """From /proc/<pid>/stat over SFTP (a few ms); `ps` where there is no /proc."""
        if pid <= 0:
            return False
        if self._has_proc is None:
            self._has_proc = self.exists("/proc/self/stat")
        if self._has_proc:
            try:
                data = self.read_bytes(f"/proc/{pid}/stat")
            except FileNotFoundError:
                return False
            except TransportError:  # it exited while sftp-server read it ("Failure"): ask ps
                data = b""
            if data:
                fields = data.rsplit(b")", 1)[-1].split()
                return bool(fields) and fields[0] not in (b"Z", b"X")
        r = self.run(["ps", "-o", "stat=", "-p", str(pid)], timeout=15)
        state = r.stdout.strip()
        return r.ok and bool(state) and not state.startswith(("Z", "X"))

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        r = self.run(["kill", f"-{int(sig)}", str(pid)], timeout=15)
        if not r.ok and "No such process" not in r.stderr and self.pid_alive(pid):
            raise TransportError(f"kill -{int(sig)} {pid} on {self.where} failed: "
                                 f"{r.stderr.strip() or r.returncode}")

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
