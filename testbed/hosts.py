"""The multi-host testbed's hosts: each a network namespace with its own mount namespace and sshd.

A host is anchored by its sshd, started as

    ip netns exec <ns> unshare --mount --propagation private sh -c '<bind mounts>; exec sshd -D'

so the sshd and everything an SSH session starts (the EI node, nginx) see that host's own
files where a real host has them: the host's folder `<testbed>/hosts/<name>/` is bound at
`/srv/eiperf-host`, and from there a node's EI_HOME at `/opt/wso2ei-6.6.0`, the load balancer's
nginx at `/etc/nginx`, `/var/log/nginx` and `/var/lib/nginx`, and every host's `/run`. Bind
mounts also mean the unprivileged users need no way into the testbed's own (root-only) folder.

Users: nodes are reached as `wso2` (it owns EI_HOME and runs the JVM), the load balancer and
the generators as `eiperf`; both are system users created once (idempotently). Every sshd has
its own ed25519 host key, listens on port 22 of its host's address only and takes the testbed's
one client key (key login only); the testbed writes `known_hosts`, so host keys are checked like
any real host's.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from eicore.errors import EiperfError
from eicore.transport import local_pid_alive
from testbed.netns import HostAddr, NetworkPlan

SSHD = "/usr/sbin/sshd"
HOST_ROOT = "/srv/eiperf-host"      # where a host's own folder is bound inside its namespace
EI_HOME = "/opt/wso2ei-6.6.0"       # a node's EI_HOME, the same path on every node host
NODE_USER = "wso2"
LB_USER = "eiperf"
#: the root-owned helper the LB user may run through sudo to write nginx's files
WRITE_HELPER = f"{HOST_ROOT}/bin/eiperf-conf-write"
START_TIMEOUT_S = 10.0
#: inside HOST_ROOT -> bound at this path (only for hosts that have the folder)
BINDS = (("run", "/run"), ("wso2ei-6.6.0", EI_HOME), ("nginx", "/etc/nginx"),
         ("log/nginx", "/var/log/nginx"), ("lib/nginx", "/var/lib/nginx"))


class HostError(EiperfError):
    """A host of the multi-host testbed could not be prepared or started."""


def user_of(host: str) -> str:
    """The user SSH logs in as on `host` (node1 -> wso2, lb/gen1 -> eiperf)."""
    return NODE_USER if host.startswith("node") else LB_USER


def ensure_user(name: str) -> pwd.struct_passwd:
    """A system user `name` (created when missing; its home is HOST_ROOT/home on every host).

    Its password is "*" (no password login, but not a locked account: sshd without PAM
    refuses even key logins to locked ones)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", f"{HOST_ROOT}/home", "--shell", "/bin/sh", name],
                           capture_output=True, text=True)
        if r.returncode != 0 and "already exists" not in r.stderr:
            raise HostError(f"cannot create user {name}: {r.stderr.strip()}") from None
    subprocess.run(["usermod", "-p", "*", name], capture_output=True, check=True)
    return pwd.getpwnam(name)


def keygen(path: Path, comment: str) -> Path:
    """An unencrypted ed25519 key pair at `path` (private 0600) and `path`.pub."""
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True, stdin=subprocess.DEVNULL,
                       capture_output=True)
    os.chmod(path, 0o600)
    return path


@dataclass(frozen=True)
class HostFiles:
    """Where a host's files are in the root namespace."""

    root: Path      # <testbed>/hosts/<name>, bound at HOST_ROOT

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def pid_file(self) -> Path:
        return self.ssh / "anchor.pid"

    def local(self, inside: str) -> Path:
        """The root-namespace path of a path inside the host (/opt/wso2ei-6.6.0/x -> ...)."""
        for sub, target in BINDS:
            if inside == target or inside.startswith(target + "/"):
                return self.root / sub / inside[len(target):].lstrip("/")
        if inside.startswith(HOST_ROOT):
            return self.root / inside[len(HOST_ROOT):].lstrip("/")
        raise ValueError(f"{inside} is not a file of the host's own")


def host_files(dir: Path, name: str) -> HostFiles:
    return HostFiles(Path(dir) / "hosts" / name)


def client_key(dir: Path) -> Path:
    return Path(dir) / "ssh" / "id_ed25519"


def known_hosts(dir: Path) -> Path:
    return Path(dir) / "ssh" / "known_hosts"


