"""The collector contract: what every source of node metrics promises the sampling loop.

A collector turns "now" into rows of the long metrics table (`eicore.results.metrics_schema`:
ts, node, source, metric, value). The sampling loop (`loadtests.collectors.process`) calls
`start()` once, `sample(now)` once per tick, and `close()` at the end; every implementation
passes the shared suite in tests/loadtests/test_collectors.py.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from typing import NamedTuple

log = logging.getLogger("eiperf.collectors")


class Sample(NamedTuple):
    """One row of metrics.parquet: a value of one metric of one node at one time."""

    ts: float  # epoch seconds: the `now` the round was sampled for
    node: str  # node name, or "host" / "generator" / "lb" / "collector"
    source: str  # the collector's `name`: psutil | jmx | nginx | collector
    metric: str
    value: float


class Collector(ABC):
    """A source of metrics, sampled once per tick while a load test runs.

    Contract (each implementation passes tests/loadtests/test_collectors.py):

    - `name` is the `source` column of every row it returns.
    - `start()` opens whatever connections it needs. An unreachable target is not an error
      here either: it shows up as gaps in `sample`. Only a broken setup raises (e.g. a missing
      dependency).
    - `sample(now)` returns the rows for one round, all with `ts == now` (epoch seconds).
      It never raises because a target is down, hung or gone: it records nothing for that
      target (a gap), adds one to `gaps` and `gaps_by_node[node]` per target and round, and
      logs once when a target goes away and once when it comes back. A round returns within
      about a second whatever the targets do.
    - Counters (GC counts, nginx requests, ...) are cumulative as the target reports them;
      a metric name ending in `_per_s` is a rate over the time since the previous round.
      A rate or a percent that needs two rounds is left out of the first one.
    - `close()` frees connections; it is idempotent and never raises.
    """

    name: str = "collector"

    def __init__(self) -> None:
        self.gaps = 0
        self.gaps_by_node: Counter[str] = Counter()
        self._down: set[str] = set()

    def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections (nothing to open by default)."""

    @abstractmethod
    def sample(self, now: float) -> list[Sample]:
        """The rows of one round; see the class contract."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free connections (nothing to free by default)."""

    # ------------------------------------------------------------------ helpers for subclasses

    def gap(self, node: str, reason: str) -> None:
        """Record that `node` gave nothing this round; log only when it has just gone away."""
        self.gaps += 1
        self.gaps_by_node[node] += 1
        if node not in self._down:
            self._down.add(node)
            log.warning("%s: no samples from %s (%s)", self.name, node, reason)

    def answered(self, node: str) -> None:
        """Record that `node` gave samples this round; log when it comes back after gaps."""
        if node in self._down:
            self._down.discard(node)
            log.warning("%s: %s answers again", self.name, node)

    def row(self, now: float, node: str, metric: str, value: float) -> Sample:
        return Sample(now, node, self.name, metric, float(value))

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
