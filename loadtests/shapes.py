"""Load shapes: how many users run at each moment of a test.

Each shape is a pure schedule -- `users_at(t)` -> (users, spawn_rate) or None when the test
is over -- so it can be tested and plotted without Locust. `EiperfShape` (in the locustfile)
wraps the selected one as Locust's LoadTestShape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtests.arrivals import RateProfile

#: Seconds an open run waits after its last arrival for the requests still in flight.
DRAIN_S = 10.0

SHAPES = ("constant", "step", "spike", "soak", "arrival", "open")


@dataclass(frozen=True)
class Shape:
    """Base schedule: `users_at(t)` for t seconds since the test started."""

    duration: float

    def users_at(self, t: float) -> tuple[int, float] | None:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"shape": type(self).__name__.removesuffix("Shape").lower(), **self.__dict__}


@dataclass(frozen=True)
class ConstantShape(Shape):
    """`users` users (ramped at `spawn_rate`/s) for `duration` seconds."""

    users: int = 10
    spawn_rate: float = 10.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        return None if t >= self.duration else (self.users, self.spawn_rate)


@dataclass(frozen=True)
class StepShape(Shape):
    """Capacity search: start at `step_users`, add `step_users` every `step_time` s, up to
    `max_users`, then hold until `duration`."""

    step_users: int = 10
    step_time: float = 10.0
    max_users: int = 100
    spawn_rate: float = 50.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        step = int(t // self.step_time) + 1
        return min(self.max_users, step * self.step_users), self.spawn_rate

    def steps(self) -> list[tuple[float, int]]:
        """(start second, users) of every step."""
        out, t = [], 0.0
        while t < self.duration:
            users = self.users_at(t)[0]  # type: ignore[index]
            if not out or out[-1][1] != users:
                out.append((t, users))
            t += self.step_time
        return out


@dataclass(frozen=True)
class SpikeShape(Shape):
    """`users` users, jumping to `spike_users` at `spike_at` s for `spike_duration` s."""

    users: int = 10
    spike_users: int = 100
    spike_at: float = 10.0
    spike_duration: float = 5.0
    spawn_rate: float = 1000.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        in_spike = self.spike_at <= t < self.spike_at + self.spike_duration
        return (self.spike_users if in_spike else self.users), self.spawn_rate


@dataclass(frozen=True)
class SoakShape(Shape):
    """A long constant load, ramped up gently (`ramp` s) so the start does not dominate."""

    users: int = 10
    ramp: float = 30.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        rate = max(1.0, self.users / max(self.ramp, 1.0))
        return self.users, rate


@dataclass(frozen=True)
class ArrivalShape(Shape):
    """A closed model paced to a rate: `users` users, each with constant_throughput(rate/users).
    When responses get slower than users/rate seconds, fewer requests are sent and a stall is
    under-counted (coordinated omission); `OpenShape` is the open model without that flaw."""

    rate: float = 100.0
    users: int = 50
    spawn_rate: float = 1000.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        return None if t >= self.duration else (self.users, self.spawn_rate)

    @property
    def per_user_rate(self) -> float:
        return self.rate / self.users


@dataclass(frozen=True)
class OpenShape(Shape):
    """The open model (`loadtests.open_model`): requests start at intended times from
    `profile` (a RateProfile, seconds from the test start), `process` "constant" or "poisson",
    at most `max_concurrency` in flight over the whole run. Locust runs one arrival stream
    per process (`streams`); `users_at` asks for exactly those. After `duration` the streams
    send nothing more and end themselves once their requests in flight are answered; the
    shape keeps them up to DRAIN_S longer for that (the locustfile ends the test as soon as
    they are done), so the last requests get their rows instead of being cut off."""

    profile: RateProfile = field(default_factory=lambda: RateProfile.constant(100.0))
    process: str = "constant"
    max_concurrency: int = 100
    streams: int = 1

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration + DRAIN_S:
            return None
        return self.streams, float(max(self.streams, 100))

    def describe(self) -> dict:
        return {"shape": "open", "duration": self.duration, "rate_profile": self.profile.describe(),
                "arrivals": self.process, "max_concurrency": self.max_concurrency,
                "streams": self.streams}


def build_shape(kind: str, duration: float, users: int, spawn_rate: float,
                **kw: float | str | None) -> Shape:
    """The shape named `kind` with the common options and its own (`kw`, None = default)."""
    extra = {k: v for k, v in kw.items() if v is not None}
    if kind == "constant":
        return ConstantShape(duration, users, spawn_rate)
    if kind == "step":
        return StepShape(duration, int(extra.get("step_users", max(1, users // 5))),
                         float(extra.get("step_time", 10.0)), users, max(spawn_rate, 1.0))
    if kind == "spike":
        return SpikeShape(duration, users, int(extra.get("spike_users", users * 5)),
                          float(extra.get("spike_at", duration / 3)),
                          float(extra.get("spike_duration", duration / 6)))
    if kind == "soak":
        return SoakShape(duration, users, float(extra.get("ramp", min(30.0, duration / 10))))
    if kind == "arrival":
        rate = float(extra.get("arrival_rate", 100.0))
        return ArrivalShape(duration, rate, max(users, 1))
    if kind == "open":
        text = extra.get("rate_profile") or extra.get("arrival_rate") or 100.0
        return OpenShape(duration, RateProfile.parse(str(text)),
                         str(extra.get("arrivals", "constant")), max(users, 1),
                         int(extra.get("streams", 1)))
    raise ValueError(f"shape {kind!r}: use one of {', '.join(SHAPES)}")
