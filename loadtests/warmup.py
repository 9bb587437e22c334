"""The automatic warm-up (`--warmup auto`): warm up until throughput is stable, within a bound.

Fresh JVMs serve at about half speed and speed up for tens of seconds (JIT); a fixed warm-up
is either too short (the measured window still rises) or wasted. Here the warm-up ends when
the throughput of the last seconds holds still, or at the bound, whichever comes first.

The decision is pure -- per-second throughput samples in, a decision out -- so it is tested
without Locust. The locustfile feeds it once a second, in the Locust master (or standalone)
process, with Locust's own per-second request counts (``StatsEntry.num_reqs_per_sec`` of the
total, which a master merges from its workers' reports), and acts on it: resets Locust's
statistics as a fixed warm-up does, and ends the test ``duration`` seconds later.

Rule (``WarmupRule``): the last ``window`` complete one-second samples are stable when
  - their coefficient of variation (sample standard deviation / mean) is at most ``max_cv``,
  - their drift -- |mean of the later half - mean of the earlier half| / mean, with the
    middle sample of an odd window left out -- is at most ``max_drift`` (what is left of a
    warm-up is a rise inside the window; a CV alone misses a slow, smooth one), and
  - their mean is above zero (no requests is not a steady state).
At ``max_s`` seconds the warm-up ends anyway, marked not stable; the run's steady-state check
(``analysis.steady``) then says how the measured window went.
Defaults: 5 samples, CV <= 0.10, drift <= 0.10 (the same 10 % the steady-state check calls a
relevant change), bound 60 s. A second is complete once it is over (standalone) or, with
workers, once the workers' next report must have arrived (``WORKER_LAG_S``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Default bound of an automatic warm-up, in seconds (`--warmup-max`).
DEFAULT_WARMUP_MAX_S = 60.0
#: Seconds a master waits before a second counts as complete: Locust workers report every
#: 3 s (``locust.runners.WORKER_REPORT_INTERVAL``), plus one for the report in flight.
WORKER_LAG_S = 4.0


@dataclass(frozen=True)
class WarmupRule:
    """When an automatic warm-up ends: see the module's docstring."""

    window: int = 5
    max_cv: float = 0.10
    max_drift: float = 0.10
    max_s: float = DEFAULT_WARMUP_MAX_S

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"a warm-up window of {self.window} sample(s): give 2 or more")
        if not self.max_s > 0:
            raise ValueError(f"warm-up bound {self.max_s}: give a positive number of seconds")


@dataclass(frozen=True)
class WarmupDecision:
    """An ended warm-up: whether throughput was stable (False: the bound ended it), and the
    figures of the last window (NaN when there were too few samples)."""

    stable: bool
    cv: float
    drift: float
    mean_rps: float

    def as_dict(self) -> dict[str, float | bool | None]:
        """JSON-safe (NaN -> None), as timeline.json records it."""
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 4)

        return {"stable": self.stable, "cv": clean(self.cv), "drift": clean(self.drift),
                "mean_rps": clean(self.mean_rps)}


def complete_seconds(per_second: Mapping[int, int], start: float, now: float,
                     lag: float = 0.0) -> list[int]:
    """Request counts of each whole second after ``start`` that is over at ``now - lag``
    (epoch s); a second without requests counts 0. The second ``start`` falls in is left out
    (it was only partly under load)."""
    first = math.floor(start) + 1
    last = math.floor(now - lag)  # exclusive: the second `now - lag` falls in is not over
    return [int(per_second.get(t, 0)) for t in range(first, last)]


def stability(samples: Sequence[float]) -> tuple[float, float, float]:
    """(coefficient of variation, drift, mean) of ``samples`` (see the module's Rule); NaN
    figures for fewer than two samples or a zero mean."""
    n = len(samples)
    if n < 2:
        return math.nan, math.nan, math.nan
    mean = sum(samples) / n
    if mean <= 0:
        return math.nan, math.nan, mean
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1))
    half = n // 2
    early, late = samples[:half], samples[n - half:]
    drift = abs(sum(late) / half - sum(early) / half) / mean
    return sd / mean, drift, mean


def decide(samples: Sequence[float], elapsed: float, rule: WarmupRule) -> WarmupDecision | None:
    """Whether the warm-up ends now, ``elapsed`` seconds into the test with these complete
    per-second ``samples``: a decision, or None to keep warming up."""
    cv, drift, mean = stability(samples[-rule.window:]) if len(samples) >= rule.window \
        else (math.nan, math.nan, math.nan)
    if len(samples) >= rule.window and mean > 0 and cv <= rule.max_cv \
            and drift <= rule.max_drift:
        return WarmupDecision(True, cv, drift, mean)
    if elapsed >= rule.max_s:
        return WarmupDecision(False, cv, drift, mean)
    return None
