"""`eiperf tune show|apply|restore`: read, change and put back one cluster's settings.

How the journal works for `tune apply`: the change is meant to stay, so after a successful apply
its journal is kept in state "applied" under `<results>/.journal/`; `eiperf tune restore`
brings those originals back later (newest first). A journal still "open" means an eiperf was
killed mid-change: every eiperf command restores those first, automatically.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eicore.errors import ConfigError
from eicore.results import results_dir
from eicore.transport import LocalTransport
from eiperf.context import resolve_cluster
from tuning.apply import apply_settings
from tuning.changes import edit_file
from tuning.journal import Journal, busy_journals, unfinished_journals
from tuning.params import ParameterError, ParamSet, lookup
from tuning.restore import restore_cluster, restore_journals
from tuning.settings import cluster_settings

# ---- show --------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return "-" if value is None else str(value)


def settings_table(settings: dict[str, Any]) -> list[str]:
    """The lines `tune show` prints: nodes side by side, then nginx."""
    nodes: dict[str, dict[str, Any]] = settings["nodes"]
    names = list(nodes)
    keys = sorted({k for s in nodes.values() for k in s if k not in ("jvm.options_line", "jvm.error")})
    keys.sort(key=lambda k: (not k.startswith("jvm."), k))
    width = max([len("parameter"), *(len(k) for k in keys)]) + 2
    cols = [max(len(n), *(len(_fmt(nodes[n].get(k))) for k in keys)) + 2 if keys else len(n) + 2
            for n in names]
    lines = ["parameter".ljust(width) + "".join(n.ljust(c) for n, c in zip(names, cols, strict=True))]
    for k in keys:
        lines.append(k.ljust(width) + "".join(
            _fmt(nodes[n].get(k)).ljust(c) for n, c in zip(names, cols, strict=True)))
    for n in names:
        if "jvm.error" in nodes[n]:
            lines.append(f"{n}: {nodes[n]['jvm.error']}")
        elif nodes[n].get("jvm.options_line"):
            lines.append(f"{n} JVM memory options line: {nodes[n]['jvm.options_line']}")
    nginx = settings["nginx"]
    lines.append("")
    if "error" in nginx:
        lines.append(f"nginx: {nginx['error']}")
        return [ln.rstrip() for ln in lines]
    nwidth = max([len("nginx"), *(len(k) for k in nginx)]) + 2
    lines.append("nginx".ljust(nwidth) + "value")
    lines += [k.ljust(nwidth) + _fmt(v) for k, v in nginx.items()]
    return [ln.rstrip() for ln in lines]


def cmd_tune_show(args: argparse.Namespace) -> int:
    cluster = resolve_cluster(args, start_testbed=False)
    print(f"cluster {cluster.name} ({cluster.source})")
    for line in settings_table(cluster_settings(cluster)):
        print(line)
    applied = unfinished_journals(results_dir(args.results), include_applied=True)
    for j in applied:
        j.release()
    if applied:
        print(f"\n{len(applied)} change(s) applied by 'eiperf tune apply' are journaled; "
              "'eiperf tune restore' brings the originals back")
    return 0


# ---- apply -------------------------------------------------------------------------------------


def parse_params(sets: list[str] | None, unsets: list[str] | None) -> ParamSet:
    """--set NAME=VALUE and --unset NAME as one checked ParamSet."""
    if not sets and not unsets:
        raise ConfigError("nothing to apply; give --set NAME=VALUE (e.g. --set jvm.xmx=2g) "
                          "or --unset NAME")
    values: dict[str, object] = dict(ParamSet.parse(sets or []))
    for name in unsets or []:
        name = name.strip()
        lookup(name)
        if name in values:
            raise ParameterError(f"{name}: given to both --set and --unset; give it once")
        values[name] = None
    return ParamSet(values)


def _print_diffs(diffs: dict[str, str]) -> None:
    for diff in diffs.values():
        print(diff, end="" if diff.endswith("\n") else "\n")


def cmd_tune_apply(args: argparse.Namespace) -> int:
    params = parse_params(args.set, args.unset)
    if args.file:
        if args.cluster:
            raise ConfigError("give --file PATH or --cluster FILE, not both")
        return _apply_file(args, params)
    cluster = resolve_cluster(args, start_testbed=not args.dry_run)
    if args.dry_run:
        outcome = apply_settings(cluster, params, None, dry_run=True)
        _print_diffs(outcome.diffs)
        print(f"dry run: {len(outcome.diffs)} file(s) would change; nothing was changed")
        return 0
    journal = Journal.begin(results_dir(args.results), Path(cluster.source or ""), "tune apply "
                            + " ".join(params.assignments()))
    try:
        outcome = apply_settings(cluster, params, journal, rolling=args.rolling)
    except BaseException:
        try:
            if journal.changed_files():
                print("putting the original files back ...")
            restore_cluster(cluster, journal)
        finally:
            journal.close()
        raise
    _print_diffs(outcome.diffs)
    if not journal.changed_files():
        journal.close()
        print("nothing to change: the cluster already has these settings")
        return 0
    journal.mark_applied()
    print(f"applied {len(outcome.diffs)} file change(s); restarted: "
          f"{', '.join(outcome.restarted) or 'none'}; nginx reloaded: "
          f"{'yes' if outcome.reloaded else 'no'}")
    print(f"journal {journal.id} keeps the originals: 'eiperf tune restore' puts them back")
    return 0


def _apply_file(args: argparse.Namespace, params: ParamSet) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of an integrator.sh, "
                          "nginx .conf or passthru-http.properties") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give one file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; eiperf edits only text config files") from None
    edit = edit_file(path.name, text, params)
    if edit.diff:
        print(edit.diff, end="")
    if not edit.changed:
        print(f"{path}: already has these settings; nothing to change")
        return 0
    if args.dry_run:
        print(f"dry run: {path} would change; nothing was changed")
        return 0
    journal = Journal.begin(results_dir(args.results), None, f"tune apply --file {path.absolute()}")
    try:
        journal.write(LocalTransport(), str(path.absolute()), edit.new_text.encode("utf-8"))
    except BaseException:
        journal.close()
        raise
    journal.mark_applied()
    print(f"{path} rewritten; journal {journal.id} keeps the original "
          "('eiperf tune restore' puts it back)")
    return 0


# ---- restore -----------------------------------------------------------------------------------


def cmd_tune_restore(args: argparse.Namespace) -> int:
    results = results_dir(args.results)
    journals = unfinished_journals(results, include_applied=True)
    if not journals:
        busy = busy_journals(results)
        print("nothing to restore" + (
            f" ({len(busy)} journal(s) held by a running eiperf: {', '.join(busy)})" if busy else ""))
        return 0
    for j in journals:
        print(f"journal {j.id} ({j.state.value}, {j.label}):")
    count = restore_journals(journals)
    print(f"restored {count} journal(s)")
    return 0
