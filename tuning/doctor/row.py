"""One finding of `eiperf doctor`: a check on one host, its verdict and the line that fixes it.

Declared once here so every area, the table, the JSON document and the fix script agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """How a setting compares with the recommendation; only FAIL makes `doctor` exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    NA = "n/a"


class Area(StrEnum):
    """The doctor's areas, in the order the table prints them."""

    OS = "os"
    NGINX = "nginx"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Row:
    """One check's result.

    `fix` is the exact line that fixes it (empty when nothing needs fixing); `fix_file` is
    where that line goes: a sysctl.d/limits.d drop-in for the OS area (`table.fix_script`
    writes those), the config file to edit by hand otherwise.
    """

    area: Area
    host: str
    check: str
    current: str
    recommended: str
    verdict: Verdict
    fix: str = ""
    fix_file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) for k, v in asdict(self).items()}


def failed(rows: list[Row]) -> bool:
    """True when any row fails: `eiperf doctor` then exits 1."""
    return any(r.verdict is Verdict.FAIL for r in rows)
