"""`eiperf report` / `eiperf compare` on synthetic result folders: the HTML is self-contained,
renders in headless Chromium without console errors, and bad input changes nothing."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.loading import load
from analysis.report import render_report
from eicore.results import RunStatus
from tests.analysis.chromium import render
from tests.analysis.results_fixture import write_run, write_step_run, write_sweep


def eiperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eiperf.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def data_uris(html: str) -> list[tuple[str, bytes]]:
    return [(mime, base64.b64decode(data)) for mime, data in
            re.findall(r'src="data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)"', html)]


def has_color(png: Path, rgb: tuple[int, int, int], min_pixels: int = 200) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    return int((np.abs(pixels - rgb).sum(axis=1) <= 6).sum()) >= min_pixels


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("report") / "results"
    write_run(results, "run-a", n=20_000)
    write_run(results, "run-b", n=20_000, seed=2, scale=1.4)
    write_step_run(results)
    write_sweep(results, "sweep-1", with_runs=True)
    return results


def test_report_of_runs_step_run_and_sweep_renders_in_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    r = eiperf("report", "run-a", "run-b", "step-run", "sweep-1", "-o", str(out),
               "--results", str(results), "--target-rps", "800")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    html = out.read_text()
    # self-contained: no external script, style, image or font
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    images = data_uris(html)
    assert len(images) >= 12
    for mime, data in images:
        assert mime == "image/svg+xml"
        ET.fromstring(data)  # each plot is well-formed SVG
    for needed in ("Comparison against run-a", "Sweep sweep-1", "Run step-run",
                   "eiperf tune apply --set jvm.xmx=2g --set nginx.proxy_read_timeout=30s",
                   "Unrecognized VM option", "Capacity (step load)", "knee:",
                   "nodes needed for 800 req/s", "Cluster snapshot",
                   "worker_pool_size_core", "Heat map", "slower"):
        assert needed in html, needed
    rendering = render(out, tmp_path / "chromium", height=3000)
    assert rendering.console_messages() == []
    for anchor in ("comparison", "sweep-sweep-1", "run-run-a", "run-step-run"):
        assert f'id="{anchor}"' in rendering.dom
    assert rendering.dom.count("<img") == len(images)
    # the plots were drawn: matplotlib's first series colour fills many pixels
    assert has_color(rendering.png, (0x1F, 0x77, 0xB4))


def test_each_run_has_its_timeline_and_node_plot(results):
    html = render_report([load(results / "run-a"), load(results / "run-b")])
    for title in ("Over time", "Requests per node"):
        assert html.count(f"<strong>{title}.</strong>") == 2, title  # once for each run
    assert "CPU per node" in html and "p50, p95 and p99 latency" in html


def test_report_flags_an_interrupted_run_and_a_saturated_generator(results, tmp_path):
    write_run(results, "cut", n=5000, status=RunStatus.INCOMPLETE, generator_cpu=99.0)
    out = tmp_path / "cut.html"
    r = eiperf("report", str(results / "cut"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "the run was interrupted (status incomplete)" in html
    assert "the load generator was saturated" in html
    assert 'class="badge status-incomplete"' in html


def test_default_report_name_is_in_the_current_folder(results, tmp_path):
    r = eiperf("report", "run-a", "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report-run-a.html").exists()


@pytest.mark.parametrize("args, message", [
    (["no-such-run"], "no such run folder, and no run or sweep with that id"),
    (["old"], "results schema version 99 is unknown"),
    (["run-a", "-o", "{tmp}"], "is a folder; pass a file name with -o"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(results, tmp_path, args, message):
    write_run(results, "old", n=100, schema_version=99)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    r = eiperf("report", *args, "--results", str(results), cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_compare_table_with_verdicts(results):
    r = eiperf("compare", "run-a", "run-b", "--results", str(results))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    p50 = next(line for line in lines if line.startswith("p50") and "run-b" in line)
    cells = p50.split()
    assert cells[-1] == "slower" and float(cells[4].lstrip("×")) == pytest.approx(1.4, abs=0.03)
    assert any(line.startswith("note: no run-to-run noise estimate") for line in lines)


def test_compare_refuses_a_sweep_and_the_same_run_twice(results):
    r = eiperf("compare", "run-a", "sweep-1", "--results", str(results))
    assert r.returncode == 2 and "is a sweep" in r.stderr
    r = eiperf("compare", "run-a", "run-a", "--results", str(results))
    assert r.returncode == 2 and "the same run is given twice" in r.stderr
    r = eiperf("compare", "run-a", "run-b", "--noise", "1.5", "--results", str(results))
    assert r.returncode == 2 and "--noise" in r.stderr
