"""Generator efficiency: what eiperf's own machinery costs the load it can make.

Measured side by side in one run, against the testbed nginx's static location (`/static` on
the status port: nginx answers itself, no node involved, so the generator is the bottleneck):

- `eiperf run --scenario static` with everything on (per-request recorder, response checks,
  collector process, PID tracking), and
- a plain minimal FastHttpUser locustfile (written into a temp dir) GETting the same URL,
  with the same users, spawn rate, duration and Locust process count;

and compares them by CPU time per request of each leg's whole process tree (Locust; for eiperf
also its orchestrator and collector process): plain / eiperf, target >= 0.95 -- which other work
on a shared machine disturbs far less than throughput -- and by requests/s (eiperf / plain). It
also gives the same CPU ratio for the Locust process alone, so what the recorder and scenario
checks cost (inside Locust) is told apart from what the collector and orchestrator cost (a fixed
cost per second, not per request). Every leg is
rated the same way, from outside: nginx's own stub_status request counter, read by the bench
once the load has started and ramped (1 s) and again 1 s before the leg ends -- the requests
nginx served per second of steady load. (Locust's own Requests/s divides by a span that
depends on how each run stops, so it is not comparable between the two.) The legs alternate
(plain, eiperf, eiperf, plain, ...) so drift on a shared machine hits both alike.

One pair is noisy (pairs of 10 s legs were seen from 0.69 to 1.21 by throughput, on a machine
running a test suite beside), so each figure is the median over `--pairs` pairs (default 8)
with its spread (min..max) and a 95 % bootstrap interval of the median (pairs resampled,
seeded); the verdict is "meets target" only when the whole interval is at or above the target,
"below target" when it is wholly below, else "unclear": run more pairs (or on a quiet machine);
under 5 pairs it is "unknown". On the VMs these figures come from, the machine's state moves
them too: there, work that sleeps between bursts (a collector round each second, a batch of
rows every 5 s) can cost several times its warm CPU time for minutes at a stretch (a 1 s
sleep made a `sum(range(1000))` take 1.2 ms instead of 13 µs, and a JMX round 30 ms instead
of 4), and plain Locust's own cost per request moved from 114 to 151 µs between two runs an
hour apart. Use 40 pairs for a verdict, and compare runs made close together.

Then `wrk` on the same URL (`make bench` installs it: scripts/install_system_deps.sh --bench),
for scale: requests/s and CPU per request of a C load generator on the same connections. The
bench starts its own testbed on free ports and stops it.

    .venv/bin/python bench/bench_generator.py [--seconds 10] [--users 20] [--processes 1]
                                               [--pairs 8]
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
CONFIDENCE = 0.95
#: Fewer pairs than this give no interval worth a verdict ("unknown").
MIN_PAIRS = 5
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


def _is_locust(cmdline: list[str]) -> bool:
    """A `python -m locust ...` process (or one Locust forked from it: same command line)."""
    return any(a == "-m" and b == "locust" for a, b in zip(cmdline, cmdline[1:]))


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process and all its descendants, as of now: all of
    them, and the Locust processes among them."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    total = locust = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            cmdline = p.cmdline()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
        if _is_locust(cmdline):
            locust += t.user + t.system
    return total, locust


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
    cpu1, locust1 = tree_cpu_seconds(proc.pid)
    t1, c1 = counter.read()
    time.sleep(max(0.5, began + seconds - 1.0 - time.monotonic()))
    cpu2, locust2 = tree_cpu_seconds(proc.pid)
    t2, c2 = counter.read()
    requests = max(1, c2 - c1)
    return {"rps": (c2 - c1) / (t2 - t1), "cpu_us": (cpu2 - cpu1) / requests * 1e6,
            "locust_cpu_us": (locust2 - locust1) / requests * 1e6,
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


def run_wrk(url: str, counter: NginxCounter, args) -> dict | None:
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
    return got


def median_interval(values: list[float], confidence: float = CONFIDENCE, n_boot: int = 10_000,
                    seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high): the median of `values` and its percentile bootstrap interval at
    `confidence` (the values resampled with replacement `n_boot` times, seeded). With one
    value the interval is that value: nothing says how noisy it is."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    med = float(np.median(x))
    if len(x) < 2:
        return med, med, med
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    alpha = (1 - confidence) / 2
    return med, float(np.quantile(meds, alpha)), float(np.quantile(meds, 1 - alpha))


def verdict(low: float, high: float, target: float, pairs: int) -> str:
    """Where a ratio's interval lies against its target (higher is better); "unclear" when
    it straddles the target -- more pairs would tell -- and "unknown" below MIN_PAIRS."""
    if pairs < MIN_PAIRS:
        return f"unknown: {pairs} pair(s) are too few for an interval, give --pairs {MIN_PAIRS} or more"
    if low >= target:
        return "meets target"
    if high < target:
        return "below target"
    return "unclear: the interval straddles the target, run more pairs (--pairs)"


def format_ratio(label: str, ratios: list[float], target: float | None = None) -> list[str]:
    """Lines for one paired ratio: median, bootstrap interval, spread, pairs, verdict."""
    med, low, high = median_interval(ratios)
    lines = [f"  {label}: {med:.3f} median of {len(ratios)} pairs, "
             f"{CONFIDENCE:.0%} interval {low:.3f}..{high:.3f}, "
             f"spread {min(ratios):.3f}..{max(ratios):.3f}"]
    if target is not None:
        lines.append(f"    target >= {target}: {verdict(low, high, target, len(ratios))}")
    lines.append(f"    pairs: {', '.join(f'{r:.3f}' for r in ratios)}")
    return lines


def format_report(args, plain: list[dict], ours: list[dict], wrk: dict | None) -> list[str]:
    """The bench's summary, as lines."""
    pairs = list(zip(ours, plain, strict=True))
    mean_plain = statistics.fmean(p["rps"] for p in plain)
    mean_ours = statistics.fmean(o["rps"] for o in ours)
    lines = [f"generator efficiency ({args.processes} process(es), {args.users} users, "
             f"{args.seconds:g} s legs, {len(pairs)} pairs):",
             f"  eiperf run (recorder + collectors): {mean_ours:8.0f} req/s, "
             f"{statistics.median(o['cpu_us'] for o in ours):5.0f} CPU us/request (median)",
             f"  plain FastHttpUser locustfile     : {mean_plain:8.0f} req/s, "
             f"{statistics.median(p['cpu_us'] for p in plain):5.0f} CPU us/request (median)"]
    lines += format_ratio("CPU per request, plain / eiperf (whole process trees)",
                          [p["cpu_us"] / o["cpu_us"] for o, p in pairs], TARGET)
    lines += format_ratio("CPU per request, plain / eiperf (the Locust process alone)",
                          [p["locust_cpu_us"] / o["locust_cpu_us"] for o, p in pairs])
    lines += format_ratio("throughput, eiperf / plain (disturbed by other work on the machine)",
                          [o["rps"] / p["rps"] for o, p in pairs])
    cpu = [o["generator_cpu"] for o in ours]
    lines.append(f"  eiperf's generator CPU (collector): {', '.join(f'{c:.0f} %' for c in cpu)} "
                 f"of {100 * args.processes} % -- Locust is the bottleneck when this is near "
                 "the top")
    recorded = ", ".join(f"{o['recorded']:,}" for o in ours)
    lines.append(f"  requests recorded per eiperf leg: {recorded}; "
                 f"metrics.parquet written: {all(o['metrics'] for o in ours)}")
    if wrk is None:
        lines.append("  wrk: not installed, reference skipped (make bench-deps, or Debian: "
                     "apt-get install wrk)")
    else:
        lines.append(f"  wrk ({args.processes} thread(s), {args.users} connections): "
                     f"{wrk['rps']:8.0f} req/s, {wrk['cpu_us']:5.1f} CPU us/request; "
                     f"eiperf / wrk = {mean_ours / wrk['rps']:.3f}, plain Locust / wrk = "
                     f"{mean_plain / wrk['rps']:.3f} (req/s)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each leg")
    parser.add_argument("--users", type=int, default=20, help="Locust users (wrk connections)")
    parser.add_argument("--processes", type=int, default=1,
                        help="Locust processes in both legs (wrk threads)")
    parser.add_argument("--pairs", type=int, default=8,
                        help="plain/eiperf pairs, alternating order (default 8; the figures "
                             "are medians over them, with a bootstrap interval)")
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
                          f"{r['cpu_us']:5.0f} CPU us/request ({r['cpu_percent']:3.0f} % CPU; "
                          f"Locust {r['locust_cpu_us']:5.0f} us){extra}", flush=True)
            wrk = run_wrk(url, counter, args)
            counter.close()
        finally:
            manager.down(tb, progress=lambda m: None)

    for line in format_report(args, plain, ours, wrk):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
