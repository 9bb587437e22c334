"""`eiperf compare A B [...]`: key figures of each run against the first (ratios, bootstrap
intervals, verdicts) as a terminal table: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import argparse
import sys

from analysis.keyfigures import format_key_figures, key_figure_table, key_figures, run_figures
from analysis.loading import Sweep, load
from eicore.errors import EiperfError

_VERDICT_STYLE = {"faster": "bold green", "slower": "bold red", "within noise": "dim",
                  "unknown": "yellow", "baseline": "cyan"}


def _rich_table(header: list[str], rows: list[list[str]], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for i, name in enumerate(header):
        if i == 1:  # run ids are long: they fold on a narrow terminal, the figures never do
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right" if i in (2, 3, 4) else "left", no_wrap=True,
                             min_width=max(len(name), 12 if i == 5 else 0))
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            table.add_section()
        previous = row[0]
        verdict = row[-1]
        table.add_row(*row[:-1], f"[{_VERDICT_STYLE.get(verdict, '')}]{verdict}[/]"
                      if verdict in _VERDICT_STYLE else verdict)
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    runs = []
    for target in [args.baseline, *args.runs]:
        loaded = load(target, args.results)
        if isinstance(loaded, Sweep):
            raise EiperfError(f"{target}: is a sweep; compare takes runs (its trials' run ids), "
                              f"or see its ranking with 'eiperf report {target}'")
        runs.append(loaded)
    ids = [r.id for r in runs]
    if len(set(ids)) < len(ids):
        raise EiperfError(f"the same run is given twice ({', '.join(ids)}): compare different runs")
    figures = key_figures([run_figures(r) for r in runs], noise=args.noise,
                          throughput_noise=args.throughput_noise, n_boot=args.bootstrap,
                          seed=args.seed)
    for r in runs:
        print(f"{r.id}: {r.path} ({r.status.value})")
    if sys.stdout.isatty():
        from rich.console import Console

        header, rows = key_figure_table(figures)
        console = Console()
        console.print(_rich_table(header, rows, f"Key figures against {ids[0]}"))
        for note in figures.notes:
            console.print(f"note: {note}", markup=False, highlight=False)
    else:
        for line in format_key_figures(figures):
            print(line)
    return 0
