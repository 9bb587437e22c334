"""Arrival processes for the open model: when each request is meant to start.

A `RateProfile` is the intended arrival rate over time, piecewise linear through
(second, requests/s) points -- a ramp is two points with different rates, a step two points at
the same second. `arrival_times` turns a profile into intended start offsets (seconds since the
test started), either evenly spaced ("constant") or as a Poisson process ("poisson"), by
inverting the profile's cumulative count Λ(t): the k-th arrival is at Λ⁻¹(k) (constant) or at
Λ⁻¹(S_k) with S_k a sum of k unit exponentials (poisson: a non-homogeneous Poisson process by
time change). A stream that carries `share` of the load (one per Locust process) uses
share·Λ; streams with random phases add up to the whole profile.

Pure functions: no Locust, no clock; the executor (`loadtests.open_model`) sleeps to them.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

ARRIVAL_PROCESSES = ("constant", "poisson")

_POINT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:s)?\s*:\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class RateProfile:
    """Intended requests/s over time: linear between `points` ((second, rate), seconds
    non-decreasing, the first at 0), the last rate held after the last point."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points or self.points[0][0] != 0:
            raise ValueError("a rate profile starts at second 0, e.g. 0:100,30:400")
        for (t0, _), (t1, _) in zip(self.points, self.points[1:], strict=False):
            if t1 < t0:
                raise ValueError(f"rate profile: second {t1:g} comes after {t0:g}; "
                                 "list the points in time order")
        if any(r < 0 for _, r in self.points):
            raise ValueError("rate profile: a rate cannot be negative")
        if not any(r > 0 for _, r in self.points):
            raise ValueError("rate profile: every rate is 0, so no request would start")

    @classmethod
    def constant(cls, rate: float) -> RateProfile:
        return cls(((0.0, float(rate)),))

    @classmethod
    def parse(cls, text: str) -> RateProfile:
        """'200' (constant) or 'second:rate,...' e.g. '0:50,10:200' (ramp 50 -> 200 req/s over
        10 s, then held) or '0:100,20:100,20:300' (a step to 300 at 20 s)."""
        text = str(text).strip()
        try:
            return cls.constant(float(text))
        except ValueError:
            pass
        points = []
        for part in text.split(","):
            m = _POINT.match(part)
            if not m:
                raise ValueError(f"rate profile {text!r}: write a rate (e.g. 200) or "
                                 "second:rate points, e.g. 0:50,10:200,30:200,30:400")
            points.append((float(m[1]), float(m[2])))
        return cls(tuple(points))

    def describe(self) -> str:
        if len(self.points) == 1:
            return f"{self.points[0][1]:g}/s"
        return ",".join(f"{t:g}:{r:g}" for t, r in self.points)

    def rate_at(self, t: float) -> float:
        """The intended rate at second `t` (the later point's rate at a step)."""
        rate = self.points[0][1]
        for (t0, r0), (t1, r1) in zip(self.points, self.points[1:], strict=False):
            if t < t0:
                break
            if t1 > t0 and t < t1:
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
            rate = r1
        return rate

    def _segments(self) -> Iterator[tuple[float, float, float, float]]:
        """(start, end, rate at start, rate at end) of each piece; the last is open-ended."""
        for (t0, r0), (t1, r1) in zip(self.points, self.points[1:], strict=False):
            if t1 > t0:
                yield t0, t1, r0, r1
        last_t, last_r = self.points[-1]
        yield last_t, math.inf, last_r, last_r

    def expected(self, t0: float, t1: float) -> float:
        """Requests the profile intends in [t0, t1): the integral of the rate."""
        return self.cumulative(t1) - self.cumulative(t0)

    def cumulative(self, t: float) -> float:
        """Λ(t): requests intended in [0, t)."""
        total = 0.0
        for a, b, ra, rb in self._segments():
            if t <= a:
                break
            end = min(t, b)
            slope = 0.0 if math.isinf(b) else (rb - ra) / (b - a)
            dt = end - a
            total += ra * dt + 0.5 * slope * dt * dt
        return total

    def inverse(self, n: float) -> float:
        """Λ⁻¹(n): the second by which `n` requests are intended (n ≥ 0)."""
        done = 0.0
        for a, b, ra, rb in self._segments():
            slope = 0.0 if math.isinf(b) else (rb - ra) / (b - a)
            area = math.inf if math.isinf(b) else ra * (b - a) + 0.5 * slope * (b - a) ** 2
            if n - done <= area:
                left = n - done
                if abs(slope) < 1e-12:
                    return a + left / ra if ra > 0 else b
                # ra·x + slope·x²/2 = left, the root in [0, b - a]
                disc = max(0.0, ra * ra + 2.0 * slope * left)
                return a + (math.sqrt(disc) - ra) / slope
            done += area
        return math.inf


def arrival_times(profile: RateProfile, duration: float, process: str = "constant", *,
                  share: float = 1.0, phase: float = 0.0,
                  rng: random.Random | None = None) -> Iterator[float]:
    """Intended start offsets in [0, duration) of one stream carrying `share` of `profile`.

    `phase` (0..1) shifts a constant stream by a fraction of its interval, so streams of
    several processes interleave instead of firing together; `rng` drives the Poisson draws.
    """
    if process not in ARRIVAL_PROCESSES:
        raise ValueError(f"arrival process {process!r}: use one of {', '.join(ARRIVAL_PROCESSES)}")
    if not 0 < share <= 1:
        raise ValueError("a stream's share of the load is in (0, 1]")
    rng = rng or random.Random()
    poisson = process == "poisson"
    n = 0.0 if poisson else phase % 1.0
    while True:
        if poisson:
            n += rng.expovariate(1.0)
        t = profile.inverse(n / share)
        if t >= duration:
            return
        yield t
        if not poisson:
            n += 1.0


@dataclass
class ArrivalCounts:
    """What one process's stream did: arrivals planned, sent, dropped at the cap, sent but
    cut off in flight when Locust stopped the test (no row), and the most requests it had in
    flight at once."""

    planned: int = 0
    sent: int = 0
    dropped: int = 0
    cut: int = 0
    peak_in_flight: int = 0
    cap: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def total(parts: list[dict[str, int]]) -> dict[str, int]:
        """The counts of several processes added up (`peak_in_flight`: the largest one's)."""
        out = ArrivalCounts().as_dict()
        for part in parts:
            for key in out:
                value = int(part.get(key) or 0)
                out[key] = max(out[key], value) if key == "peak_in_flight" else out[key] + value
        return out
