"""eiperf's locustfile: usable by plain Locust and driven by `eiperf run`.

    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:18280
    locust -f loadtests/locustfile.py --headless --cluster cluster.toml --weights soap_http=3,soap_https=1 \
           --shape step -u 100 -t 2m --processes 2 --eiperf-out /tmp/run

It works in every Locust mode: standalone, `--processes`, and `--master` with `--worker`s on
other hosts (`eiperf run --workers`, `[[generators]]`). A standalone process writes its own
request rows; a worker sends them to its master in Locust's reports, and the master writes them
all (with `--eiperf-out`, given to the master only) and marks workers it lost mid-test.

Everything here is wiring on Locust's own events (init_command_line_parser, init, test_start,
test_stop, request, report_to_master, worker_report, heartbeat_sent, quitting); the scenarios,
shapes, recorder and worker reports live in their modules.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import gevent
from locust import LoadTestShape, events
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from eicore.cluster import load_cluster
from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text
from eicore.results import TIMELINE_JSON
from loadtests.messages import parse_size
from loadtests.open_model import DURATION_OPTION, OpenConfig, configure_open_model, counts
from loadtests.recorder import REPORT_KEY, RequestRecorder

# The scenario classes must be names of this module for Locust to find them.
from loadtests.scenarios import (  # noqa: F401
    ConsoleUser,
    DelayedUser,
    JsonUser,
    ScenarioConfig,
    SoapHttpsUser,
    SoapHttpUser,
    StaticUser,
    configure_scenarios,
    parse_weights,
)
from loadtests.shapes import DRAIN_S, OpenShape, build_shape
from loadtests.warmup import (
    DEFAULT_WARMUP_MAX_S,
    WORKER_LAG_S,
    WarmupRule,
    complete_seconds,
    decide,
)
from loadtests.worker_reports import WorkerReports

#: Seconds the load waits at most for --eiperf-start-gate (then starts, saying so).
START_GATE_S = 60.0

_state: dict = {"recorder": None, "reports": None, "timeline": [], "t0": None, "shape": None}


@events.init_command_line_parser.add_listener
def add_eiperf_options(parser) -> None:
    g = parser.add_argument_group("eiperf", "options added by eiperf's locustfile")
    g.add_argument("--cluster", default=os.environ.get("EIPERF_CLUSTER"),
                   help="cluster.toml: picks the HTTP, HTTPS and console vhosts and the CA")
    g.add_argument("--weights", default="soap_http=1",
                   help="scenario weights, e.g. soap_http=3,soap_https=1,json=1,console=0,delayed=0,static=0")
    g.add_argument("--message-size", default="1KB", help="1KB, 10KB, 100KB or bytes")
    g.add_argument("--shape", default="none",
                   choices=["none", "constant", "step", "spike", "soak", "arrival", "open"],
                   help="load shape; none = Locust's own -u/-r/-t; open = the open model "
                        "(requests at intended times, -u caps the requests in flight)")
    g.add_argument("--step-users", type=int, default=None, help="step shape: users added per step")
    g.add_argument("--step-time", type=float, default=None, help="step shape: seconds per step")
    g.add_argument("--spike-users", type=int, default=None, help="spike shape: users at the peak")
    g.add_argument("--arrival-rate", type=float, default=None,
                   help="arrival and open shapes: requests/s")
    g.add_argument("--rate-profile", default=None,
                   help="open shape: requests/s over time, second:rate points, linear between "
                        "them (e.g. 0:50,10:200 ramps; 0:100,20:100,20:300 steps at 20 s)")
    g.add_argument("--arrivals", default="constant", choices=["constant", "poisson"],
                   help="open shape: evenly spaced or Poisson arrivals")
    g.add_argument("--open-streams", type=int, default=1,
                   help="open shape: Locust processes sharing the rate (eiperf sets it)")
    g.add_argument("--warmup", type=_warmup_option, default=0.0,
                   help="seconds at the start left out of Locust's statistics; auto: until "
                        "throughput is stable (loadtests/warmup.py), at most --warmup-max "
                        "seconds, and then -t minus --warmup-max more are measured")
    g.add_argument("--warmup-max", type=float, default=DEFAULT_WARMUP_MAX_S,
                   help=f"--warmup auto: its bound in seconds (default {DEFAULT_WARMUP_MAX_S:g})")
    g.add_argument("--eiperf-out", default=None,
                   help="folder for per-request rows (one Parquet file per process or worker) "
                        "and timeline.json; with --master, give it to the master only")
    g.add_argument("--eiperf-worker", default=None,
                   help="this process's name in the rows' worker column (default <host>-<pid>)")
    g.add_argument("--eiperf-start-gate", default=None, metavar="FILE",
                   help=f"start the load only once FILE exists (at most {START_GATE_S:g} s): "
                        "`eiperf run` starts Locust while its collector gets ready, and opens "
                        "the gate once the collector has sampled")


def _warmup_option(text: str) -> float | str:
    """--warmup: seconds, or "auto"."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither seconds nor auto") from None