def _sshd_config(h: HostAddr, user: str) -> str:
    return f"""\
# eiperf multi-host testbed: the sshd of host {h.name} ({h.address}), in its own namespaces.
Port 22
ListenAddress {h.address}
HostKey {HOST_ROOT}/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile {HOST_ROOT}/ssh/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def prepare_host(dir: Path, h: HostAddr) -> HostFiles:
    """The host's folder: ssh (host key, config, authorized_keys), run/, home/ of its user."""
    files = host_files(dir, h.name)
    user = ensure_user(user_of(h.name))
    files.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(files.root, 0o755)
    (files.root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    home = files.root / "home"
    home.mkdir(exist_ok=True)
    os.chown(home, user.pw_uid, user.pw_gid)
    keygen(files.ssh / "ssh_host_ed25519_key", f"eiperf-testbed-{h.name}")
    (files.ssh / "sshd_config").write_text(_sshd_config(h, user.pw_name))
    pub = (client_key(dir).with_suffix(".pub")).read_text()
    (files.ssh / "authorized_keys").write_text(pub)
    os.chmod(files.ssh / "authorized_keys", 0o644)
    return files


def prepare_client(dir: Path, plan: NetworkPlan) -> None:
    """The testbed's client key and the known_hosts naming every host's key."""
    (Path(dir) / "ssh").mkdir(parents=True, exist_ok=True)
    os.chmod(Path(dir) / "ssh", 0o700)
    keygen(client_key(dir), "eiperf-testbed-client")


def write_known_hosts(dir: Path, plan: NetworkPlan) -> Path:
    lines = []
    for h in plan.hosts:
        pub = (host_files(dir, h.name).ssh / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{h.address} {pub[0]} {pub[1]}\n")
    path = known_hosts(dir)
    path.write_text("".join(lines))
    os.chmod(path, 0o600)
    return path


def _mount_script(files: HostFiles) -> str:
    steps = [f"mount --bind {shlex.quote(str(files.root))} {HOST_ROOT}"]
    for sub, target in BINDS:
        if (files.root / sub).is_dir():
            steps.append(f"mount --bind {HOST_ROOT}/{sub} {target}")
    steps.append(f"exec {SSHD} -D -e -f {HOST_ROOT}/ssh/sshd_config")
    return " && ".join(steps)


def _mountpoints(files: HostFiles) -> None:
    """The empty folders of the root file system that the host's binds land on."""
    os.makedirs(HOST_ROOT, mode=0o755, exist_ok=True)
    for sub, target in BINDS:
        if (files.root / sub).is_dir():
            os.makedirs(target, mode=0o755, exist_ok=True)


def start_host(h: HostAddr, files: HostFiles) -> int:
    """Start the host's anchor (its sshd in its own mount namespace); its PID once it answers."""
    _mountpoints(files)
    log = open(files.ssh / "sshd.log", "ab")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", h.namespace, "unshare", "--mount", "--propagation", "private",
         "sh", "-c", _mount_script(files)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    files.pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (files.ssh / "sshd.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise HostError(f"sshd of {h.name} exited ({proc.returncode}): {' | '.join(tail)}")
        try:
            with socket.create_connection((h.address, 22), timeout=0.5) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return proc.pid
        except OSError:
            time.sleep(0.05)
    stop_host(files)
    raise HostError(f"sshd of {h.name} did not answer on {h.address}:22 in {START_TIMEOUT_S:g} s")


def anchor_pid(files: HostFiles) -> int | None:
    try:
        pid = int(files.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def in_host(files: HostFiles, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run `argv` as root inside the host's namespaces (network and mount), e.g. nginx."""
    pid = anchor_pid(files)
    if pid is None:
        raise HostError(f"host {files.root.name} is not running (no sshd)")
    return subprocess.run(["nsenter", "--target", str(pid), "--mount", "--net", *argv], **kw)


def terminate(pids: list[int], timeout: float) -> None:
    """TERM every PID, wait up to `timeout` for them to be gone (this process's own children
    are reaped; a zombie counts as gone), then KILL what is left -- all by PID."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        for pid in alive:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        alive = [pid for pid in alive if local_pid_alive(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_host(files: HostFiles, timeout: float = 5.0) -> bool:
    """TERM the host's sshd by its PID (KILL after `timeout`); True if it ran."""
    pid = anchor_pid(files)
    if pid is None:
        return False
    terminate([pid], timeout)
    files.pid_file.unlink(missing_ok=True)
    return True
