"""Load balancer control: check, start, reload and stop nginx through a transport.

A reload is only sent after `nginx -t` passes; `reload` waits until the master has replaced
its workers, so the caller knows the new config serves.
"""

from __future__ import annotations

import signal
import time

from eicore.cluster import LoadBalancer
from eicore.errors import EiperfError
from eicore.transport import CommandResult, NodeTransport

POLL_S = 0.05


class NginxError(EiperfError):
    """nginx refused a config or did not start/stop/reload."""


def test_config(transport: NodeTransport, lb: LoadBalancer) -> CommandResult:
    """Run `nginx -t` on this instance's config (it checks, and changes nothing that serves)."""
    return transport.run(lb.nginx_argv("-t", "-q"), timeout=30)


def first_error(result: CommandResult) -> str:
    """The line of nginx's output that says what went wrong (its first [emerg]/[alert])."""
    lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "[emerg]" in ln or "[alert]" in ln or "failed" in ln]
    return (errs or lines or [f"exit {result.returncode}"])[0].strip()


def master_pid(transport: NodeTransport, lb: LoadBalancer) -> int | None:
    """The running master's PID from its pid file, or None when nginx is not running."""
    try:
        text = transport.read_text(lb.conf_path(lb.pid_file)).strip()
    except (FileNotFoundError, OSError):
        return None
    if not text.isdigit():  # `nginx -t` leaves an empty pid file
        return None
    pid = int(text)
    return pid if transport.pid_alive(pid) else None


def worker_pids(transport: NodeTransport, master: int) -> set[int]:
    r = transport.run(["ps", "-o", "pid=", "--ppid", str(master)], timeout=10)
    return {int(p) for p in r.stdout.split() if p.isdigit()}


def start(transport: NodeTransport, lb: LoadBalancer, timeout: float = 10.0) -> int:
    """Start nginx (after `nginx -t`) and return the master PID; a running one is kept."""
    pid = master_pid(transport, lb)
    if pid:
        return pid
    checked = test_config(transport, lb)
    if not checked.ok:
        raise NginxError(f"nginx config is invalid: {first_error(checked)}")
    r = transport.run(lb.nginx_argv(), timeout=timeout + 5)
    if not r.ok:
        raise NginxError(f"nginx did not start: {first_error(r)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = master_pid(transport, lb)
        if pid:
            return pid
        time.sleep(POLL_S)
    raise NginxError(f"nginx did not write {lb.conf_path(lb.pid_file)} within {timeout:.0f} s")


def reload(transport: NodeTransport, lb: LoadBalancer, timeout: float = 10.0) -> None:
    """Check the config, reload, and wait until new workers serve it.

    A config that fails `nginx -t` raises NginxError and nothing is reloaded: the old config
    keeps serving.
    """
    checked = test_config(transport, lb)
    if not checked.ok:
        raise NginxError(f"nginx -t failed, not reloaded: {first_error(checked)}")
    master = master_pid(transport, lb)
    if master is None:
        raise NginxError("nginx is not running; start it first ('eiperf up' for the testbed)")
    before = worker_pids(transport, master)
    argv = list(lb.reload_command) or lb.nginx_argv("-s", "reload")
    r = transport.run(argv, timeout=timeout)
    if not r.ok:
        raise NginxError(f"nginx reload failed: {first_error(r)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = worker_pids(transport, master)
        if now and not (now & before):
            return
        time.sleep(POLL_S)
    raise NginxError(f"nginx did not replace its workers within {timeout:.0f} s after reload")


def stop(transport: NodeTransport, lb: LoadBalancer, timeout: float = 10.0) -> bool:
    """Stop nginx gracefully (QUIT), then by KILL after `timeout`; True if one was running."""
    pid = master_pid(transport, lb)
    if pid is None:
        return False
    workers = worker_pids(transport, pid)
    transport.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout
    while transport.pid_alive(pid) or any(transport.pid_alive(w) for w in workers):
        if time.monotonic() > deadline:
            for p in (pid, *workers):
                transport.kill(p, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(POLL_S)
    return True
