"""The load profile of a run: what `eiperf run` asks Locust for, validated before any load."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from eicore.errors import ConfigError
from loadtests.arrivals import ARRIVAL_PROCESSES, RateProfile
from loadtests.catalog import parse_weights
from loadtests.messages import parse_size
from loadtests.shapes import SHAPES
from loadtests.warmup import DEFAULT_WARMUP_MAX_S

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """'30' / '30s' / '2m' / '1h' / '500ms' -> seconds; one clear error otherwise."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(str(text).lower())
    if not m:
        raise ConfigError(f"{what} {text!r} is not a duration; write e.g. 30s, 2m or 1h")
    return float(m[1]) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m[2]]


def parse_warmup(text: str | float | int, what: str = "--warmup") -> tuple[float, bool]:
    """'auto' -> (0, True): warm up until throughput is stable (`loadtests.warmup`); a
    duration -> (seconds, False); one clear error otherwise."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return 0.0, True
    try:
        return parse_duration(text, what), False
    except ConfigError:
        raise ConfigError(f"{what} {text!r} is neither a duration nor auto; write e.g. 5s, 1m "
                          "or auto") from None


@dataclass(frozen=True)
class LoadProfile:
    """Users, shape and scenario mix of one run. `duration` excludes the warm-up."""

    weights: dict[str, int] = field(default_factory=lambda: {"soap_http": 1})
    users: int = 10
    spawn_rate: float = 10.0
    duration: float = 30.0
    warmup: float = 5.0
    #: warm up until throughput is stable (`--warmup auto`), at most `warmup_max` seconds;
    #: `warmup` is then 0 until the run says how long it took
    warmup_auto: bool = False
    warmup_max: float = DEFAULT_WARMUP_MAX_S
    shape: str = "constant"
    step_users: int | None = None
    step_time: float | None = None
    spike_users: int | None = None
    arrival_rate: float | None = None
    #: open shape: requests/s over time ("0:50,10:200"; loadtests.arrivals.RateProfile)
    rate_profile: str | None = None
    #: open shape: "constant" (evenly spaced) or "poisson" arrivals
    arrivals: str = "constant"
    #: open shape: the most requests in flight over the whole run; more arrivals are dropped
    max_concurrency: int = 1000
    message_size: str = "1KB"
    #: Locust worker processes per load-generator machine (`--workers`): None for the default
    #: rule (`loadtests.generators.default_workers`), -1 for one per core, or a count.
    processes: int | None = None

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ConfigError(f"users {self.users}: give at least 1")
        if self.duration <= 0:
            raise ConfigError(f"duration {self.duration}: give a positive duration, e.g. 30s")
        if self.warmup < 0:
            raise ConfigError(f"warm-up {self.warmup}: give 0 or more seconds")
        if not self.warmup_max > 0:
            raise ConfigError(f"warm-up bound {self.warmup_max}: give a positive duration, "
                              "e.g. 60s")
        if self.shape not in SHAPES:
            raise ConfigError(f"shape {self.shape!r}: use one of {', '.join(SHAPES)}")
        if self.processes is not None and self.processes < 1 and self.processes != -1:
            raise ConfigError(f"workers {self.processes}: give 1 or more, or -1 for one per core")
        active = sorted(n for n, w in self.weights.items() if w > 0)
        if self.shape == "open":
            self._check_open()
        elif self.users < len(active):
            # Locust gives each scenario whole users by weight: a scenario left with none
            # would silently never run.
            raise ConfigError(f"{len(active)} scenarios ({', '.join(active)}) need at least "
                              f"{len(active)} users, got {self.users}: raise -u or drop a "
                              "scenario from --weights")
        if self.shape == "arrival" and not self.arrival_rate:
            raise ConfigError("the arrival shape needs --arrival-rate (requests per second)")
        try:
            parse_size(self.message_size)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _check_open(self) -> None:
        if not self.arrival_rate and not self.rate_profile:
            raise ConfigError("the open shape needs --arrival-rate (requests per second) or "
                              "--rate-profile (e.g. 0:50,10:200)")
        if self.arrivals not in ARRIVAL_PROCESSES:
            raise ConfigError(f"arrivals {self.arrivals!r}: use one of "
                              f"{', '.join(ARRIVAL_PROCESSES)}")
        if self.max_concurrency < 1:
            raise ConfigError(f"max concurrency {self.max_concurrency}: give 1 or more")
        if self.warmup_auto:
            raise ConfigError("--warmup auto does not go with the open shape (its rate profile "
                              "fixes the schedule in advance): give a warm-up time, e.g. 10s")
        if self.rate_profile:
            try:
                RateProfile.parse(self.rate_profile)
            except ValueError as e:
                raise ConfigError(f"--rate-profile: {e}") from None

    @property
    def open(self) -> bool:
        """Requests start at intended times (`loadtests.open_model`), not when users are free."""
        return self.shape == "open"

    @classmethod
    def from_text(cls, weights: str = "soap_http=1", **kw: Any) -> LoadProfile:
        try:
            parsed = parse_weights(weights)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return cls(weights=parsed, **kw)

    @property
    def total_seconds(self) -> float:
        """The longest the test runs: warm-up (its bound, when automatic) and duration."""
        return (self.warmup_max if self.warmup_auto else self.warmup) + self.duration

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def locust_args(self) -> list[str]:
        """Locust command-line options for this profile (eiperf's locustfile options included);
        how many processes run it is the generators' business (`loadtests.generators`)."""
        users = self.max_concurrency if self.open else self.users
        # auto warm-up: whole seconds up, so the locustfile's duration (-t minus --warmup-max)
        # is never shorter than ours
        run_s = math.ceil(self.total_seconds) if self.warmup_auto \
            else max(1, round(self.total_seconds))
        args = ["-u", str(users), "-r", f"{self.spawn_rate:g}", "-t", f"{run_s}s",
                "--weights", ",".join(f"{k}={v}" for k, v in self.weights.items()),
                "--message-size", self.message_size, "--shape", self.shape,
                *(["--warmup", "auto", "--warmup-max", f"{self.warmup_max:g}"]
                  if self.warmup_auto else ["--warmup", f"{self.warmup:g}"])]
        for opt, value in (("--step-users", self.step_users), ("--step-time", self.step_time),
                           ("--spike-users", self.spike_users),
                           ("--arrival-rate", self.arrival_rate)):
            if value is not None:
                args += [opt, f"{value:g}"]
        if self.open:
            args += ["--arrivals", self.arrivals]
            if self.rate_profile:
                args += ["--rate-profile", self.rate_profile]
        return args