class EiperfShape(LoadTestShape):
    """Delegates to the shape chosen with --shape (see loadtests/shapes.py)."""

    use_common_options = True

    def tick(self):
        shape = _state["shape"]
        if shape is None:
            return None
        t = self.get_run_time()
        if isinstance(shape, OpenShape) and t >= shape.duration and self.runner.user_count == 0:
            return None  # every stream has sent its last arrival and had its answers
        return shape.users_at(t)


def _wait_for_gate(path: str) -> None:
    """Hold the test's start until `path` exists (the Locust process and its workers start up
    meanwhile), bounded by START_GATE_S."""
    deadline = time.monotonic() + START_GATE_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.stderr.write(f"eiperf locustfile: {path} did not appear within "
                             f"{START_GATE_S:g} s; starting the load anyway\n")
            return
        gevent.sleep(0.01)


def _fail(message: str) -> None:
    sys.stderr.write(f"eiperf locustfile: error: {message}\n")
    sys.exit(2)


@events.init.add_listener
def on_init(environment, runner=None, **_kw) -> None:
    opts = environment.parsed_options
    if opts is None:  # used as a library without Locust's parser
        return
    try:
        cluster = load_cluster(opts.cluster) if opts.cluster else None
        weights = parse_weights(opts.weights)
        size = parse_size(opts.message_size)
        shape = None
        if opts.shape != "none":
            duration = float(opts.run_time or 60)
            shape = build_shape(opts.shape, duration, int(opts.num_users or 10),
                                float(opts.spawn_rate or 10), step_users=opts.step_users,
                                step_time=opts.step_time, spike_users=opts.spike_users,
                                arrival_rate=opts.arrival_rate, rate_profile=opts.rate_profile,
                                arrivals=opts.arrivals, streams=opts.open_streams)
        per_user = getattr(shape, "per_user_rate", None)
        active = configure_scenarios(ScenarioConfig(weights, size, per_user), cluster, opts.host)
        if isinstance(shape, OpenShape):
            active = [configure_open_model(OpenConfig(
                shape.profile, shape.process, shape.max_concurrency, shape.duration,
                shape.streams), active)]
            setattr(opts, DURATION_OPTION, shape.duration)  # a master's reaches its workers
            # Locust's -t is a hard stop: leave the streams time to hear their last answers
            # (the shape ends the test as soon as they have)
            opts.run_time = int(shape.duration + DRAIN_S)
    except (EiperfError, ValueError) as e:
        _fail(str(e))
        return
    if cluster is not None:
        # Locust gives every user class --host when it spawns them; with a cluster file each
        # class already has its own vhost's URL (--host, when given, is the HTTP vhost's).
        environment.host = None
    environment.user_classes[:] = active
    _state["shape"] = shape
    if shape is None:
        environment.shape_class = None
    if opts.eiperf_start_gate and not isinstance(runner, WorkerRunner):
        _wait_for_gate(opts.eiperf_start_gate)
    if isinstance(runner, MasterRunner):
        if opts.eiperf_out:
            reports = _state["reports"] = WorkerReports(
                Path(opts.eiperf_out), node_of=cluster.node_for_upstream if cluster else None)
            environment.events.worker_report.add_listener(reports.on_worker_report)
            environment.events.heartbeat_sent.add_listener(reports.on_heartbeat)
        return
    # A worker learns whether its master wants rows only from the master's options (they
    # arrive with the first spawn, after init): it records, and asks at each report.
    worker = isinstance(runner, WorkerRunner)
    if opts.eiperf_out or worker:
        rec = RequestRecorder(None if worker else Path(opts.eiperf_out),
                              upstream_header=cluster.load_balancer.upstream_header if cluster
                              else "X-Upstream-Addr",
                              node_of=cluster.node_for_upstream if cluster else None,
                              worker=opts.eiperf_worker, stream=worker)
        _state["recorder"] = rec
        environment.events.request.add_listener(rec.on_request)
        if worker:
            def on_report_to_master(client_id, data, **_kw) -> None:
                wanted = bool(getattr(environment.parsed_options, "eiperf_out", None))
                data[REPORT_KEY] = rec.report(wanted)
                if isinstance(_state["shape"], OpenShape):
                    data[REPORT_KEY]["arrivals"] = counts.as_dict()

            environment.events.report_to_master.add_listener(on_report_to_master)


