"""Generator efficiency: what eiperf's own machinery costs the load it can make.

Measured side by side in one run, against the testbed nginx's static location (`/static` on
the status port: nginx answers itself, no node involved, so the generator is the bottleneck):

- `eiperf run --scenario static` with everything on (per-request recorder, response checks,
  collector process, PID tracking), and
- a plain minimal FastHttpUser locustfile (written into a temp dir) GETting the same URL,
  with the same users, spawn rate, duration and Locust process count;

and prints eiperf's requests/s divided by the plain one's (target >= 0.95), and the same
comparison by CPU time per request of each leg's whole process tree (Locust; for eiperf also
its orchestrator and collector process), which other work on a shared machine disturbs far
less than throughput. Every leg is
rated the same way, from outside: nginx's own stub_status request counter, read by the bench
once the load has started and ramped (1 s) and again 1 s before the leg ends -- the requests
nginx served per second of steady load. (Locust's own Requests/s divides by a span that
depends on how each run stops, so it is not comparable between the two.) The legs alternate
(plain, eiperf, eiperf, plain, ...) so drift on a shared machine hits both alike. Then `wrk`
on the same URL, for scale; when wrk is missing the bench says how to install it and skips
that line. The bench starts its own testbed on free ports and stops it.

    .venv/bin/python bench/bench_generator.py [--seconds 10] [--users 20] [--processes 1]
                                               [--pairs 2]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_testbed  # noqa: E402

TARGET = 0.95
PLAIN_LOCUSTFILE = '''\
from locust import task
from locust.contrib.fasthttp import FastHttpUser


class Plain(FastHttpUser):
    @task
    def static(self):
        self.client.get("/static", name="static")
'''


class NginxCounter:
    """nginx's stub_status `requests` counter, read over one kept-alive connection."""

    def __init__(self, status_url: str) -> None:
        import http.client

        u = urlsplit(status_url)
        self.path = u.path or "/"
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)

    def read(self) -> tuple[float, int]:
        """(monotonic time, requests nginx has served so far)."""
        self.conn.request("GET", self.path)
        body = self.conn.getresponse().read().decode()
        at = time.monotonic()
        m = re.search(r"server accepts handled requests\s+\d+\s+\d+\s+(\d+)", body)
        if not m:
            raise RuntimeError(f"{self.path}: not a stub_status page: {body[:80]!r}")
        return at, int(m.group(1))

    def close(self) -> None:
        self.conn.close()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, as of now."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def steady_rate(proc: subprocess.Popen, counter: NginxCounter, seconds: float,
                what: str) -> dict[str, float]:
    """While `proc` makes steady load (from 1 s after the load starts until 1 s before its
    planned end): requests/s nginx served, and the CPU the whole process tree spent per
    request (Locust, and for eiperf also its orchestrator and collector process)."""
    deadline = time.monotonic() + 120
    at, count = counter.read()
    while True:  # wait for the load: > 20 requests within a 0.2 s poll
        if proc.poll() is not None:
            raise RuntimeError(f"{what} ended before making load ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} made no load within 120 s")
        time.sleep(0.2)
        at2, count2 = counter.read()
        if count2 - count > 20:
            break
        at, count = at2, count2
    began = at
    time.sleep(max(0.0, began + 1.0 - time.monotonic()))
    cpu1 = tree_cpu_seconds(proc.pid)
    t1, c1 = counter.read()
    time.sleep(max(0.5, began + seconds - 1.0 - time.monotonic()))
    cpu2 = tree_cpu_seconds(proc.pid)
    t2, c2 = counter.read()
    requests = max(1, c2 - c1)
    return {"rps": (c2 - c1) / (t2 - t1), "cpu_us": (cpu2 - cpu1) / requests * 1e6,
            "cpu_percent": (cpu2 - cpu1) / (t2 - t1) * 100}


