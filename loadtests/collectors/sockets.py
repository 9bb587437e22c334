"""Established TCP sockets of local processes: each process's own sockets asked for their state.

First choice (Linux >= 5.6, with the right to trace the process, as root): duplicate each of
the process's socket descriptors with pidfd_getfd(2) and read its TCP state with
getsockopt(TCP_INFO) -- the cost follows the process's own sockets. The kernel's socket table
(sock_diag netlink with a state filter, what `ss state established` does) is the fallback: the
kernel walks every socket of the host for it, TIME_WAIT included, so after load tests (20k
TIME_WAIT sockets here) one dump cost ~3 ms per address family and round. /proc/<pid>/net/tcp
is the last resort (other network namespace, or no sock_diag; ~80 ms with 20k rows); psutil
off Linux.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import struct

import psutil

_TCP_ESTABLISHED = 1
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBxI48x")  # family, protocol, ext, states, sockid (any)
_INODE_OFFSET = 4 + 48 + 16  # inet_diag_msg: 4 bytes, sockid, expires/rqueue/wqueue/uid
_SYS_PIDFD_GETFD = 438  # the same number on every architecture (unified syscall table)
# A row of /proc/net/tcp{,6} in state 01 (ESTABLISHED); group 1 is the socket inode.
_ESTABLISHED_RE = re.compile(rb"^\s*\d+: \S+ \S+ 01 \S+ \S+ \S+ +\d+ +\d+ +(\d+)", re.M)


def established_inodes_netlink() -> set[bytes]:
    """Inodes (as ASCII bytes) of the ESTABLISHED TCP sockets of this network namespace."""
    found: set[bytes] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_ESTABLISHED)
            header = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                     _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
            nl.send(header + body)
            found |= _read_dump(nl, seq)
    return found


def _read_dump(nl: socket.socket, seq: int) -> set[bytes]:
    found: set[bytes] = set()
    while True:
        data = nl.recv(65536)
        offset = 0
        while offset + _NLMSG_HDR.size <= len(data):
            length, kind, _flags, msg_seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
            if length < _NLMSG_HDR.size:
                raise OSError("sock_diag: malformed netlink message")
            if msg_seq == seq:
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, offset + _NLMSG_HDR.size)
                    raise OSError(-errno, "sock_diag request refused")
                start = offset + _NLMSG_HDR.size + _INODE_OFFSET
                (inode,) = struct.unpack_from("=I", data, start)
                found.add(str(inode).encode())
            offset += (length + 3) & ~3


def established_inodes_proc(pid: int | str = "self") -> set[bytes]:
    """The same set read from /proc/<pid>/net/tcp{,6} (that process's network namespace)."""
    found: set[bytes] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        found.update(m.group(1) for m in _ESTABLISHED_RE.finditer(data))
    return found


class _NoPidfd(Exception):
    """pidfd_getfd cannot be used for this process (or at all): use the socket table."""


def _libc_syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall


def established_via_pidfd(pid: int, fds: list[int]) -> int:
    """How many of `fds` (descriptors of process `pid`) are ESTABLISHED TCP sockets.

    Each is duplicated into this process (pidfd_getfd), asked for TCP_INFO (whose first byte
    is the TCP state; any other kind of socket refuses the option) and closed again; the
    process's own descriptors are not touched. Raises _NoPidfd when the call is unavailable or
    not permitted, ProcessLookupError when the process is gone.
    """
    syscall = SocketCounter._syscall
    if syscall is None:
        syscall = SocketCounter._syscall = _libc_syscall()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except (OSError, AttributeError) as e:
        raise _NoPidfd(str(e)) from None
    try:
        established = 0
        for fd in fds:
            dup = syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if dup < 0:
                err = ctypes.get_errno()
                if err == errno.EBADF:
                    continue  # closed meanwhile
                if err == errno.ESRCH:
                    raise ProcessLookupError(pid)
                raise _NoPidfd(os.strerror(err))
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=dup)
            try:
                if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_ESTABLISHED:
                    established += 1
            except OSError:
                pass  # not a TCP socket (unix, UDP, netlink, ...)
            finally:
                s.close()
        return established
    finally:
        os.close(pidfd)


class SocketCounter:
    """Per round: a process's open file descriptors and its ESTABLISHED TCP connections.

    Make one per sampling round: when the kernel's socket table has to be read, it is read
    once per network namespace and reused for every process of that round.
    """

    _netlink_ok: bool = True  # class-wide: sock_diag unavailable is not going to change
    _pidfd_ok: bool = hasattr(os, "pidfd_open")  # class-wide: off after ENOSYS/EPERM
    _syscall = None

    def __init__(self) -> None:
        self._by_ns: dict[str, set[bytes]] = {}

    def count(self, proc: psutil.Process) -> tuple[int, int] | None:
        """(open file descriptors, established TCP connections), None if not readable."""
        fd_dir = f"/proc/{proc.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            return _count_portable(proc) if not os.path.isdir("/proc/self/fd") else None
        except (PermissionError, ProcessLookupError):
            return None
        sockets: list[tuple[int, bytes]] = []
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                sockets.append((int(name), target[8:-1].encode()))
        if SocketCounter._pidfd_ok:
            try:
                return len(names), established_via_pidfd(proc.pid, [fd for fd, _ in sockets])
            except ProcessLookupError:
                return None
            except _NoPidfd:
                SocketCounter._pidfd_ok = False
        established = self._established(proc.pid)
        return len(names), sum(1 for _, inode in sockets if inode in established)

    def _established(self, pid: int) -> set[bytes]:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
            own = os.readlink("/proc/self/ns/net")
        except OSError:
            ns = own = ""
        found = self._by_ns.get(ns)
        if found is None:
            found = None
            if ns == own and SocketCounter._netlink_ok:
                try:
                    found = established_inodes_netlink()
                except OSError:
                    SocketCounter._netlink_ok = False
            if found is None:
                found = established_inodes_proc(pid)
            self._by_ns[ns] = found
        return found


def _count_portable(proc: psutil.Process) -> tuple[int, int] | None:
    try:
        conns = proc.net_connections(kind="tcp")
        fds = proc.num_fds() if hasattr(proc, "num_fds") else len(proc.open_files())
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return None
    return fds, sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)
