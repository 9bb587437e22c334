"""The `eiperf` parser without a cluster: typed converters reject bad values in one line (exit
2), one option name per concept (--results/--out, --testbed-dir/--dir), every --help works, and
the CLI module loads no command module until a command runs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from eiperf.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every subcommand path, e.g. ("run",), ("tune",), ("tune", "show"), as `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(build_parser()))

#: The positionals each command needs before its options parse.
REQUIRED = {("report",): ["x"], ("compare",): ["a", "b"]}


def _argv(command: tuple[str, ...], *options: str) -> list[str]:
    return [*command, *REQUIRED.get(command, []), *options]


@pytest.mark.parametrize("argv, option, message", [
    (["run", "--workers", "0"], "--workers/--processes",
     "0 must be 1 or more, or -1 for one per core"),
    (["run", "--processes", "-2"], "--workers/--processes",
     "-2 must be 1 or more, or -1 for one per core"),
    (["run", "--workers", "two"], "--workers/--processes", "'two' is not a whole number"),
    (["run", "--master-port", "70000"], "--master-port", "70000 is not a TCP port (1..65535)"),
    (["run", "--spawn-rate", "x"], "-r/--spawn-rate", "'x' is not a number"),
    (["run", "-r", "0"], "-r/--spawn-rate", "0 must be a positive number"),
    (["run", "--interval", "0"], "--interval", "0 must be a positive number"),
    (["run", "--interval", "-1"], "--interval", "-1 must be a positive number"),
    (["run", "--interval", "nan"], "--interval", "nan must be a positive number"),
    (["run", "--interval", "inf"], "--interval", "inf must be a positive number"),
    (["run", "--arrival-rate", "-1"], "--arrival-rate", "-1 must be a positive number"),
    (["run", "-u", "0"], "-u/--users", "0 must be 1 or more"),
    (["run", "--step-users", "1.5"], "--step-users", "'1.5' is not a whole number"),
    (["demo", "-u", "0"], "-u/--users", "0 must be 1 or more"),
    (["demo", "--users", "ten"], "-u/--users", "'ten' is not a whole number"),
    (["deploy", "--timeout", "0"], "--timeout", "0 must be a positive number"),
    (["deploy", "--timeout", "soon"], "--timeout", "'soon' is not a number"),
    (["up", "--nodes", "0"], "--nodes", "0 must be 1 or more"),
    (["up", "--port-base", "70000"], "--port-base", "70000 is not a TCP port (1..65535)"),
    (["up", "--offset-base", "-1"], "--offset-base", "-1 must be 0 or more"),
    (["verify", "-n", "0"], "-n/--requests", "0 must be 1 or more"),
    (["report", "x", "--target-rps", "0"], "--target-rps", "0 must be a positive number"),
    (["compare", "a", "b", "--seed", "-1"], "--seed", "-1 must be 0 or more"),
    (["compare", "a", "b", "--bootstrap", "10"], "--bootstrap",
     "10 is too few bootstrap resamples (100 or more)"),
    (["compare", "a", "b", "--noise", "150%"], "--noise",
     "150% must be a share within 0..1 (e.g. 0.05 or 5%)"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_value_is_one_error_line_and_exit_2(capsys, argv, option, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert errors == [f"eiperf {argv[0]}: error: argument {option}: {message}"], err


@pytest.mark.parametrize("argv, dest, value", [
    (["run", "--processes", "-1"], "workers", -1),
    (["run", "--processes", "4"], "workers", 4),
    (["run", "--workers", "3"], "workers", 3),
    (["run"], "workers", None),
    (["run", "--master-host", "10.0.0.2", "--master-port", "5557"], "master_port", 5557),
    (["run", "-r", "2.5"], "spawn_rate", 2.5),
    (["run", "--interval", "0.25"], "interval", 0.25),
    (["run", "--arrival-rate", "300"], "arrival_rate", 300.0),
    (["demo", "-u", "3"], "users", 3),
    (["deploy", "--timeout", "1.5"], "timeout", 1.5),
    (["compare", "a", "b", "--noise", "5%"], "noise", 0.05),
])
def test_a_good_value_is_converted(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("command", [
    ("run",), ("sweep",), ("demo",), ("tune", "show"), ("tune", "apply"), ("tune", "restore"),
    ("deploy",), ("report",), ("compare",)])
@pytest.mark.parametrize("option", ["--results", "--out"])
def test_results_folder_has_one_name(command, option):
    args = build_parser().parse_args(_argv(command, option, "somewhere"))
    assert args.results == "somewhere"


@pytest.mark.parametrize("command", [
    ("up",), ("down",), ("status",), ("demo",), ("run",), ("verify",), ("sweep",), ("deploy",),
    ("tune", "show"), ("tune", "apply")])
@pytest.mark.parametrize("option", ["--testbed-dir", "--dir"])
def test_testbed_folder_has_one_name(command, option):
    args = build_parser().parse_args(_argv(command, option, "tb"))
    assert args.testbed_dir == "tb"


def test_folder_options_are_declared_once_for_every_command():
    """Whatever command declares a results or testbed folder uses the shared option."""
    parser = build_parser()
    for command in COMMANDS:
        sub = parser
        for name in command:
            sub = next(a for a in sub._actions
                       if isinstance(a, argparse._SubParsersAction)).choices[name]
        for action in sub._actions:
            if action.dest == "results" or "--out" in action.option_strings:
                assert action.option_strings == ["--results", "--out"], command
                assert action.dest == "results" and action.default is None, command
            if action.dest == "testbed_dir" or "--dir" in action.option_strings:
                assert action.option_strings == ["--testbed-dir", "--dir"], command
                assert action.dest == "testbed_dir" and action.default is None, command


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "eiperf")
def test_help_exits_0(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(('eiperf', *command))}")


def test_demo_runs_the_load_eiperf_run_would_with_the_same_values():
    from eiperf.commands.demo_cmd import DEMO_WARMUP_MAX_S, DEMO_WEIGHTS, demo_profile
    from eiperf.commands.run_cmd import profile_from_args

    parse = build_parser().parse_args
    demo = demo_profile(parse(["demo", "-u", "4", "-t", "3s"]))
    run = profile_from_args(parse(["run", "--weights", DEMO_WEIGHTS, "-u", "4", "-t", "3s",
                                   "--warmup", "auto", "--warmup-max", f"{DEMO_WARMUP_MAX_S:g}s"]))
    assert demo == run


def test_the_cli_module_loads_no_command_until_one_runs():
    code = ("import sys, eiperf.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('analysis', 'loadtests', 'testbed', 'tuning') or m.startswith('eiperf.commands')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
