"""`eiperf tune show|apply|restore` as a user runs it, against the real testbed: apply keeps its
change until `tune restore`; a SIGKILLed apply is undone by the next eiperf command; bad input
is one line, exit 2 and nothing changed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eicore.results import journal_root
from eicore.transport import local_pid_alive
from testbed import manager
from tests.conftest import start_testbed
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
        (["--set", "nginx.proxy_read_timeout=999999999999999999999s"], "nginx -t refused"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_changes(testbed, tmp_path, args, needle):
    refused_unchanged(testbed, tmp_path, args, needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "jvm.flag.MaxPermSize=256m"], "-XX:MaxMetaspaceSize=256m"),
        (["--set", "jvm.flag.UseConcMarkSweepGC=true"], "jvm.gc=G1"),
    ],
)
def test_flags_jdk_17_refuses_are_one_line_and_nothing_changes(testbed17, tmp_path, args,
                                                                 needle):
    """JDK 11 (the default nodes) only warns about these; JDK 17 refuses to start with them."""
    refused_unchanged(testbed17, tmp_path, args, needle)


def refused_unchanged(cluster, tmp_path, args, needle) -> None:
    root = root_of(cluster)
    before, pids_before = config_snapshot(root), pids(cluster)
    r = eiperf("tune", "apply", "--cluster", cluster.source, *args, results=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert lines[0].startswith("eiperf tune: error:")
    assert config_snapshot(root) == before and pids(cluster) == pids_before
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


# ---- --file mode on files written for these tests (no cluster, no testbed) ---------------------


def test_file_mode_on_a_symlinked_vhost_keeps_the_link_and_restore_keeps_it_too(tmp_path):
    """sites-enabled/ei.http.conf -> ../sites-available/ei.http.conf: the target is rewritten,
    the link stays a link, and `tune restore` puts the bytes back through it."""
    available, enabled = tmp_path / "sites-available", tmp_path / "sites-enabled"
    available.mkdir()
    enabled.mkdir()
    target = available / "ei.http.conf"
    shutil.copy(FIXTURES / "ei.http.crlf.conf", target)
    target.chmod(0o640)
    original = target.read_bytes()
    link = enabled / "ei.http.conf"
    link.symlink_to("../sites-available/ei.http.conf")
    results = tmp_path / "results"
    r = eiperf("tune", "apply", "--file", str(link), "--set", "nginx.proxy_read_timeout=30s",
               results=results, timeout=60)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "../sites-available/ei.http.conf"
    assert b"proxy_read_timeout 30s;\r\n" in target.read_bytes()
    assert target.stat().st_mode & 0o7777 == 0o640
    assert sorted(os.listdir(enabled)) == ["ei.http.conf"]
    r = eiperf("tune", "restore", results=results, timeout=60)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "../sites-available/ei.http.conf"
    assert target.read_bytes() == original and target.stat().st_mode & 0o7777 == 0o640


def test_file_mode_checks_a_legacy_script_against_the_chosen_jdk(tmp_path):
    script = tmp_path / "wso2server.sh"
    shutil.copy(FIXTURES / "wso2server-crlf.sh", script)
    original = script.read_bytes()
    results = tmp_path / "results"
    # JDK 11 only ignores MaxPermSize: the change is made, the warning names the fix
    r = eiperf("tune", "apply", "--file", str(script), "--set", "jvm.xmx=2g", "--java-version",
               "11", "--dry-run", results=results, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "flags checked against JDK 11 (--java-version)" in r.stdout
    assert ("note: wso2server.sh:124: JDK 11 ignores -XX:MaxPermSize (with a warning)"
            in r.stdout)
    assert "fix: --unset jvm.flag.MaxPermSize --set jvm.max_metaspace=256m" in r.stdout
    # JDK 17 would not start: one line with the command that fixes it, nothing changed
    r = eiperf("tune", "apply", "--file", str(script), "--set", "jvm.xmx=2g", "--java-version",
               "17", results=results, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "JDK 17 would not start with it" in lines[0]
    assert (f"fix: eiperf tune apply --file {script} --set jvm.xmx=2g --unset "
            "jvm.flag.MaxPermSize --set jvm.max_metaspace=256m; nothing was changed") in lines[0]
    assert script.read_bytes() == original and journals(results) == []
    # without --java-version: the local java's version, said in the output
    r = eiperf("tune", "apply", "--file", str(script), "--set", "jvm.xmx=2g", "--dry-run",
               results=results, timeout=60)
    assert "(the local java, " in r.stdout and "--java-version N for another" in r.stdout


def test_file_mode_says_a_flag_on_the_old_java_line_was_left_alone(tmp_path):
    script = tmp_path / "integrator.sh"
    shutil.copy(FIXTURES / "integrator.sh", script)
    original = script.read_bytes()
    r = eiperf("tune", "apply", "--file", str(script), "--unset", "jvm.flag.MaxPermSize",
               "--java-version", "11", results=tmp_path / "results", timeout=60)
    assert r.returncode == 0, r.stderr
    assert ("note: integrator.sh:186: -XX:MaxPermSize=256m stands on the line the script runs "
            "only for Java older than 1.8 (its 'if' on line 185); JDK 11 never runs it") in r.stdout
    assert "already has these settings" not in r.stdout
    assert f"{script}: nothing to change" in r.stdout
    assert script.read_bytes() == original and journals(tmp_path / "results") == []


@pytest.mark.parametrize(
    ("fixture", "name", "args", "needle"),
    [
        ("passthru-http.properties", "passthru-http.properties",
         ["--set", "passthru.worker_pool_size_core=600"],
         "worker_pool_size_core 600 would be above worker_pool_size_max 500 (line 16)"),
        ("nginx-stream.conf", "nginx.conf", ["--set", "nginx.lb_method=ip_hash"],
         "nginx.conf:42: upstream ei_http has a backup server, which nginx's ip_hash refuses"),
        ("nginx-backup-methods.conf", "nginx.conf", ["--set", "nginx.upstream_keepalive=16"],
         "which nginx's hash refuses (its hash is on line 26)"),
        ("integrator.sh", "integrator.sh", ["--set", "jvm.xms=2g", "--java-version", "11"],
         "integrator.sh:184: -Xms2g would be above -Xmx1024m"),
        ("integrator.sh", "integrator.sh", ["--set", "jvm.xmx=2g", "--java-version", "eleven"],
         "is not a Java major version"),
        ("passthru-http.properties", "passthru-http.properties",
         ["--set", "passthru.io_buffer_size=8192", "--java-version", "11"],
         "--java-version is for start-up scripts"),
    ],
)
def test_file_mode_refusals_are_one_line_and_change_nothing(tmp_path, fixture, name, args, needle):
    path = tmp_path / name
    shutil.copy(FIXTURES / fixture, path)
    before = path.read_bytes()
    for dry in ([], ["--dry-run"]):
        r = eiperf("tune", "apply", "--file", str(path), *args, *dry,
                   results=tmp_path / "results", timeout=60)
        # one line: the error (argparse's own errors print the usage above it)
        lines = [ln for ln in r.stderr.strip().splitlines() if "error:" in ln]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert path.read_bytes() == before and journals(tmp_path / "results") == []


def test_show_file_prints_one_files_settings(tmp_path):
    conf = tmp_path / "nginx.conf"
    shutil.copy(FIXTURES / "nginx-stream.conf", conf)
    r = eiperf("tune", "show", "--file", str(conf), results=tmp_path / "results", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{conf} (an nginx config file)"
    assert "nginx.proxy_read_timeout     300s (nginx.conf:53)" in lines
    assert any(ln.startswith("note: nginx.conf:12: stream {} not read") for ln in lines)
    script = tmp_path / "wso2server.sh"
    shutil.copy(FIXTURES / "wso2server-crlf.sh", script)
    r = eiperf("tune", "show", "--file", str(script), "--java-version", "8",
               results=tmp_path / "results", timeout=60)
    assert r.returncode == 0, r.stderr
    assert any(ln.split() == ["jvm.flag.MaxPermSize", "256m"] for ln in r.stdout.splitlines())
    assert "flags checked against JDK 8 (--java-version)" in r.stdout
    assert "note: wso2server.sh:124: JDK 8 ignores -XX:MaxPermSize" in r.stdout
    r = eiperf("tune", "show", "--file", str(tmp_path / "none.sh"), results=tmp_path / "r")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = eiperf("tune", "show", "--file", str(conf), "--java-version", "11", results=tmp_path / "r")
    assert r.returncode == 2 and "--java-version is for start-up scripts" in r.stderr


# ---- every command checks its input before it starts anything ----------------------------------


def test_sweep_resume_of_no_such_sweep_starts_nothing(tmp_path):
    testbed_dir = tmp_path / "tb"
    started = time.monotonic()
    r = eiperf("sweep", "--resume", "NO-SUCH-ID", "--testbed-dir", str(testbed_dir),
               results=tmp_path / "results", timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "no sweep 'NO-SUCH-ID' under" in lines[0]
    assert not testbed_dir.exists()  # the testbed was neither built nor started
    assert time.monotonic() - started < 20
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_tune_apply_checks_the_change_before_it_starts_a_stopped_testbed(fresh_testbed_dir,
                                                                         tmp_path):
    start_testbed(fresh_testbed_dir)
    manager.down(fresh_testbed_dir, progress=lambda m: None)
    before = config_snapshot(fresh_testbed_dir)
    r = eiperf("tune", "apply", "--testbed-dir", str(fresh_testbed_dir), "--set", "jvm.xms=2g",
               results=tmp_path / "results", timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert re.search(r"node1: bin/integrator.sh:\d+: -Xms2g would be above -Xmx1024m", lines[0])
    assert "started" not in r.stdout.lower()  # the testbed was not brought up
    for pid_file in fresh_testbed_dir.rglob("*.pid"):  # what `down` left: no process behind it
        text = pid_file.read_text().strip()
        assert not text or not local_pid_alive(int(text)), pid_file
    assert config_snapshot(fresh_testbed_dir) == before
