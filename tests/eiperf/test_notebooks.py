"""`eiperf notebook`: both notebooks executed by papermill on run folders (a recorded golden run
and synthetic ones) into the run's folder -- the executed .ipynb and a self-contained HTML with
the notebook's result -- bad input refused in one line with nothing written, and
`eiperf notebook --lab` (what `make notebooks` runs) answering on loopback until stopped by PID."""

from __future__ import annotations

import html
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
from PIL import Image

from analysis.loading import load_run
from analysis.planning import plan_capacity
from tests.analysis.chromium import render
from tests.analysis.conftest import eiperf_cli
from tests.analysis.results_fixture import write_run, write_step_run, write_sweep

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/analysis/golden/v1/20261130-104617-93ae"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder: a step-load run, two constant runs (run-b 1.5× slower), a sweep with
    its trials' runs, and a copy of the recorded golden run."""
    results = tmp_path_factory.mktemp("notebooks") / "results"
    write_step_run(results)
    write_run(results, "run-a", n=5000)
    write_run(results, "run-b", n=5000, seed=3, scale=1.5)
    write_sweep(results, "sweep-nb", with_runs=True)
    shutil.copytree(GOLDEN, results / GOLDEN.name)
    return results


def files(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its modification time (to see what a command wrote)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def notebook(results: Path, *args: str, folder: Path) -> tuple[nbformat.NotebookNode, str]:
    """Run `eiperf notebook ARGS`; check it printed the .ipynb and .html it wrote into `folder`
    (and nothing else: no temp file left); the executed notebook and the HTML's text."""
    name = args[0]
    before = files(folder)
    r = eiperf_cli("notebook", *args, "--results", str(results))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    written = [folder / f"{name}.ipynb", folder / f"{name}.html"]
    assert r.stdout.splitlines() == [str(p) for p in written]
    assert set(files(folder)) - set(before) <= {p.name for p in written}
    nb = nbformat.read(written[0], as_version=4)
    assert nb.metadata.papermill.parameters["RESULTS"] == str(results)
    assert nb.metadata.language_info.version == platform.python_version()  # the venv's kernel
    page = written[1].read_text()
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: no script, stylesheet or image from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == sum(
        1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    return nb, html.unescape(page)


def result(nb: nbformat.NotebookNode) -> str:
    """The text of the notebook's last cell's value (its "Result")."""
    cell = [c for c in nb.cells if c.cell_type == "code"][-1]
    return next(o for o in cell.outputs if o.output_type == "execute_result")["data"][
        "text/plain"]


def test_capacity_notebook_on_a_step_run_lands_in_the_run_folder(results, tmp_path):
    run_dir = results / "step-run"
    nb, page = notebook(results, "capacity_planning", "step-run", "-p", "TARGET_RPS", "5000",
                        "-p", "HEADROOM", "0.25", folder=run_dir)
    assert nb.metadata.papermill.parameters["RUN"] == str(run_dir)
    plan = plan_capacity(load_run(run_dir), target_rps=5000, headroom=0.25)
    assert plan.nodes_needed is not None
    for key, value in (("knee_users", plan.knee.users), ("nodes_needed", plan.nodes_needed),
                       ("target_rps", 5000)):
        assert f"'{key}': {value}" in result(nb)
        assert f"'{key}': {value}" in page
    assert page.count("data:image/png;base64,") >= 3
    # as a browser shows it: no script error, every image in place, and the figures drawn --
    # one saturated colour fills >= 20,000 pixels (a plot's bars; the page's text alone: ~2,700)
    shown = render(run_dir / "capacity_planning.html", tmp_path / "chromium", height=5000)
    assert shown.console_messages() == []
    images = r'<img [^>]*src="data:image/png;base64,'
    assert len(re.findall(images, shown.dom)) == len(re.findall(images, page)) >= 3
    with Image.open(shown.png) as png:
        colours = png.convert("RGB").getcolors(maxcolors=1 << 24)
    assert max(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 60) >= 20_000


def test_compare_notebook_on_two_runs_lands_in_the_first_runs_folder(results):
    nb, page = notebook(results, "compare_runs", "run-a", "run-b", folder=results / "run-a")
    assert nb.metadata.papermill.parameters["RUNS"] == [str(results / "run-a"),
                                                        str(results / "run-b")]
    assert "('p50', 'run-b'): 'slower'" in result(nb)
    assert "('p50', 'run-b'): 'slower'" in page


def test_compare_notebook_on_a_sweep_lands_in_the_sweep_folder(results):
    nb, page = notebook(results, "compare_runs", "sweep-nb", "-p", "MAX_SWEEP_RUNS", "2",
                        folder=results / "sweeps" / "sweep-nb")
    assert "eiperf tune apply --set jvm.xmx=2g --set nginx.proxy_read_timeout=30s" in page
    assert "('p50', 'sweep-nb-t6r0'): 'baseline'" in result(nb)


def test_the_recorded_golden_run_with_an_output_folder(results, tmp_path):
    golden = results / GOLDEN.name
    before = files(golden)
    out = tmp_path / "shared"
    nb, page = notebook(results, "compare_runs", str(golden), "run-a", "-o", str(out),
                        folder=out)
    assert f"('p50', '{GOLDEN.name}'): 'baseline'" in result(nb)
    assert f"{GOLDEN.name}: {golden} (complete)" in page
    assert files(golden) == before  # -o: the run folder is left as it was


@pytest.mark.parametrize("args, message", [
    (["capacity_planning", "no-such-run"], "no-such-run: no such run folder"),
    (["capacity_planning", "run-a"], "failed: SystemExit: run-a has no step timeline"),
    (["capacity_planning", "step-run", "-p", "TARGET", "1"], "-p TARGET: capacity_planning has "
                                                             "no such parameter"),
    (["capacity_planning", "step-run", "-p", "RUN", "run-a"], "-p RUN: is set from the runs"),
    (["capacity_planning", "step-run", "-p", "TARGET_RPS", "abc"], "-p TARGET_RPS abc: "
                                                                   "capacity_planning's "
                                                                   "TARGET_RPS is a number"),
    (["compare_runs", "sweep-nb", "-p", "MAX_SWEEP_RUNS", "2.5"], "-p MAX_SWEEP_RUNS 2.5: "
                                                                  "compare_runs's MAX_SWEEP_RUNS "
                                                                  "is a whole number"),
    (["capacity_planning", "sweep-nb"], "capacity_planning takes one run"),
    (["compare_runs", "run-a"], "compare_runs takes two runs or more, or one sweep"),
    (["compare_runs", "run-a", "run-b", "-o", "run.json"], "run.json: is a file"),
    (["planning", "run-a"], "no notebook 'planning'"),
    (["--lab", "compare_runs"], "--lab opens JupyterLab; it takes no notebook"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_line_and_writes_nothing(results, args, message):
    before = files(results)
    r = eiperf_cli("notebook", *args, "--results", str(results), cwd=results / "run-a")
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("eiperf notebook: error: ") and message in lines[0], r.stderr
    assert files(results) == before


# ---- `make notebooks`: JupyterLab on loopback ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> int:
    """HTTP status of a GET (redirects not followed)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"}
                                     if token else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_notebooks_starts_jupyterlab_on_loopback_and_stops_by_pid(tmp_path):
    recipe = (ROOT / "Makefile").read_text().split("\nnotebooks:", 1)[1].split("\n\n", 1)[0]
    assert "eiperf notebook --lab" in recipe  # the command started here is make's
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    log = (tmp_path / "lab.log").open("w")
    lab = subprocess.Popen([sys.executable, "-m", "eiperf.cli", "notebook", "--lab", "--port",
                            str(port), "--results", str(tmp_path / "results")],
                           stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        assert lab.stdout.readline().startswith("JupyterLab on ")
        assert lab.stdout.readline().strip() == f"http://127.0.0.1:{port}/lab?token={token}"
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            assert lab.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            try:
                if get(f"{base}/api/status", token) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert get(f"{base}/lab?token={token}") == 200
        assert get(f"{base}/api/contents") == 403  # the token is needed
        names = {n for n in ("capacity_planning.ipynb", "compare_runs.ipynb")
                 if get(f"{base}/api/contents/{n}", token) == 200}
        assert len(names) == 2  # its root is notebooks/
        server = psutil.Process(lab.pid)  # the same PID: eiperf became JupyterLab
        assert "jupyterlab" in server.cmdline()
        listening = {c.laddr.ip for c in server.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        children = server.children(recursive=True)
    finally:
        lab.send_signal(signal.SIGTERM)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait(timeout=10)
        lab.stdout.close()
        log.close()
    assert lab.returncode is not None
    assert not [c for c in children if c.is_running()]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
