"""Format the doctor's rows: a table per area and host, a JSON document, a fix script.

Each function returns lines or a document; printing happens in the CLI.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import Any

from tuning.doctor.os_checks import LIMITS_DROPIN, SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN
from tuning.doctor.row import Area, Row, Verdict, failed

#: version of the `--json` document; 1: schema_version, cluster, ok, counts, rows
SCHEMA_VERSION = 1
_HEADS = ("check", "current", "recommended", "verdict")
_TITLES = {Area.OS: "OS", Area.NGINX: "nginx", Area.CLUSTER: "cluster configuration"}
_MAX_CELL = 60


def _cell(text: str) -> str:
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def counts(rows: list[Row]) -> dict[str, int]:
    """How many rows got each verdict (every verdict named, 0 included)."""
    seen = Counter(r.verdict for r in rows)
    return {v.value: seen.get(v, 0) for v in Verdict}


def summary(rows: list[Row]) -> str:
    """One line: the counts and what the exit code will be."""
    c = counts(rows)
    tail = "exit 1: a check fails" if failed(rows) else "nothing fails"
    return (f"doctor: {c['ok']} ok, {c['warn']} warn, {c['fail']} fail, {c['n/a']} not "
            f"applicable -- {tail}")


def format_table(rows: list[Row]) -> list[str]:
    """One table per area and host; under each row that is not ok, the line that fixes it."""
    out: list[str] = []
    for area in Area:
        mine = [r for r in rows if r.area is area]
        if not mine:
            continue
        for host in dict.fromkeys(r.host for r in mine):
            part = [r for r in mine if r.host == host]
            cells = [tuple(_cell(x) for x in (r.check, r.current, r.recommended, r.verdict.value))
                     for r in part]
            widths = [max(len(c[i]) for c in [_HEADS, *cells]) for i in range(4)]
            out += ["", f"== {_TITLES[area]}: {host} =="]
            out.append("  ".join(h.ljust(w) for h, w in zip(_HEADS, widths, strict=True)).rstrip())
            for r, c in zip(part, cells, strict=True):
                out.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
                if r.fix:
                    out.append(f"    fix: {r.fix}" + (f"  [{r.fix_file}]" if r.fix_file else ""))
    return [*out, "", summary(rows)]


def as_document(rows: list[Row], cluster: str) -> dict[str, Any]:
    """The `--json` document (for CI)."""
    return {"schema_version": SCHEMA_VERSION, "cluster": cluster, "ok": not failed(rows),
            "counts": counts(rows), "rows": [r.as_dict() for r in rows]}


def run_summary(rows: list[Row]) -> dict[str, Any]:
    """What `eiperf run` records in run.json `doctor` (eicore.results.DoctorSummary): the
    counts and the rows that failed or warned, without their fixes."""
    keep = ("area", "host", "check", "current", "recommended", "verdict")
    return {"counts": counts(rows), "ok": not failed(rows),
            "findings": [{k: str(getattr(r, k)) for k in keep} for r in rows
                         if r.verdict in (Verdict.FAIL, Verdict.WARN)]}


def _key_pattern(line: str, file: str) -> str:
    """The regex (grep -E) of the line in `file` that `line` replaces."""
    if file in (SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN):
        key = line.split("=", 1)[0].strip()
        return "^[[:space:]]*" + re.escape(key).replace(r"\-", "-") + "[[:space:]]*="
    user, kind, item = line.split()[:3]
    return f"^[[:space:]]*{re.escape(user)}[[:space:]]+{kind}[[:space:]]+{item}[[:space:]]"


def fix_script(rows: list[Row]) -> list[str]:
    """A POSIX shell script that writes the OS fixes into drop-ins, one section per host, to
    run as root on that host; other areas' fixes follow as comments. The script replaces a
    key's earlier line in the drop-in, so running it twice is harmless."""
    out = ["#!/bin/sh",
           "# eiperf doctor --fix: run each host's section as root ON THAT HOST.",
           "# sysctl values apply at once; open-files limits apply to new logins: restart the",
           "# nodes from a new login afterwards.",
           "set -e",
           "put() {  # put FILE PATTERN LINE: LINE replaces FILE's lines matching PATTERN",
           '  touch "$1"; { grep -Ev "$2" "$1" || true; printf \'%s\\n\' "$3"; } > "$1.new"',
           '  mv "$1.new" "$1"',
           "}"]
    todo = [r for r in rows if r.fix and r.verdict in (Verdict.WARN, Verdict.FAIL)]
    os_rows = [r for r in todo if r.fix_file in (SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN,
                                                 LIMITS_DROPIN)]
    for host in dict.fromkeys(r.host for r in os_rows):
        out += ["", f"# ---- {host}"]
        mine = [r for r in os_rows if r.host == host]
        for line, file in dict.fromkeys((r.fix, r.fix_file) for r in mine):
            out.append(f"put {file} {shlex.quote(_key_pattern(line, file))} {shlex.quote(line)}")
        for file in (SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN):
            if any(r.fix_file == file for r in mine):
                out.append(f"sysctl -p {file}")
    rest = [r for r in todo if r not in os_rows]
    if rest:
        out += ["", "# ---- by hand (config files: `eiperf tune apply` edits nginx and passthru):"]
        out += [f"# {r.host}: {r.check}: {r.fix}" + (f"  [{r.fix_file}]" if r.fix_file else "")
                for r in rest]
    if not todo:
        out += ["", "# nothing to fix"]
    return out
