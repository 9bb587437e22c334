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

from eicore.errors import ConfigError, EiperfError
from eicore.results import results_dir
from eicore.transport import LocalTransport
from eiperf.context import resolve_cluster
from tuning.apply import apply_settings
from tuning.changes import KIND_NAMES, edit_file, file_kind, file_settings
from tuning.flag_check import java_major, node_java
from tuning.jdk_checks import check_script
from tuning.journal import Journal, busy_journals, unfinished_journals
from tuning.params import ParameterError, ParamSet, Target, lookup
from tuning.restore import restore_cluster, restore_journals
from tuning.settings import cluster_settings

JAVA_VERSION_IS_FOR_FILES = "--java-version is for --file; in a cluster each node's own java is asked"

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


def file_table(settings: dict[str, Any]) -> list[str]:
    """The lines `tune show --file` prints: one parameter a line (several places: one each)."""
    width = max([len("parameter"), *(len(k) for k in settings)]) + 2
    lines = ["parameter".ljust(width) + "value"]
    for key, value in settings.items():
        for i, shown in enumerate(value if isinstance(value, list) else [value]):
            lines.append(("" if i else key).ljust(width) + _fmt(shown))
    return [ln.rstrip() for ln in lines]


def cmd_tune_show(args: argparse.Namespace) -> int:
    if args.file:
        if args.cluster:
            raise ConfigError("give --file PATH or --cluster FILE, not both")
        return _show_file(args)
    if args.java_version is not None:
        raise ConfigError(JAVA_VERSION_IS_FOR_FILES)
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


def _show_file(args: argparse.Namespace) -> int:
    path = Path(args.file)
    text = _read_file(path)
    kind, settings, notes = file_settings(path.name, text)
    if kind is not Target.JVM and args.java_version is not None:
        raise ConfigError(f"{path}: --java-version is for start-up scripts, not {KIND_NAMES[kind]}")
    print(f"{path} ({KIND_NAMES[kind]})")
    for line in file_table(settings):
        print(line)
    if kind is Target.JVM:
        major, where = _java_major(args, required=False)
        if major is None:
            notes.append(f"flags not checked: {where}")
        else:
            print(f"\nflags checked against JDK {major} ({where})")
            report = check_script(text, path.name, major)
            notes += [f.line() for f in report.findings]
    if notes:
        print()
    for note in notes:
        print(f"note: {note}")
    return 0


def _java_major(args: argparse.Namespace, required: bool = True) -> tuple[int | None, str]:
    """The JDK a script given by --file will meet, and where that came from (to print):
    --java-version, else the local java's version. ConfigError when there is neither (and
    `required`); else (None, why)."""
    if args.java_version is not None:
        return args.java_version, "--java-version"
    t = LocalTransport()
    try:
        java = node_java(t)
    except EiperfError:
        java = None
    major = java_major(t, java) if java else None
    if major is not None:
        return major, f"the local java, {java}; --java-version N for another"
    why = "no java here tells which JDK the script will meet"
    if required:
        raise ConfigError(f"{args.file}: {why}; give --java-version 8 or 11 (what EI 6.x runs on)")
    return None, f"{why}; give --java-version N"


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
    if args.java_version is not None:
        raise ConfigError(JAVA_VERSION_IS_FOR_FILES)
    if args.dry_run:
        cluster = resolve_cluster(args, start_testbed=False)
        outcome = apply_settings(cluster, params, None, dry_run=True)
        _print_diffs(outcome.diffs)
        print(f"dry run: {len(outcome.diffs)} file(s) would change; nothing was changed")
        return 0
    if not args.cluster:
        # The testbed starts only once the change is checked against its files (when it has
        # files yet: one never built is built first, and checked before anything is written).
        try:
            built = resolve_cluster(args, start_testbed=False)
        except EiperfError:
            built = None
        if built is not None:
            apply_settings(built, params, None, dry_run=True, progress=lambda m: None)
    cluster = resolve_cluster(args)
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


def _read_file(path: Path) -> str:
    """The text of a config file given by --file; ConfigError (one line) when it cannot be."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of an integrator.sh, "
                          "nginx .conf or passthru-http.properties") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give one file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; eiperf edits only text config files") from None


def _apply_file(args: argparse.Namespace, params: ParamSet) -> int:
    path = Path(args.file)
    text = _read_file(path)
    major, where = (None, "")
    if file_kind(path.name, text) is Target.JVM:
        major, where = _java_major(args)
    elif args.java_version is not None:
        raise ConfigError(f"{path}: --java-version is for start-up scripts, not "
                          f"{KIND_NAMES[file_kind(path.name, text)]}")
    if major is not None:
        print(f"flags checked against JDK {major} ({where})", flush=True)
    result = edit_file(path.name, text, params, major, f"eiperf tune apply --file {path}")
    edit = result.edit
    for note in result.notes:
        print(f"note: {note}")
    if edit.diff:
        print(edit.diff, end="")
    if not edit.changed:
        print(f"{path}: nothing to change" + (
            "" if result.notes else ": it already has these settings"))
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
