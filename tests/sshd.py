"""A real OpenSSH server on a free loopback port, for testing SSHTransport.

It has its own ed25519 host key and its own authorized_keys (one client key it generates), key
login only, and writes a known_hosts file for the client. Everything lives in one temp folder;
`stop()` ends the server by its PID.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.hosts import keygen

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    """A running sshd: where it listens, the files a client needs, and its process."""

    dir: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_key: Path
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """TERM the server by its PID (KILL after 5 s) and reap it.

        First wait (bounded) for its per-connection children to end, so that the server reaps
        them: once it is gone they would be left to an init that may not reap zombies.
        """
        import psutil

        deadline = time.monotonic() + 5
        try:
            while psutil.Process(self.pid).children() and time.monotonic() < deadline:
                time.sleep(0.05)
        except psutil.NoSuchProcess:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")


def _config(d: Path, port: int, user: str) -> str:
    return f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_ed25519'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def start_sshd(d: Path, tries: int = 5) -> Sshd:
    """Start sshd in folder `d` on a free loopback port; wait until it sends its banner."""
    d.mkdir(parents=True, exist_ok=True)
    if not os.path.isdir("/run/sshd"):  # privilege separation folder sshd insists on
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    user = getpass.getuser()
    host_key = keygen(d / "host_ed25519", "eiperf-test-host")
    client_key = keygen(d / "client_ed25519", "eiperf-test-client")
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
    last_error = ""
    for _ in range(tries):
        port = free_port()
        conf = d / "sshd_config"
        conf.write_text(_config(d, port, user))
        log = open(d / "sshd.log", "ab")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        known = d / "known_hosts"
                        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
                        return Sshd(d, port, user, client_key, known, host_key, proc)
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        last_error = (d / "sshd.log").read_text(errors="replace")[-500:]
    raise RuntimeError(f"sshd did not start: {last_error}")


def cluster_file_with_ssh_node(cluster, sshd: Sshd, path: Path, name: str) -> Path:
    """Write `cluster` to `path` with node `name` reached over `sshd` (key and known_hosts)."""
    from dataclasses import replace

    from eicore.cluster import save_cluster

    nodes = tuple(
        replace(n, transport="ssh", ssh_user=sshd.user, ssh_port=sshd.port,
                ssh_key=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
        if n.name == name else n
        for n in cluster.nodes
    )
    save_cluster(cluster.with_nodes(nodes), path)
    return path
