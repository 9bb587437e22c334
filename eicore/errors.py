"""The one error type the CLI turns into a single clear line and a non-zero exit."""

from __future__ import annotations


class EiperfError(Exception):
    """A user-facing failure: the message says what is wrong and what to do."""

    exit_code = 2


class ConfigError(EiperfError):
    """A cluster file, spec or parameter that cannot be used as given."""