def _sample_users(runner) -> None:
    while True:
        now = time.time()
        _state["timeline"].append((now, runner.user_count))
        reports = _state["reports"]
        if reports is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
            for name in reports.check(runner.clients, STATE_MISSING, now):
                sys.stderr.write(f"eiperf locustfile: worker {name} was lost "
                                 f"({runner.worker_count} still running)\n")
        gevent.sleep(1.0)


@events.test_start.add_listener
def on_test_start(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    _state["t0"] = time.time()
    _state["timeline"] = []
    warmup = getattr(environment.parsed_options, "warmup", 0) or 0
    _state["warmup"] = None if warmup == "auto" else float(warmup)
    _state["warmup_stable"] = None
    if warmup == "auto":
        _state["warmup_greenlet"] = gevent.spawn(_auto_warmup, environment)
    elif warmup > 0:
        gevent.spawn_later(warmup, runner.stats.reset_all)
    _state["sampler"] = gevent.spawn(_sample_users, runner)


def _auto_warmup(environment) -> None:
    """--warmup auto: once a second, ask `loadtests.warmup.decide` about the complete seconds
    of throughput so far; when it says so, end the warm-up as a fixed one ends (statistics
    reset) and the test `-t` minus `--warmup-max` seconds later."""
    opts, runner = environment.parsed_options, environment.runner
    rule = WarmupRule(max_s=float(opts.warmup_max))
    lag = WORKER_LAG_S if isinstance(runner, MasterRunner) else 0.0
    t0 = _state["t0"]
    while True:
        gevent.sleep(1.0)
        now = time.time()
        decision = decide(complete_seconds(runner.stats.total.num_reqs_per_sec, t0, now, lag),
                          now - t0, rule)
        if decision is not None:
            break
    runner.stats.reset_all()
    _state["warmup"], _state["warmup_stable"] = time.time() - t0, decision.stable
    if not opts.run_time:
        return  # no -t: plain Locust runs until stopped
    duration = max(0.0, float(opts.run_time) - float(opts.warmup_max))
    shape = _state["shape"]
    if shape is not None and environment.shape_class is not None:
        _state["shape"] = dataclasses.replace(
            shape, duration=environment.shape_class.get_run_time() + duration)
    else:  # as Locust's own -t ends a test: quit headless, stop with a web UI
        gevent.spawn_later(duration, runner.quit if opts.headless else runner.stop)


@events.test_stop.add_listener
def on_test_stop(environment, **_kw) -> None:
    rec = _state["recorder"]
    if rec is not None:
        rec.flush()
    if isinstance(environment.runner, WorkerRunner) or _state["t0"] is None:
        return
    for name in ("sampler", "warmup_greenlet"):
        greenlet = _state.pop(name, None)
        if greenlet is not None:
            greenlet.kill(block=False)
    out = getattr(environment.parsed_options, "eiperf_out", None)
    if out:
        shape = _state["shape"]
        atomic_write_text(Path(out) / TIMELINE_JSON, json.dumps({
            "test_start": _state["t0"],
            "test_stop": time.time(),
            **_warmup_fields(environment.parsed_options),
            "users": _state["timeline"],
            "shape": shape.describe() if shape else None,
            **({"arrivals": counts.as_dict()} if isinstance(shape, OpenShape) else {}),
        }))


def _warmup_fields(opts) -> dict:
    """timeline.json's warm-up: its seconds; an automatic one also its bound and whether
    throughput was stable (None: the test stopped before the warm-up ended)."""
    if opts.warmup != "auto":
        return {"warmup": float(opts.warmup or 0)}
    took = _state.get("warmup")
    return {"warmup": time.time() - _state["t0"] if took is None else took,
            "warmup_auto": True, "warmup_max": float(opts.warmup_max),
            "warmup_stable": _state.get("warmup_stable")}


@events.quitting.add_listener
def on_quitting(environment, **_kw) -> None:
    # A master's own quitting listener (registered after this one, so called first: quitting
    # fires in reverse) has already collected the workers' final reports.
    rec = _state["recorder"]
    if rec is not None:
        rec.close()
    reports = _state["reports"]
    if reports is not None:
        reports.close()
