"""`eiperf tune show|apply|restore` as a user runs it, against the real testbed: apply keeps its
change until `tune restore`; a SIGKILLed apply is undone by the next eiperf command; bad input
is one line, exit 2 and nothing changed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eicore.results import journal_root
from tests.tuning.test_apply import cmdline_heap, config_snapshot, pids, root_of
from tuning.journal_pause import PAUSE_ENV

EIPERF = [sys.executable, "-m", "eiperf.cli"]
REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def eiperf(*args: str, results: Path, timeout: float = 180, env: dict | None = None):
    full_env = dict(os.environ, EIPERF_RESULTS=str(results), **(env or {}))
    return subprocess.run([*EIPERF, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=full_env)


def journals(results: Path) -> list[str]:
    root = journal_root(results)
    return sorted(os.listdir(root)) if root.exists() else []


def test_show_prints_settings_per_node_and_nginx(testbed, tmp_path):
    r = eiperf("tune", "show", "--cluster", testbed.source, results=tmp_path)
    assert r.returncode == 0, r.stderr
    head = r.stdout.splitlines()[1].split()
    assert head == ["parameter", *[n.name for n in testbed.nodes]]
    xmx = next(ln for ln in r.stdout.splitlines() if ln.startswith("jvm.xmx "))
    assert xmx.split()[1:] == ["1024m"] * len(testbed.nodes)
    assert any(ln.split()[:2] == ["nginx.proxy_read_timeout", "5m"] for ln in r.stdout.splitlines())
    assert "passthru.worker_pool_size_core" in r.stdout


def test_dry_run_prints_the_diff_and_changes_nothing(testbed, tmp_path):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    r = eiperf("tune", "apply", "--cluster", testbed.source, "--dry-run", "--set", "jvm.xmx=640m",
               "--set", "nginx.proxy_send_timeout=45s", results=tmp_path)
    assert r.returncode == 0, r.stderr
    added = [ln for ln in r.stdout.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert sum('JVM_MEM_OPTS="-Xms256m -Xmx640m"' in ln for ln in added) == len(testbed.nodes)
    assert any(ln.split()[1:] == ["proxy_send_timeout", "45s;"] for ln in added)
    assert "nothing was changed" in r.stdout
    assert config_snapshot(root) == before and pids(testbed) == pids_before
    assert journals(tmp_path) == []


def test_apply_stays_until_tune_restore(testbed, tmp_path):
    root = root_of(testbed)
    before = config_snapshot(root)
    r = eiperf("tune", "apply", "--cluster", testbed.source, "--set", "jvm.xmx=640m",
               results=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "eiperf tune restore" in r.stdout
    for pid in pids(testbed).values():
        assert cmdline_heap(pid)[-1] == "-Xmx640m"  # type: ignore[arg-type]
    assert len(journals(tmp_path)) == 1
    # an ordinary command leaves an applied change alone
    r = eiperf("status", "--cluster", testbed.source, results=tmp_path)
    assert r.returncode == 0 and "restored" not in r.stdout
    assert config_snapshot(root) != before
    r = eiperf("tune", "show", "--cluster", testbed.source, results=tmp_path)
    assert "tune restore" in r.stdout

    r = eiperf("tune", "restore", results=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "restored 1 journal" in r.stdout
    assert config_snapshot(root) == before
    for pid in pids(testbed).values():
        assert cmdline_heap(pid)[-1] == "-Xmx1024m"  # type: ignore[arg-type]
    assert journals(tmp_path) == []
    r = eiperf("tune", "restore", results=tmp_path)
    assert r.returncode == 0 and "nothing to restore" in r.stdout


def test_sigkill_mid_apply_is_restored_by_the_next_command(testbed, tmp_path):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    target = root / "nginx" / "conf" / "ei.http.conf"  # nginx files are written first
    original = target.read_bytes()
    env = dict(os.environ, EIPERF_RESULTS=str(tmp_path), **{PAUSE_ENV: "30"})
    proc = subprocess.Popen(
        [*EIPERF, "tune", "apply", "--cluster", testbed.source, "--set", "jvm.xmx=640m",
         "--set", "nginx.proxy_read_timeout=31s"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while target.read_bytes() == original:
            assert proc.poll() is None, "eiperf tune apply exited before writing"
            assert time.monotonic() < deadline, "eiperf tune apply never wrote"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert config_snapshot(root) != before and len(journals(tmp_path)) == 1

    r = eiperf("status", "--cluster", testbed.source, results=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"restored 127.0.0.1:{target}" in r.stdout
    assert config_snapshot(root) == before
    assert pids(testbed) == pids_before  # the nodes never ran the change: no restart needed
    assert journals(tmp_path) == []
    r = eiperf("status", "--cluster", testbed.source, results=tmp_path)
    assert "restored" not in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "jvm.xmx=12"], "has no unit"),
        (["--set", "jvm.xmz=2g"], "did you mean jvm.xmx"),
        (["--set", "nginx.lb_method=random"], "is not one of"),
        (["--set", "jvm.xms=2g", "--set", "jvm.xmx=1g"], "above jvm.xmx"),
        (["--set", "jvm.xmx"], "not an assignment"),
        (["--unset", "jvm.nope"], "not a tuning parameter"),
        ([], "nothing to apply"),
        (["--set", "jvm.flag.MaxPermSize=256m"], "-XX:MaxMetaspaceSize=256m"),
        (["--set", "jvm.flag.UseConcMarkSweepGC=true"], "jvm.gc=G1"),
        (["--set", "nginx.proxy_read_timeout=999999999999999999999s"], "nginx -t refused"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_changes(testbed, tmp_path, args, needle):
    root = root_of(testbed)
    before, pids_before = config_snapshot(root), pids(testbed)
    r = eiperf("tune", "apply", "--cluster", testbed.source, *args, results=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert lines[0].startswith("eiperf tune: error:")
    assert config_snapshot(root) == before and pids(testbed) == pids_before
    assert journals(tmp_path) == []


def test_bad_cluster_and_file_arguments(tmp_path):
    vhost = tmp_path / "ei.http.conf"
    shutil.copy(FIXTURES / "ei.http.conf", vhost)
    cases = [
        (["--cluster", str(tmp_path / "none.toml"), "--set", "jvm.xmx=1g"], "cluster file not found"),
        (["--file", str(tmp_path / "missing.sh"), "--set", "jvm.xmx=1g"], "no such file"),
        (["--file", str(vhost), "--set", "jvm.xmx=1g"], "takes only nginx.* parameters"),
        (["--file", str(tmp_path), "--set", "jvm.xmx=1g"], "is a folder"),
    ]
    before = vhost.read_bytes()
    for args, needle in cases:
        r = eiperf("tune", "apply", *args, results=tmp_path / "results", timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], (args, r.stderr)
    assert vhost.read_bytes() == before
    assert journals(tmp_path / "results") == []


def test_file_mode_rewrites_one_file_and_restore_brings_it_back(tmp_path):
    script = tmp_path / "integrator.sh"
    shutil.copy(FIXTURES / "integrator.sh", script)
    script.chmod(0o754)
    original = script.read_bytes()
    results = tmp_path / "results"
    r = eiperf("tune", "apply", "--file", str(script), "--set", "jvm.xmx=2g", "--dry-run",
               results=results, timeout=60)
    assert r.returncode == 0 and "-Xmx2g" in r.stdout and "+++ b/integrator.sh" in r.stdout
    assert script.read_bytes() == original and journals(results) == []
    r = eiperf("tune", "apply", "--file", str(script), "--set", "jvm.xmx=2g",
               results=results, timeout=60)
    assert r.returncode == 0, r.stderr
    new = script.read_bytes()
    assert b"-Xmx2g" in new and len(new.splitlines()) == len(original.splitlines())
    assert script.stat().st_mode & 0o7777 == 0o754
    r = eiperf("tune", "restore", results=results, timeout=60)
    assert r.returncode == 0 and f"restored 127.0.0.1:{script}" in r.stdout, r.stdout + r.stderr
    assert script.read_bytes() == original and script.stat().st_mode & 0o7777 == 0o754
