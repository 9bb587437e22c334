"""Fixtures for the tuning tests: a real sshd on loopback and transports to reach it."""

from __future__ import annotations

import pytest

from tests.tuning.sshd import start_sshd
from tuning.ssh_transport import SSHTransport


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One real sshd for the session (own host key, key-only login), stopped by PID at the end."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def ssh_transport(sshd):
    """An SSHTransport to the test sshd, closed after the test."""
    t = SSHTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(sshd.client_key),
                     known_hosts=str(sshd.known_hosts))
    yield t
    t.close()
