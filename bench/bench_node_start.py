"""The testbed node on JDK 11 and JDK 17: start-to-ready against a bare JVM's first response,
and requests/s per core at 1 KB.

Prints, per JDK, measured in one run (medians of --repeat):
- a bare JVM start to its first HTTP response (a minimal ServerSocket responder compiled into
  a temp folder: the floor any JVM HTTP service pays here),
- the node's start-to-ready through its own bin/integrator.sh (port answers, log says started),
  and its ratio to the bare JVM (target <= 1.3x on JDK 11); side by side, the same node started
  without its class-data archive (lib/eiperf-node.jsa moved aside; testbed/node_cds.py),
- where that time goes (medians, from the node's own log timestamps): script and JVM up to the
  node's first line, its start-up up to `WSO2 Carbon started`, and until node_control saw it,
- the node's requests/s per core: wrk POSTing 1 KB to SampleProxy on the node's HTTP port,
  divided by the node's CPU use (cores busy, from /proc via psutil) over the same seconds.

    .venv/bin/python bench/bench_node_start.py [--repeat 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eicore import node_control  # noqa: E402
from eicore.transport import LocalTransport  # noqa: E402
from testbed import manager  # noqa: E402
from testbed.node_build import (  # noqa: E402
    NODE_ARCHIVE,
    TARGET_RELEASE,
    find_javac,
    resolve_node_java,
)
from tests.conftest import free_testbed_ports  # noqa: E402

RESPONDER = """
import java.io.*;
import java.net.*;
public final class Responder {
    public static void main(String[] a) throws Exception {
        try (ServerSocket s = new ServerSocket(Integer.parseInt(a[0]), 50, InetAddress.getLoopbackAddress())) {
            while (true) {
                try (Socket c = s.accept()) {
                    c.getInputStream().read(new byte[4096]);
                    c.getOutputStream().write("HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok".getBytes());
                }
            }
        }
    }
}
"""
WRK_LUA = 'wrk.method = "POST"\nwrk.body = "<m>" .. string.rep("x", 1017) .. "</m>"\n' \
          'wrk.headers["Content-Type"] = "text/xml"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def bare_first_response(java: str, classes: Path) -> float:
    """Seconds from launching the minimal responder to its first 200."""
    port = free_port()
    t = time.perf_counter()
    p = subprocess.Popen([java, "-cp", str(classes), "Responder", str(port)])
    try:
        while not answers(port):
            time.sleep(0.005)
        return time.perf_counter() - t
    finally:
        p.terminate()
        p.wait()


LOG_TIME = re.compile(rb"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", re.M)
PHASES = ("script+JVM", "node start", "seen ready")


def node_start(node) -> tuple[float, tuple[float, float, float]]:
    """Seconds from `integrator.sh start` to the node ready (node_control's own readiness), and
    its phases: to the node's first log line, to its last (`WSO2 Carbon started`), to ready."""
    t = LocalTransport()
    node_control.stop_node(t, node)
    offset = t.size(node.log_file)
    wall, start = time.time(), time.perf_counter()
    node_control.start_node(t, node)
    total = time.perf_counter() - start
    stamps = [datetime.datetime.strptime(m.decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp() - wall
              for m in LOG_TIME.findall(t.read_from(node.log_file, offset))]
    first, last = stamps[0], stamps[-1]
    return total, (first, last - first, total - last)


def per_core(node, seconds: float, lua: Path) -> tuple[float, float]:
    """(requests/s, requests/s per busy core) of wrk against the node, after a 2 s warm-up."""
    url = f"http://127.0.0.1:{node.http_port}/services/SampleProxy"
    wrk = ["wrk", "-t1", "-c8", "-s", str(lua), url]
    subprocess.run([*wrk[:1], "-d2s", *wrk[1:]], capture_output=True, check=True)
    proc = psutil.Process(node_control.read_pid(LocalTransport(), node))
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
    out = subprocess.run([*wrk[:1], f"-d{seconds:g}s", *wrk[1:]], capture_output=True,
                         text=True, check=True).stdout
    cores = (sum(proc.cpu_times()[:2]) - cpu0) / (time.perf_counter() - t0)
    rps = float(next(line.split()[1] for line in out.splitlines()
                     if line.startswith("Requests/sec:")))
    return rps, rps / cores if cores else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="start-ups per leg (default 5)")
    ap.add_argument("--seconds", type=float, default=5, help="wrk seconds per JDK (default 5)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench_node_start: wrk not found; apt-get install wrk", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-node-start-") as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "Responder.java").write_text(RESPONDER)
        subprocess.run([find_javac(), "--release", str(TARGET_RELEASE), "-d", str(tmp_dir),
                        str(tmp_dir / "Responder.java")], check=True)
        lua = tmp_dir / "post1k.lua"
        lua.write_text(WRK_LUA)
        for jdk in ("11", "17"):
            java = resolve_node_java(jdk)
            bare = statistics.median(bare_first_response(java.java, tmp_dir)
                                     for _ in range(args.repeat))
            d = tmp_dir / f"tb{jdk}"
            port_base, offset_base = free_testbed_ports(1)
            cluster = manager.up(d, nodes=1, port_base=port_base, offset_base=offset_base,
                                 progress=lambda m: None, java=jdk)
            try:
                node = cluster.nodes[0]
                archive = Path(node.ei_home) / "lib" / NODE_ARCHIVE
                if not archive.is_file():  # eiperf up said why
                    raise SystemExit(f"bench_node_start: no {archive} after eiperf up")
                starts, plain = [], []
                for _ in range(args.repeat):  # interleaved: both legs see the same machine
                    starts.append(node_start(node))
                    archive.rename(archive.with_suffix(".aside"))
                    try:
                        plain.append(node_start(node)[0])
                    finally:
                        archive.with_suffix(".aside").rename(archive)
                start = statistics.median(s for s, _ in starts)
                phases = [statistics.median(p[i] for _, p in starts) for i in range(len(PHASES))]
                node_start(node)  # the wrk figures with the archive in use
                rps, rps_core = per_core(node, args.seconds, lua)
            finally:
                manager.down(d, progress=lambda m: None)
            rows.append((f"JDK {java.version}", bare, start, start / bare,
                         statistics.median(plain), rps, rps_core, phases))
    print(f"{'':16} {'bare JVM 1st resp':>18} {'node start-ready':>17} {'ratio':>6} "
          f"{'no archive':>11} {'node req/s 1KB':>15} {'req/s per core':>15}")
    for name, bare, start, ratio, plain, rps, rps_core, _ in rows:
        print(f"{name:16} {bare * 1000:15.0f} ms {start * 1000:14.0f} ms {ratio:5.2f}x "
              f"{plain * 1000:8.0f} ms {rps:15.0f} {rps_core:15.0f}")
    for name, *_, phases in rows:
        print(f"{name:16} start-to-ready: " + ", ".join(
            f"{what} {ms * 1000:.0f} ms" for what, ms in zip(PHASES, phases, strict=True)))
    print(f"target: node start-to-ready <= 1.3x the bare JVM on JDK 11 "
          f"({'met' if rows[0][3] <= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
