"""`eiperf report RUN_OR_SWEEP... [-o FILE]`: one self-contained HTML report; prints its path."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.loading import load
from analysis.report import default_report_name, write_report
from eicore.errors import EiperfError


def cmd_report(args: argparse.Namespace) -> int:
    targets = [load(t, args.results) for t in args.targets]
    out = Path(args.output) if args.output else Path.cwd() / default_report_name(targets)
    if out.is_dir():
        raise EiperfError(f"{out}: is a folder; pass a file name with -o, e.g. -o report.html")
    path = write_report(targets, out, title=args.title, fmt=args.format,
                        target_rps=args.target_rps)
    print(path)
    return 0
