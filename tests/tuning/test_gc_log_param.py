"""`jvm.gc_log`: the value, the flags written for each JDK into the product's own start-up
scripts (and taken back byte for byte), what a real JVM does with them, the JDK checks; and end
to end on the testbed: apply, a short run, gc.parquet from both nodes (also read over SSH, and
with one log unreadable), the run's GC figures, the report's GC section; then restore."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.gc import load_gc
from analysis.record import record_figures
from analysis.report import build_report
from eicore.cluster import load_cluster
from eicore.gclog import DEFAULT_GC_LOG, GC_FILE, parse_gc_log
from eicore.results import RUN_JSON, RunStatus
from eicore.sweeps import OBJECTIVES, objective_value
from loadtests.gc_logs import collect_gc_logs
from loadtests.profile import LoadProfile
from loadtests.run import run_load_test
from tests.sshd import cluster_file_with_ssh_node
from tuning.apply import apply_settings
from tuning.changes import edit_file
from tuning.integrator_sh import IntegratorShEditor, read_jvm_options
from tuning.jdk_checks import check_script
from tuning.jvm_flags import HOME_VARIABLE, gc_log_flags, parse_refusal
from tuning.params import ParameterError, ParamSet, validate
from tuning.settings import cluster_settings

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPTS = ("integrator.sh", "integrator-ei600.sh", "wso2server-crlf.sh", "wso2server-cms-crlf.sh")
UNIFIED = "-Xlog:gc*:file=$CARBON_HOME/repository/logs/gc.log:time,uptime,level,tags"
JDK8 = ("-XX:+PrintGCDetails -XX:+PrintGCDateStamps "
        "-Xloggc:$CARBON_HOME/repository/logs/gc.log")


@pytest.mark.parametrize("raw, value", [
    ("on", DEFAULT_GC_LOG), (True, DEFAULT_GC_LOG), ("ON", DEFAULT_GC_LOG),
    ("off", "off"), (False, "off"),
    ("gc-g1.log", "repository/logs/gc-g1.log"),
    ("repository/logs/gc_2.log", "repository/logs/gc_2.log"),
])
def test_values(raw, value):
    assert validate("jvm.gc_log", raw) == value


@pytest.mark.parametrize("raw", ["../gc.log", "/tmp/gc.log", "logs/gc.log", "gc log", "gc:1.log",
                                 "$HOME.log", ""])
def test_bad_values_are_one_line(raw):
    with pytest.raises(ParameterError) as e:
        ParamSet.parse([f"jvm.gc_log={raw}"])
    assert "\n" not in str(e.value) and str(e.value).startswith("jvm.gc_log:")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("java, written", [(8, JDK8), (11, UNIFIED), (17, UNIFIED)])
def test_editor_writes_the_jdks_flags_and_gives_the_bytes_back(name, java, written):
    text = fixture(name)
    edit = IntegratorShEditor(java).edit({name: text}, {"jvm.gc_log": "on"})[name]
    changed = [ln for ln in edit.diff.splitlines() if ln.startswith("+") and "+++" not in ln]
    assert len(changed) == 1 and written in changed[0]
    assert edit.new_text.count("\r\n") == text.count("\r\n")  # CRLF scripts keep their ends
    assert read_jvm_options(edit.new_text, name).as_params()["jvm.gc_log"] == DEFAULT_GC_LOG
    for back in (None, "off"):
        undone = IntegratorShEditor(java).edit({name: edit.new_text}, {"jvm.gc_log": back})
        assert undone[name].new_text == text
    again = IntegratorShEditor(java).edit({name: edit.new_text}, {"jvm.gc_log": "on"})[name]
    assert not again.changed  # the value the file already has: the same bytes


def test_another_jdk_or_file_replaces_every_gc_log_flag():
    text = IntegratorShEditor(8).edit({"s": fixture("integrator.sh")},
                                      {"jvm.gc_log": "on"})["s"].new_text
    moved = IntegratorShEditor(17).edit({"s": text}, {"jvm.gc_log": "gc2.log"})["s"].new_text
    assert "PrintGCDetails" not in moved and "-Xloggc" not in moved
    assert UNIFIED.replace("gc.log", "gc2.log") in moved
    assert IntegratorShEditor.needs_java_major({"jvm.gc_log": "repository/logs/gc.log"})
    assert not IntegratorShEditor.needs_java_major({"jvm.gc_log": "off", "jvm.xmx": "1g"})


def java_with(flags: list[str], home: Path) -> subprocess.CompletedProcess:
    literal = [f.replace(HOME_VARIABLE, str(home)) for f in flags]
    return subprocess.run(["java", *literal, "-version"], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java")
def test_the_local_jdk_takes_its_own_flags_and_refuses_the_others(tmp_path):
    (tmp_path / "repository" / "logs").mkdir(parents=True)
    r = java_with(gc_log_flags(DEFAULT_GC_LOG, 17), tmp_path)
    assert r.returncode == 0, r.stderr
    log = parse_gc_log((tmp_path / DEFAULT_GC_LOG).read_text())
    assert log.collector and log.wall_time  # `Using G1`, time decorations
    r = java_with(gc_log_flags(DEFAULT_GC_LOG, 8), tmp_path)
    assert r.returncode != 0 and "PrintGCDateStamps" in (parse_refusal(r.stderr + r.stdout) or "")


def test_jdk_checks_name_the_fix_for_the_other_jdks_flags():
    text = fixture("integrator.sh")
    on8 = edit_file("integrator.sh", text, ParamSet({"jvm.gc_log": "on"}), java_major=8)
    assert JDK8 in on8.edit.new_text and not on8.notes
    unified = IntegratorShEditor(17).edit({"s": text}, {"jvm.gc_log": "on"})["s"].new_text
    report = check_script(unified, "integrator.sh", 8)
    (refusal,) = report.refusals
    assert "-Xlog came in JDK 9" in refusal.reason
    assert refusal.fix == (f"--set jvm.gc_log={DEFAULT_GC_LOG}",)
    warnings = check_script(on8.edit.new_text, "integrator.sh", 17).warnings
    assert any("-Xloggc" in w and f"--set jvm.gc_log={DEFAULT_GC_LOG}" in w for w in warnings)


def test_objectives_read_the_gc_figures():
    summary = {"gc_pause_p99_ms": 4.5, "gc_pause_max_ms": 12.0, "gc_throughput_pct": 99.2}
    assert OBJECTIVES["gc_pause_p99_ms"] == OBJECTIVES["gc_pause_max_ms"] == "minimize"
    assert OBJECTIVES["gc_throughput_pct"] == "maximize"
    for key, value in summary.items():
        assert objective_value(summary, key) == value  # type: ignore[arg-type]
    assert objective_value({"gc_pause_p99_ms": None}, "gc_pause_p99_ms") is None  # type: ignore[typeddict-item]


# ---- end to end on the testbed ------------------------------------------------------------------


def finalize(run_dir: Path, record):
    return record_figures(run_dir, record, [])[0]


def in_window(run_dir: Path) -> dict[str, int]:
    gc = load_gc(run_dir)
    assert gc is not None
    return gc.window().groupby("node").size().to_dict()


def test_gc_log_end_to_end_on_the_testbed(testbed, journal, tmp_path, sshd):
    apply_settings(testbed, ParamSet({"jvm.gc_log": "on"}), journal, progress=lambda m: None)
    for node in testbed.nodes:  # the node's JDK (11) chose the unified flags
        assert UNIFIED in Path(node.integrator_sh).read_text()
    lines: list[str] = []
    outcome = run_load_test(testbed, LoadProfile(users=8, duration=4.0, warmup=1.0,
                                                 message_size="10KB"),
                            tmp_path / "results", finalize=finalize, settings=cluster_settings,
                            collect=False, progress=lines.append)
    record, run_dir = outcome.record, outcome.run_dir
    assert record.status is RunStatus.COMPLETE, record.error
    assert any("GC logs:" in ln and "node1, node2" in ln for ln in lines), lines

    gc = load_gc(run_dir)
    assert gc is not None and not gc.warnings
    counts = in_window(run_dir)
    assert set(counts) == {"node1", "node2"} and min(counts.values()) >= 1, counts
    window = gc.window()
    assert (window["ts"] >= record.measure_start).all() and (window["ts"] < record.measure_end).all()
    assert set(window["kind"]) <= {"young", "mixed", "remark", "cleanup", "full"}
    for node in testbed.nodes:
        facts = gc.nodes[node.name]
        assert facts["log"] == node.path(DEFAULT_GC_LOG)
        assert facts["format"] == "unified" and facts["collector"] == "G1"
        assert 50.0 < facts["throughput_pct"] <= 100.0
        assert facts["allocation_rate_bytes_s"] > 0

    s = record.summary
    assert 0 < s["gc_pause_p99_ms"] <= s["gc_pause_max_ms"] == window["duration_ms"].max()
    assert 50.0 < s["gc_throughput_pct"] <= 100.0
    assert objective_value(s, "gc_pause_p99_ms") == s["gc_pause_p99_ms"]
    saved = json.loads((run_dir / RUN_JSON).read_text())["summary"]
    assert saved["gc_pause_max_ms"] == s["gc_pause_max_ms"]

    html = build_report([run_dir], tmp_path / "report.html").read_text()
    section = html[html.index(">GC pauses</h3>"):]
    section = section[:section.index("<h3", 10)]
    assert "node1" in section and "node2" in section and "p99 (ms)" in section
    assert "GC pauses over time" in section and "data:image/svg+xml;base64," in section

    # node2 over SSH: the same pauses in the window as read locally
    ssh_cluster = load_cluster(cluster_file_with_ssh_node(testbed, sshd, tmp_path / "ssh.toml",
                                                          "node2"))
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy2(run_dir / RUN_JSON, again / RUN_JSON)
    window_args = (record.measure_start, record.measure_end)
    assert collect_gc_logs(ssh_cluster, again, *window_args, since=record.started_at) > 0
    assert in_window(again) == counts

    # node2's log cannot be read: a warning, node1's pauses still there, figures still made
    broken = tmp_path / "broken"
    broken.mkdir()
    data = json.loads((run_dir / RUN_JSON).read_text())
    data["cluster"]["jvm_runtime"]["node2"]["input_arguments"] = [
        "-Xlog:gc*:file=/nonexistent/eiperf/gc.log"]
    (broken / RUN_JSON).write_text(json.dumps(data))
    lines.clear()
    assert collect_gc_logs(testbed, broken, *window_args, since=record.started_at,
                           progress=lines.append) > 0
    gc_broken = load_gc(broken)
    assert gc_broken is not None and "does not exist" in gc_broken.nodes["node2"]["warning"]
    assert any(ln.startswith("  warning: node2:") for ln in lines)
    assert in_window(broken) == {"node1": counts["node1"]}
    assert (broken / GC_FILE).exists()
