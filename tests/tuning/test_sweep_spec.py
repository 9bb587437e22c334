"""Sweep specs without a cluster: every example spec is valid, every bad spec gets one line
naming the file and the key (exit 2, nothing created). The strategies that run a spec have
their own suite (test_strategies.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eiperf.cli import main
from tuning.sweep_spec import SpecError, load_spec, parse_spec_data

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"

GOOD = """
seed = 5
slo = ["p95<200ms"]
[parameters]
"jvm.xmx" = ["384m", "512m", "1g"]
"nginx.upstream_keepalive" = {low = 0, high = 32, step = 16}
[load]
users = 2
duration = "2s"
warmup = "1s"
"""

BAD = {
    "no_unit": ('[parameters]\n"jvm.xmx" = ["512"]', "jvm.xmx", "has no unit"),
    "unknown_param": ('[parameters]\n"jvm.xmxx" = ["1g"]', "jvm.xmxx", "did you mean jvm.xmx"),
    "unquoted_typo": ("[parameters]\njvm.gc = [\"Epsilon\"]", "jvm.gc", "is not one of"),
    "strategy": ('strategy = "random"\n[parameters]\n"jvm.xmx" = ["1g"]', "strategy", "grid"),
    "xms_above_xmx": ('[parameters]\n"jvm.xmx" = ["1g"]\n"jvm.xms" = ["2g"]', "[parameters]",
                      "above jvm.xmx"),
    "range_in_grid": ('[parameters]\n"jvm.xmx" = {low = "1g", high = "2g"}', "jvm.xmx",
                      "optuna"),
    "low_above_high": ('strategy = "optuna"\n[budget]\ntrials = 3\n[parameters]\n'
                       '"jvm.xmx" = {low = "2g", high = "1g"}', "jvm.xmx", "above high"),
    "slo": ('slo = ["p95 under 2"]\n[parameters]\n"jvm.xmx" = ["1g"]', "slo", "not a rule"),
    "load_users": ('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nusers = 0', "[load] users", ">= 1"),
    "load_key": ('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nuser = 3', "[load] user",
                 "unknown key"),
    "scenario": ('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nscenario = {soap = 1}',
                 "[load] scenario", "unknown scenario"),
    "objective": ('[parameters]\n"jvm.xmx" = ["1g"]\n[objective]\nmetric = "speed"',
                  "[objective] metric", "throughput_rps"),
    "optuna_budget": ('strategy = "optuna"\n[parameters]\n"jvm.xmx" = ["1g"]', "[budget]",
                      "trials or time"),
    "open_no_rate": ('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nshape = "open"', "[load]",
                     "needs --arrival-rate"),
    "open_profile": ('[parameters]\n"jvm.xmx" = ["1g"]\n[load]\nshape = "open"\n'
                     'rate_profile = "0:10,x"', "[load]", "--rate-profile"),
    "no_parameters": ('seed = 1', "[parameters]", "missing"),
    "toml": ('seed = [', "not valid TOML", ""),
    "top_key": ('sead = 1\n[parameters]\n"jvm.xmx" = ["1g"]', "sead", "unknown key"),
}


@pytest.mark.parametrize("spec", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.name)
def test_example_specs_are_valid(spec, capsys):
    parsed = load_spec(spec)
    assert parsed.parameters
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was changed" in out


def test_examples_cover_the_issue():
    names = {p.name for p in SWEEPS.glob("*.toml")}
    assert {"heap_gc.toml", "nginx_timeouts.toml", "passthru_workers.toml",
            "nginx_balancing.toml"} <= names
    assert set(load_spec(SWEEPS / "heap_gc.toml").parameters) == {"jvm.xmx", "jvm.gc"}
    assert "delayed" in load_spec(SWEEPS / "nginx_timeouts.toml").load.weights


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_spec_one_line_exit_2_nothing_created(name, tmp_path, capsys, monkeypatch):
    text, key, words = BAD[name]
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    code = main(["sweep", str(spec), "--out", str(out), "--cluster", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "bad.toml" in err and key in err and words in err, err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_missing_spec_file_and_no_spec(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml"), "--dry-run"]) == 2
    assert "no such sweep spec" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_spec_round_trips_through_plain_data(tmp_path):
    (tmp_path / "s.toml").write_text(GOOD)
    spec = load_spec(tmp_path / "s.toml")
    again = parse_spec_data(spec.as_data(), "stored")
    a, b = spec.as_data(), again.as_data()
    a.pop("source"), b.pop("source")
    assert a == b
    assert again.grid() == spec.grid()


def test_spec_error_names_file_for_bad_value_in_space(tmp_path):
    (tmp_path / "x.toml").write_text(
        'strategy = "optuna"\n[budget]\ntrials = 2\n[parameters]\n'
        '"nginx.proxy_read_timeout" = {low = "1s", high = "soon"}\n')
    with pytest.raises(SpecError, match=r"^x\.toml: \[parameters\] nginx\.proxy_read_timeout"):
        load_spec(tmp_path / "x.toml")
