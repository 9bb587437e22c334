"""Headless Chromium (Debian's `chromium`) for rendering HTML reports in tests.

Chromium runs in its own session, is bounded in time, and its whole process group is killed by
its id if it outlives the timeout; its profile folder is a temporary one of the test's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0")


@dataclass(frozen=True)
class Rendering:
    png: Path
    dom: str
    log: str

    def console_messages(self) -> list[str]:
        """Console lines Chromium logged for the page (JS errors, failed loads)."""
        return [line for line in self.log.splitlines()
                if "CONSOLE" in line or "Failed to load" in line or "net::ERR" in line]


def chromium_binary() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/install_system_deps.sh as root")
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s")
    try:  # helpers of chromium that outlived it: its group, by the id we started
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def render(html: Path, workdir: Path, *, height: int = 4000, timeout: float = 90.0) -> Rendering:
    """Screenshot (1280 × ``height``) and DOM of ``html`` as headless Chromium renders them."""
    workdir.mkdir(parents=True, exist_ok=True)
    png = workdir / f"{html.stem}.png"
    url = html.resolve().as_uri()
    base = [chromium_binary(), *FLAGS]
    shot = _run([*base, f"--user-data-dir={workdir / 'profile-shot'}", f"--screenshot={png}",
                 f"--window-size=1280,{height}", url], timeout)
    assert shot.returncode == 0, shot.stderr[-2000:]
    dom = _run([*base, f"--user-data-dir={workdir / 'profile-dom'}", "--dump-dom", url], timeout)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return Rendering(png, dom.stdout, shot.stderr + dom.stderr)
