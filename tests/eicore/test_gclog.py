"""The GC log parser on logs real JVMs wrote (JDK 17 unified logging under G1, Parallel and
Serial, with the flags `jvm.gc_log=on` writes) and on hand-written JDK 8 logs shaped from the
format's documentation (PrintGCDetails + PrintGCDateStamps: ParNew/CMS, PSYoungGen/ParOldGen,
DefNew/Tenured, G1 young/mixed/remark/cleanup/Full; one with CRLF line ends, two cut off mid-
entry); the figures, the JVM-argument lookup and gc.parquet's round trip."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from eicore.gclog import (
    GC_FILE,
    LogFormat,
    NodeGc,
    Pause,
    PauseKind,
    gc_log_path,
    node_rates,
    parse_gc_log,
    pause_rows,
    read_gc_file,
    write_gc_file,
)
from tuning.jvm_flags import HOME_VARIABLE, gc_log_flags

SAMPLES = Path(__file__).parent / "gc_logs"
JAVA = shutil.which("java")
needs_java = pytest.mark.skipif(JAVA is None or shutil.which("javac") is None,
                                reason="needs a JDK (java, javac)")

# Allocates ~1 s (some objects kept, so some promote), one System.gc() half-way.
ALLOC = """
import java.util.*;
public class Alloc {
  public static void main(String[] a) throws Exception {
    long start = System.currentTimeMillis(), end = start + Long.parseLong(a[0]);
    List<byte[]> keep = new ArrayList<>();
    Random r = new Random(1);
    boolean full = false;
    while (System.currentTimeMillis() < end) {
      byte[] b = new byte[1024 + r.nextInt(8192)];
      if (r.nextInt(50) == 0) keep.add(b);
      if (keep.size() > 4000) keep.subList(0, 2000).clear();
      if (!full && System.currentTimeMillis() > start + Long.parseLong(a[0]) / 2) {
        System.gc();
        full = true;
      }
    }
    System.out.println(keep.size());
  }
}
"""


@pytest.fixture(scope="module")
def alloc_class(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("alloc")
    (d / "Alloc.java").write_text(ALLOC)
    subprocess.run(["javac", "Alloc.java"], cwd=d, check=True, timeout=120)
    return d


def jvm_log(classes: Path, home: Path, gc: str, *extra: str) -> tuple[str, float, float]:
    """Run the allocation program with `jvm.gc_log=on`'s JDK 17 flags under collector `gc`;
    the GC log it wrote and the wall-clock span of the JVM."""
    flags = [f.replace(HOME_VARIABLE, str(home)) for f in gc_log_flags("gc.log", 17)]
    started = time.time()
    subprocess.run([JAVA, "-Xmx96m", f"-XX:+Use{gc}GC", *extra, *flags, "-cp", str(classes),
                    "Alloc", "1000"], check=True, timeout=60, capture_output=True)
    return (home / "gc.log").read_text(), started, time.time()


@needs_java
@pytest.mark.parametrize("gc, extra, kinds", [
    ("G1", ["-XX:InitiatingHeapOccupancyPercent=10"], {"young", "remark", "cleanup", "full"}),
    ("Parallel", [], {"young", "full"}),
    ("Serial", [], {"young", "full"}),
])
def test_real_jvm_logs_parse(alloc_class, tmp_path, gc, extra, kinds):
    text, started, ended = jvm_log(alloc_class, tmp_path, gc, *extra)
    log = parse_gc_log(text)
    assert log.format is LogFormat.UNIFIED and log.collector == gc and log.wall_time
    assert log.skipped == 0
    pauses = log.pauses
    assert len(pauses) >= 10
    assert kinds <= {p.kind.value for p in pauses}
    # every pause the log has: one GC(N) "Pause" line with a duration each
    lines = [ln for ln in text.splitlines() if "][gc " in ln and " Pause " in ln]
    assert len(pauses) == len(lines)
    assert all(started - 1 <= p.ts <= ended and p.duration_ms > 0 for p in pauses)
    # in log order, as far as the log's 1 ms time stamps tell (start = stamp at the end - pause)
    assert all(b.ts > a.ts - 0.001 for a, b in zip(pauses, pauses[1:]))
    young = [p for p in pauses if p.kind is PauseKind.YOUNG]
    assert all(p.cause for p in young)  # "G1 Evacuation Pause", "Allocation Failure"
    assert any(p.kind is PauseKind.FULL and p.cause == "System.gc()" for p in pauses)
    sized = [p for p in young if p.heap_before]
    assert sized and all(p.heap_after <= p.heap_before <= p.heap_total <= 96 << 20
                         for p in sized)
    assert any(p.promoted for p in young)  # kept objects reach the old generation
    rates = node_rates(pauses, started, ended)
    assert 0 < rates["throughput_pct"] < 100
    assert rates["allocation_rate_bytes_s"] > 10 << 20  # it allocates hundreds of MB/s
    assert rates["promotion_rate_bytes_s"] > 0


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode()


# (kind, cause, duration ms, heap before/after/total KB, promoted KB) per pause
JDK8 = {
    "jdk8_parallel.log": ("Parallel", 1, [
        ("young", "Allocation Failure", 12.3456, (65536, 10736, 251392), 16),
        ("young", "Allocation Failure", 20.0, (76272, 20000, 316928), 9248),
        ("young", "System.gc()", 5.0, (59264, 18000, 316928), 736),
        ("full", "System.gc()", 34.5678, (18000, 15000, 316928), None),
        ("full", "Ergonomics", 234.5678, (180720, 150000, 316928), None),
    ]),
    "jdk8_cms.log": ("CMS", 0, [
        ("young", "Allocation Failure", 51.3456, (272640, 40123, 1014528), 6075),
        ("initial-mark", "CMS Initial Mark", 10.0, (650000, 650000, 1014528), None),
        ("remark", "CMS Final Remark", 25.0, (700000, 700000, 1014528), None),
        ("full", "Allocation Failure", 1235.0, (1006688, 300000, 1014528), None),  # promotion failed
        ("full", "System.gc()", 800.1, (400000, 250000, 1014528), None),
    ]),
    "jdk8_g1_crlf.log": ("G1", 1, [
        ("young", "G1 Evacuation Pause", 12.3456, (24 << 10, 5120, 256 << 10), 1 << 10),
        ("young", "G1 Evacuation Pause", 15.0, (130 << 10, 112 << 10, 256 << 10), 2 << 10),
        ("remark", "", 5.0, None, None),
        ("cleanup", "", 1.0, (120 << 10, 100 << 10, 256 << 10), None),
        ("mixed", "G1 Evacuation Pause", 20.0, (130 << 10, 90 << 10, 256 << 10), None),
        ("full", "Allocation Failure", 500.0, (250 << 10, 100 << 10, 256 << 10), None),
        ("young", "G1 Humongous Allocation", 10.0, None, None),  # its details were cut off
    ]),
    "jdk8_serial.log": ("Serial", 0, [
        ("young", "Allocation Failure", 1.2999, (2752, 1234, 9920), 914),
        ("full", "Allocation Failure", 10.1, (9072, 4000, 9920), None),  # promotion failed
    ]),
}


@pytest.mark.parametrize("name", sorted(JDK8))
def test_jdk8_logs_parse(name):
    collector, skipped, expected = JDK8[name]
    log = parse_gc_log(sample(name))
    assert log.format is LogFormat.JDK8 and log.collector == collector
    assert log.skipped == skipped and log.wall_time
    got = [(p.kind.value, p.cause, p.duration_ms,
            None if p.heap_before is None else
            (p.heap_before >> 10, p.heap_after >> 10, p.heap_total >> 10),  # type: ignore[operator]
            None if p.promoted is None else p.promoted >> 10) for p in log.pauses]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g[2] == pytest.approx(e[2])
        assert g[3:] == e[3:]
    assert [p.uptime_s for p in log.pauses] == sorted(p.uptime_s for p in log.pauses)


def test_jdk8_time_stamps_keep_their_offset():
    cms = parse_gc_log(sample("jdk8_cms.log")).pauses[0]
    assert cms.ts == 1705312800.1  # 11:00:00.100+0100 is 10:00:00.100 UTC
    assert cms.uptime_s == 0.9


def test_crlf_and_lf_give_the_same_pauses():
    text = sample("jdk8_g1_crlf.log")
    assert "\r\n" in text
    assert parse_gc_log(text) == parse_gc_log(text.replace("\r\n", "\n"))


def test_a_line_cut_off_mid_write_is_counted_not_guessed():
    text = sample("jdk8_parallel.log")
    assert not text.endswith("\n")  # the last entry stops inside its sizes
    log = parse_gc_log(text)
    assert log.skipped == 1 and len(log.pauses) == 5
    unified = ("[2026-01-01T10:00:00.100+0000][1.000s][info][gc] GC(0) Pause Young (Normal) "
               "(G1 Evacuation Pause) 24M->3M(256M) 3.000ms\n"
               "[2026-01-01T10:00:01.100+0000][2.000s][info][gc] GC(1) Pause Young (Normal) "
               "(G1 Evacuation Pause) 26M->")
    cut = parse_gc_log(unified)
    assert cut.skipped == 1 and len(cut.pauses) == 1
    assert cut.pauses[0].ts == pytest.approx(1767261600.097)  # logged at the end: start 3 ms before


def test_unified_log_without_wall_time_says_so():
    log = parse_gc_log("[1.000s][info][gc] GC(0) Pause Young (Allocation Failure) 8M->1M(30M) "
                       "1.500ms\n")
    assert log.pauses[0].ts is None and log.pauses[0].uptime_s == pytest.approx(0.9985)
    assert not log.wall_time


@pytest.mark.parametrize("args, expected", [
    (["-Xms1g", "-Xlog:gc*:file=/ei/repository/logs/gc.log:time,uptime,level,tags"],
     "/ei/repository/logs/gc.log"),
    (["-XX:+PrintGCDetails", "-Xloggc:$CARBON_HOME/repository/logs/gc.log"],
     "/ei/repository/logs/gc.log"),
    (["-Xlog:gc:repository/logs/x.log"], "/ei/repository/logs/x.log"),
    (['-Xlog:gc*:file="/var/log/gc.log"'], "/var/log/gc.log"),
    (["-Xlog:gc*:stdout"], None),
    (["-Xlog:safepoint:file=/tmp/sp.log"], None),
    (["-Xmx1g"], None),
])
def test_gc_log_path_from_jvm_arguments(args, expected):
    assert gc_log_path(args, "/ei") == expected


def pause(ts: float, ms: float, before: int, after: int, kind=PauseKind.YOUNG,
          promoted: int | None = 0) -> Pause:
    return Pause(ts, None, None, kind, "Allocation Failure", ms, before, after, 1000, promoted)


def test_node_rates_are_the_documented_sums():
    pauses = [pause(99.0, 2000, 500, 100),            # straddles the start: 1 s of it counts
              pause(102.0, 500, 600, 200, promoted=50),
              pause(104.0, 500, 800, 300, promoted=30),
              pause(108.0, 1000, 700, 300, kind=PauseKind.FULL, promoted=None),
              pause(115.0, 100, 900, 100)]              # after the window
    rates = node_rates(pauses, 100.0, 110.0)
    assert rates["throughput_pct"] == pytest.approx(100 * (1 - (1.0 + 0.5 + 0.5 + 1.0) / 10))
    # heap growth between the window's pauses: (800-200) + (700-300), over 108-102 s
    assert rates["allocation_rate_bytes_s"] == pytest.approx((600 + 400) / 6.0)
    assert rates["promotion_rate_bytes_s"] == pytest.approx(80 / 10.0)
    assert node_rates([], 100.0, 110.0)["throughput_pct"] == 100.0
    assert node_rates(pauses, None, None)["throughput_pct"] is None


def test_gc_file_round_trip(tmp_path):
    log = parse_gc_log(sample("jdk8_parallel.log"))
    start = log.pauses[1].ts
    rows = pause_rows("node1", log, log.pauses, start, start + 2.0)
    nodes = {"node1": NodeGc(log="/ei/repository/logs/gc.log", format="jdk8",
                             collector="Parallel", pauses=5, throughput_pct=99.5),
             "node2": NodeGc(warning="node2: GC log not read (no route)")}
    write_gc_file(tmp_path / GC_FILE, rows, nodes)
    table, facts = read_gc_file(tmp_path / GC_FILE)
    assert table.num_rows == 5
    assert table.column("in_window").to_pylist() == [False, True, True, True, False]
    assert table.column("kind").to_pylist()[-1] == "full"
    assert facts["node1"]["throughput_pct"] == 99.5 and facts["node2"]["warning"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in facts["node1"].values())