def run_plain(tmp: Path, base_url: str, counter: NginxCounter, args, leg: int) -> dict:
    out = tmp / f"plain-{leg}"
    out.mkdir()
    locustfile = tmp / "plain_locustfile.py"
    locustfile.write_text(PLAIN_LOCUSTFILE)
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds:g}s",
            "--host", base_url, "--only-summary", "--loglevel", "WARNING",
            "--stop-timeout", "5"]
    if args.processes > 1:
        argv += ["--processes", str(args.processes)]
    with open(out / "locust.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=out, stdout=log, stderr=subprocess.STDOUT)
        try:
            got = steady_rate(proc, counter, args.seconds, "plain locust")
            proc.wait(args.seconds + 60)
        finally:
            if proc.poll() is None:
                proc.kill()  # by PID
                proc.wait()
    if proc.returncode != 0:
        tail = (out / "locust.log").read_text(errors="replace")[-800:]
        raise RuntimeError(f"plain locust exited {proc.returncode}: {tail}")
    return got


def run_eiperf(tmp: Path, cluster_file: str, counter: NginxCounter, args, leg: int) -> dict:
    results = tmp / f"eiperf-{leg}"
    argv = [str(Path(sys.executable).with_name("eiperf")), "run", "--cluster", cluster_file,
            "--scenario", "static", "-u", str(args.users), "-r", str(args.users),
            "-t", f"{args.seconds:g}s", "--warmup", "0", "--processes", str(args.processes),
            "--out", str(results)]
    with open(tmp / f"eiperf-{leg}.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            got = steady_rate(proc, counter, args.seconds, "eiperf run")
            proc.wait(args.seconds + 120)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # eiperf stops Locust and its collector
                proc.wait(60)
    if proc.returncode != 0:
        tail = (tmp / f"eiperf-{leg}.log").read_text(errors="replace")[-800:]
        raise RuntimeError(f"eiperf run exited {proc.returncode}: {tail}")
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    record = json.loads((run / "run.json").read_text())
    summary = record.get("summary", {})
    return {**got, "recorded": record["generator"]["requests"],
            "exact_rps": summary.get("throughput_rps") or float("nan"),
            "generator_cpu": summary.get("generator_cpu_percent_mean") or float("nan"),
            "metrics": (run / "metrics.parquet").exists()}


def run_wrk(url: str, counter: NginxCounter, args) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    argv = [wrk, "-t", str(args.processes), "-c", str(args.users), "-d", f"{args.seconds:g}s",
            url]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = steady_rate(proc, counter, args.seconds, "wrk")
        proc.wait(args.seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()  # by PID
            proc.wait()
    return got["rps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each leg")
    parser.add_argument("--users", type=int, default=20, help="Locust users (wrk connections)")
    parser.add_argument("--processes", type=int, default=1,
                        help="Locust processes in both legs (wrk threads)")
    parser.add_argument("--pairs", type=int, default=2,
                        help="plain/eiperf pairs, alternating order (default 2)")
    args = parser.parse_args()
    from testbed import manager

    with tempfile.TemporaryDirectory(prefix="eiperf-bench-generator-") as tmp_name:
        tmp = Path(tmp_name)
        tb = tmp / "testbed"
        print(f"starting a 2-node testbed in {tb} ...", flush=True)
        cluster = start_testbed(tb, 2)
        try:
            status = urlsplit(cluster.load_balancer.status_url)
            base = f"{status.scheme}://{status.netloc}"
            url = base + "/static"
            print(f"target {url}: {args.users} users, {args.processes} Locust process(es), "
                  f"{args.seconds:g} s per leg, {args.pairs} pair(s)", flush=True)
            counter = NginxCounter(cluster.load_balancer.status_url)
            plain, ours = [], []
            for pair in range(args.pairs):
                order = ("plain", "eiperf") if pair % 2 == 0 else ("eiperf", "plain")
                for kind in order:
                    if kind == "plain":
                        r = run_plain(tmp, base, counter, args, pair)
                        plain.append(r)
                        extra = ""
                    else:
                        r = run_eiperf(tmp, cluster.source, counter, args, pair)
                        ours.append(r)
                        extra = (f"  (its own exact count: {r['exact_rps']:.0f} req/s over the "
                                 f"measured window, generator CPU {r['generator_cpu']:.0f} %)")
                    print(f"  pair {pair + 1} {kind:<6}: {r['rps']:8.0f} req/s, "
                          f"{r['cpu_us']:5.0f} CPU us/request ({r['cpu_percent']:3.0f} % CPU)"
                          f"{extra}", flush=True)
            wrk_rps = run_wrk(url, counter, args)
            counter.close()
        finally:
            manager.down(tb, progress=lambda m: None)

    ratios = [o["rps"] / p["rps"] for o, p in zip(ours, plain, strict=True)]
    ratio = statistics.median(ratios)
    verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
    mean_plain = statistics.fmean(p["rps"] for p in plain)
    mean_ours = statistics.fmean(o["rps"] for o in ours)
    print(f"generator efficiency ({args.processes} process(es), {args.users} users, "
          f"{args.seconds:g} s legs):")
    print(f"  eiperf run (recorder + collectors): {mean_ours:8.0f} req/s (mean of {len(ours)})")
    print(f"  plain FastHttpUser locustfile     : {mean_plain:8.0f} req/s (mean of {len(plain)})")
    print(f"  ratio eiperf / plain              : {ratio:.3f} (median of pairs "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; target >= {TARGET}: {verdict})")
    cpu_ratio = statistics.median(p["cpu_us"] / o["cpu_us"] for o, p in zip(ours, plain,
                                                                             strict=True))
    print(f"  CPU per request, plain / eiperf   : {cpu_ratio:.3f} (median of pairs; the same "
          f"comparison, insensitive to other work on the machine)")
    cpu = [o["generator_cpu"] for o in ours]
    print(f"  eiperf's generator CPU (collector): {', '.join(f'{c:.0f} %' for c in cpu)} of "
          f"{100 * args.processes} % -- Locust is the bottleneck when this is near the top")
    recorded = ", ".join(f"{o['recorded']:,}" for o in ours)
    print(f"  requests recorded per eiperf leg: {recorded}; "
          f"metrics.parquet written: {all(o['metrics'] for o in ours)}")
    if wrk_rps is None:
        print("  wrk: not installed, ratio skipped (Debian: apt-get install wrk)")
    else:
        print(f"  wrk ({args.processes} thread(s), {args.users} connections): {wrk_rps:8.0f} req/s;"
              f" eiperf / wrk = {mean_ours / wrk_rps:.3f}, plain Locust / wrk = "
              f"{mean_plain / wrk_rps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
