"""Secrets cluster.toml points at but never holds: an environment variable or a 0600 file.

A password is read when a connection is made, never stored in the cluster model, a snapshot or
a message: every error here names the variable or the file, not what is in it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from eicore.errors import ConfigError
from eicore.fsutil import atomic_write_text

SECRET_FILE_MODE = 0o600


def secret_from_env(name: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of environment variable `name`; one ConfigError line when unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        state = "is empty" if value is not None else "is not set"
        raise ConfigError(f"{what}: environment variable {name} {state}; export the password "
                          f"in it before running eiperf")
    return value


def secret_from_file(path: str, what: str) -> str:
    """The first line of file `path`, which only its owner may read (mode 0600 or stricter).

    A file that its group or others may read or write is refused with one ConfigError line, as
    ssh refuses such a key and the JDK such a jmxremote.password file.
    """
    full = Path(path).expanduser()
    try:
        fd = os.open(full, os.O_RDONLY)  # a symlink (a mounted secret) is judged by its target
    except FileNotFoundError:
        raise ConfigError(f"{what}: password file {full} does not exist") from None
    except OSError as e:
        raise ConfigError(f"{what}: cannot read password file {full} ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # the file opened, not a name that may change meanwhile
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what}: password file {full} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{what}: password file {full} has mode {stat.S_IMODE(st.st_mode):04o}; others "
                f"than its owner may read it: chmod 600 {full}")
        data = f.read(64 * 1024)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: password file {full} is not UTF-8 text") from None
    if not lines or not lines[0]:
        raise ConfigError(f"{what}: password file {full} is empty; put the password on its "
                          "first line")
    return lines[0]


def write_secret_file(path: Path, secret: str, owner_uid: int | None = None) -> None:
    """Write `secret` (plus a newline) to a file only its owner can read (0600, atomically).

    With `owner_uid` the file is handed to that user (a server that runs unprivileged must
    own the password files it reads); its group is left as it is.
    """
    atomic_write_text(Path(path), secret + "\n", mode=SECRET_FILE_MODE)
    if owner_uid is not None:
        os.chown(path, owner_uid, -1)
