"""`eiperf run --web`: the recorded run, live in Locust's own web UI, driven through its REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from tests.sshd import free_port


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_for_requests(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    """The UI's statistics once it shows the test running with requests made."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        try:
            stats = get_json(url + "stats/requests")
            if stats["state"] == "running" and stats["total_rps"] > 0:
                return stats
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError("the web UI never showed the test running")


def test_the_web_ui_shows_the_run_and_its_stop_button_ends_it_recorded(testbed, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "eiperf.cli", "run", "--cluster", testbed.source, "--web",
         "--web-port", str(port), "-u", "3", "-t", "60s", "--warmup", "1s", "--no-collect",
         "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stats = wait_for_requests(url, proc)
        assert stats["user_count"] == 3
        time.sleep(3)  # past the warm-up: something to measure
        started = time.monotonic()
        req = urllib.request.Request(url + "stop", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["success"] is True
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - started < 30, "the run did not end when stopped from the UI"
    assert proc.returncode == 0, out[-2000:]
    assert f"live: {url}" in out and "stopped from the web UI" in out
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    web = record["generator"]["web"]
    assert record["status"] == "complete" and web["stopped_by_user"] is True
    assert web["stopped_after_s"] < 30 and web["url"] == url
    rows = pd.read_parquet(run_dir / "requests.parquet")
    assert len(rows) == record["generator"]["requests"] >= record["summary"]["count"] > 0
    assert 0 < record["measure_end"] - record["measure_start"] < 30
    assert (run_dir / "locust" / "report.html").exists()


@pytest.mark.parametrize("load", [[], ["--shape", "step", "--step-users", "1",
                                        "--step-time", "2s"]], ids=["constant", "step"])
def test_a_web_run_ends_by_its_duration_recorded_with_summary_and_slos(testbed, tmp_path, load):
    """Nobody presses stop: the run ends by its duration (or its shape's), not marked as
    stopped by the user."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "eiperf.cli", "run", "--cluster", testbed.source, "--web",
         "--web-port", str(port), "-u", "2", "-t", "4s", "--warmup", "1s", "--no-collect",
         *load, "--slo", "errors<50%", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_requests(url, proc)["user_count"] in (1, 2)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-2000:]
    assert "stopped from the web UI" not in out
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["generator"]["web"] == {"url": url, "stopped_by_user": False}
    assert 3 < record["measure_end"] - record["measure_start"] < 6
    assert record["summary"]["count"] > 0
    assert [r["ok"] for r in record["slo_results"]] == [True]
    assert record["load"]["shape"] == ("step" if load else "constant")


def test_a_taken_web_port_is_one_line_and_no_run(testbed, tmp_path):
    out = tmp_path / "results"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "eiperf.cli", "run", "--cluster", testbed.source, "--web",
             "--web-port", str(port), "-u", "1", "-t", "2s", "--no-collect", "--no-doctor",
             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"eiperf run: error: --web-port {port}: 127.0.0.1:{port} is taken")
    assert line.endswith("pick another port")
    assert not out.exists() or not any(out.iterdir())


def test_web_port_without_web_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eiperf.cli", "run", "--web-port", "8090",
                        "-t", "2s", "--out", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "--web-port" in r.stderr and "--web" in r.stderr
    assert not (tmp_path / "results").exists()
