"""The open-model executor: requests start at their intended times, whatever the responses do.

A closed model (users that wait for each response) sends less when the cluster stalls, so a
stall is under-counted: coordinated omission, as wrk2 and HdrHistogram describe it. Here each
Locust process runs one `OpenArrivals` user -- an arrival *stream* carrying 1/streams of the
intended rate (`loadtests.arrivals`). At each intended time it hands one request to a pool of
greenlets and goes on to the next, without waiting. The pool is the concurrency cap: an
arrival that finds it full is not sent and is counted as dropped (k6's dropped_iterations).

Every request's event carries its intended start in its context (`INTENDED_KEY`); the recorder
stores it, and measures the request's latency from it (service time from the send is kept).
The requests themselves are the scenarios' own tasks (`loadtests.scenarios`), so checks,
vhosts and TLS are the same as in closed runs.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

import gevent
from gevent.local import local
from gevent.pool import Pool
from locust import User, constant, task
from locust.exception import StopUser

from loadtests.arrivals import ArrivalCounts, RateProfile, arrival_times
from loadtests.recorder import INTENDED_KEY
from loadtests.scenarios import EiUser

log = logging.getLogger(__name__)
_request = local()  # the intended start of the request this greenlet sends

#: The parsed option through which a master hands its streams' sending time to its workers
#: (Locust sends its workers the options it does not know itself, with each spawn). Workers
#: Locust forks for `--processes` have no `-t` of their own.
DURATION_OPTION = "eiperf_open_duration"


@dataclass(frozen=True)
class OpenConfig:
    """The open model of a run: rate profile, arrival process, the whole run's concurrency
    cap, the test's length (s) and how many streams (Locust processes) share the load."""

    profile: RateProfile
    process: str
    max_concurrency: int
    duration: float
    streams: int = 1

    @property
    def stream_cap(self) -> int:
        return max(1, math.ceil(self.max_concurrency / max(1, self.streams)))


counts = ArrivalCounts()


def _open_context(self: EiUser) -> dict[str, object]:
    return {"scenario": self.scenario, INTENDED_KEY: getattr(_request, "at", None)}


def open_scenario(cls: type[EiUser], cap: int) -> type[EiUser]:
    """`cls` made to send open-model requests: its events carry the intended start, and its
    connection pool allows `cap` requests at once."""
    return type(f"Open{cls.__name__}", (cls,),
                {"abstract": True, "concurrency": cap, "context": _open_context})


class OpenArrivals(User):
    """One arrival stream (see the module docstring); `configure_open_model` arms it."""

    abstract = True
    wait_time = constant(0)
    config: OpenConfig | None = None
    scenarios: tuple[type[EiUser], ...] = ()
    weights: tuple[int, ...] = ()

    def __init__(self, environment) -> None:
        super().__init__(environment)
        assert self.config is not None, "configure_open_model first"
        cap = self.config.stream_cap
        self._senders = [(open_scenario(c, cap)(environment), c.tasks[0]) for c in self.scenarios]
        self._pool = Pool(cap)

    @task
    def arrive(self) -> None:
        cfg = self.config
        assert cfg is not None
        rng = random.Random()
        counts.cap = cfg.stream_cap
        pool, senders = self._pool, self._senders
        cum = [sum(self.weights[: i + 1]) for i in range(len(self.weights))]
        duration = getattr(self.environment.parsed_options, DURATION_OPTION, None) or cfg.duration
        t0 = time.time()
        for offset in arrival_times(cfg.profile, duration, cfg.process,
                                    share=1.0 / max(1, cfg.streams), phase=rng.random(), rng=rng):
            intended = t0 + offset
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            counts.planned += 1
            if pool.full():
                counts.dropped += 1
                continue
            sender = senders[0] if len(senders) == 1 else rng.choices(senders, cum_weights=cum)[0]
            pool.spawn(self._send, sender, intended)
            counts.sent += 1
            counts.peak_in_flight = max(counts.peak_in_flight, len(pool))
        pool.join()
        raise StopUser()

    @staticmethod
    def _send(sender: tuple[EiUser, object], intended: float) -> None:
        user, method = sender
        _request.at = intended
        try:
            method(user)  # type: ignore[operator]
        except Exception:  # a scenario bug must not end the stream; Locust logs its own
            log.exception("open-model request failed")

    def on_stop(self) -> None:
        counts.cut += len(self._pool)
        self._pool.kill(block=False)


def configure_open_model(cfg: OpenConfig, scenarios: list[type[EiUser]]) -> type[OpenArrivals]:
    """Arm `OpenArrivals` for this process: the config and the active scenarios, by weight."""
    OpenArrivals.config = cfg
    OpenArrivals.scenarios = tuple(scenarios)
    OpenArrivals.weights = tuple(max(1, int(c.weight)) for c in scenarios)
    OpenArrivals.abstract = False
    counts.__init__()  # type: ignore[misc]
    return OpenArrivals
