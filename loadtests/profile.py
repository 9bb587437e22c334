"""The load profile of a run: what `eiperf run` asks Locust for, validated before any load."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from eicore.errors import ConfigError
from loadtests.catalog import parse_weights
from loadtests.messages import parse_size
from loadtests.shapes import SHAPES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """'30' / '30s' / '2m' / '1h' / '500ms' -> seconds; one clear error otherwise."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(str(text).lower())
    if not m:
        raise ConfigError(f"{what} {text!r} is not a duration; write e.g. 30s, 2m or 1h")
    return float(m[1]) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m[2]]


@dataclass(frozen=True)
class LoadProfile:
    """Users, shape and scenario mix of one run. `duration` excludes the warm-up."""

    weights: dict[str, int] = field(default_factory=lambda: {"soap_http": 1})
    users: int = 10
    spawn_rate: float = 10.0
    duration: float = 30.0
    warmup: float = 5.0
    shape: str = "constant"
    step_users: int | None = None
    step_time: float | None = None
    spike_users: int | None = None
    arrival_rate: float | None = None
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
        if self.shape not in SHAPES:
            raise ConfigError(f"shape {self.shape!r}: use one of {', '.join(SHAPES)}")
        if self.processes is not None and self.processes < 1 and self.processes != -1:
            raise ConfigError(f"workers {self.processes}: give 1 or more, or -1 for one per core")
        active = sorted(n for n, w in self.weights.items() if w > 0)
        if self.users < len(active):
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

    @classmethod
    def from_text(cls, weights: str = "soap_http=1", **kw: Any) -> LoadProfile:
        try:
            parsed = parse_weights(weights)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return cls(weights=parsed, **kw)

    @property
    def total_seconds(self) -> float:
        return self.warmup + self.duration

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def locust_args(self) -> list[str]:
        """Locust command-line options for this profile (eiperf's locustfile options included);
        how many processes run it is the generators' business (`loadtests.generators`)."""
        args = ["-u", str(self.users), "-r", f"{self.spawn_rate:g}", "-t",
                f"{max(1, round(self.total_seconds))}s",
                "--weights", ",".join(f"{k}={v}" for k, v in self.weights.items()),
                "--message-size", self.message_size, "--shape", self.shape,
                "--warmup", f"{self.warmup:g}"]
        for opt, value in (("--step-users", self.step_users), ("--step-time", self.step_time),
                           ("--spike-users", self.spike_users),
                           ("--arrival-rate", self.arrival_rate)):
            if value is not None:
                args += [opt, f"{value:g}"]
        return args
