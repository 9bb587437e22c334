"""A sweep spec (`eiperf sweep SPEC.toml`): what to vary, under which load, judged how.

The TOML file is read once into a frozen `SweepSpec`, and every part is checked before anything
runs: each parameter value goes through `tuning.params.validate`, every grid combination through
`ParamSet` (so -Xms above -Xmx fails here, not after a restart), the load through `LoadProfile`,
the SLO rules through `analysis.slo.parse_rule`. A bad spec gets one line naming the file and
the key, e.g. `heap.toml: [parameters] jvm.xmx: '512' has no unit; use e.g. 512m`.

    strategy = "grid"            # or "optuna" (TPE)
    seed = 7                     # grid order / sampler seed (chosen and recorded when absent)
    repetitions = 1              # runs per configuration
    slo = ["p95<200ms", "errors<0.1%"]

    [parameters]                 # a list is a grid axis; a table is a search space
    "jvm.xmx" = ["512m", "1g"]
    "jvm.gc" = {choices = ["G1", "Parallel"]}
    "nginx.upstream_keepalive" = {low = 0, high = 64, step = 8}
    "nginx.proxy_read_timeout" = {low = "10s", high = "120s", log = true}

    [load]                       # as `eiperf run` takes it
    scenario = {soap_http = 1}   # or "soap_http=3,json=1"
    users = 10
    duration = "30s"
    warmup = "5s"                # or "auto": until throughput is stable, at most warmup_max

    [objective]
    metric = "throughput_rps"    # p50_ms, p95_ms, p99_ms, mean_ms, max_ms, error_pct
    direction = "maximize"       # default: maximize for throughput, minimize otherwise

    [budget]
    trials = 20                  # at most this many configurations
    time = "30m"                 # no new trial starts after this

The parsed spec turns back into plain data (`as_data`) that `sweep.json` stores and
`parse_spec_data` reads again, so a resumed sweep runs exactly the spec it started with.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eicore.errors import ConfigError
from eicore.sweeps import OBJECTIVES
from loadtests.catalog import parse_weights
from loadtests.profile import LoadProfile, parse_duration, parse_warmup
from tuning.params import (
    ParameterError,
    ParamSet,
    format_value,
    lookup,
    size_to_bytes,
    validate,
)

STRATEGIES = ("grid", "optuna")
DIRECTIONS = ("maximize", "minimize")
TOP_KEYS = ("strategy", "seed", "repetitions", "slo", "parameters", "load", "objective", "budget")
LOAD_KEYS = ("scenario", "weights", "users", "spawn_rate", "duration", "warmup", "shape",
             "step_users", "step_time", "spike_users", "arrival_rate", "message_size", "processes",
             "warmup_max", "warmup_auto", "rate_profile", "arrivals", "max_concurrency")
SPACE_KEYS = ("low", "high", "log", "step", "choices")
MAX_GRID = 10_000

_SIZE = re.compile(r"\d+[kmgt]", re.IGNORECASE)
_TIME = re.compile(r"(\d+)(ms|s|m|h|d)?")
_TIME_S = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


class SpecError(ConfigError):
    """A sweep spec that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Axis:
    """One swept parameter: a list of values (grid), choices, or a numeric range.

    Values are kept in the normalised text form `eiperf tune apply --set` takes. A range is held
    in an internal number (`unit`: "int", "size" in MiB, "time" in seconds) that `encode` and
    `decode` convert; Optuna samples the number.
    """

    name: str
    kind: str  # "values" | "choices" | "range"
    values: tuple[str, ...] = ()
    low: int = 0
    high: int = 0
    log: bool = False
    step: int | None = None
    unit: str = "int"  # "int" | "size" | "time"

    def decode(self, number: int) -> str:
        """The parameter value for an internal range number."""
        if self.unit == "size":
            return f"{number // 1024}g" if number % 1024 == 0 else f"{number}m"
        if self.unit == "time":
            return f"{number}s"
        return str(number)

    def encode(self, value: str) -> int | str:
        """The internal number of a range value (a choice stays as it is)."""
        if self.kind != "range":
            return value
        if self.unit == "size":
            return size_to_bytes(value) // (1 << 20)
        if self.unit == "time":
            return round(_seconds(value))
        return int(value)

    def grid_values(self) -> tuple[str, ...]:
        """Every value of a grid axis (a stepped range counts too)."""
        if self.kind != "range":
            return self.values
        step = self.step or 1
        return tuple(self.decode(n) for n in range(self.low, self.high + 1, step))

    def as_data(self) -> Any:
        if self.kind == "values":
            return list(self.values)
        if self.kind == "choices":
            return {"choices": list(self.values)}
        data: dict[str, Any] = {"low": self._raw(self.low), "high": self._raw(self.high)}
        if self.log:
            data["log"] = True
        if self.step is not None:
            data["step"] = self._raw(self.step)
        return data

    def _raw(self, number: int) -> int | str:
        return number if self.unit == "int" else self.decode(number)


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    time_s: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep spec."""

    source: str
    strategy: str
    seed: int
    repetitions: int
    slo: tuple[str, ...]
    parameters: dict[str, Axis]
    load: LoadProfile
    objective: Objective
    budget: Budget = field(default_factory=Budget)

    @property
    def names(self) -> list[str]:
        return list(self.parameters)

    def grid(self) -> list[dict[str, str]]:
        """Every configuration of a grid spec, in the order written (not yet shuffled)."""
        axes = [a.grid_values() for a in self.parameters.values()]
        return [dict(zip(self.names, combo)) for combo in itertools.product(*axes)]

    def as_data(self) -> dict[str, Any]:
        """The spec as plain data (what sweep.json stores; `parse_spec_data` reads it back)."""
        return {
            "source": self.source,
            "strategy": self.strategy,
            "seed": self.seed,
            "repetitions": self.repetitions,
            "slo": list(self.slo),
            "parameters": {n: a.as_data() for n, a in self.parameters.items()},
            "load": self.load.as_dict(),
            "objective": {"metric": self.objective.metric,
                          "direction": self.objective.direction},
            "budget": {k: v for k, v in (("trials", self.budget.trials),
                                         ("time", self.budget.time_s)) if v is not None},
        }


def _seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|[smhd])?", text):
        total += int(number) * _TIME_S[unit or None]
    return total


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; SpecError (one line, naming the file) when it is bad."""
    path = Path(path)
    where = path.name
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such sweep spec; see sweeps/*.toml for examples") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder; give a sweep spec .toml file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; a sweep spec is a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML ({e})") from None
    return parse_spec_data(data, str(path), where)


def parse_spec_data(data: dict[str, Any], source: str, where: str | None = None) -> SweepSpec:
    """Check spec data (a parsed TOML file, or `as_data` from sweep.json)."""
    where = where or Path(source).name

    def fail(key: str, message: str) -> SpecError:
        return SpecError(f"{where}: {key}: {message}")

    data = dict(data)
    data.pop("source", None)
    for key in data:
        if key not in TOP_KEYS:
            raise fail(key, f"unknown key; a spec has {', '.join(TOP_KEYS)}")
    strategy = data.get("strategy", "grid")
    if strategy not in STRATEGIES:
        raise fail("strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    seed = data.get("seed")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise fail("seed", f"{seed!r} is not a whole number")
    repetitions = _int(data.get("repetitions", 1), 1, fail, "repetitions")
    slo = _slo(data.get("slo", []), fail)
    parameters = _parameters(data.get("parameters"), fail, where)
    load = _load(data.get("load", {}), fail)
    objective = _objective(data.get("objective", {}), fail)
    budget = _budget(data.get("budget", {}), strategy, fail)
    spec = SweepSpec(source, strategy, seed, repetitions, tuple(slo), parameters, load,
                     objective, budget)
    if strategy == "grid":
        _check_grid(spec, fail)
    return spec


def _int(value: Any, minimum: int, fail, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise fail(key, f"{value!r} is not a whole number >= {minimum}")
    return value


def _slo(value: Any, fail) -> list[str]:
    # lazy: analysis.slo imports analysis.summary (numpy, pandas: ~0.4 s) for a type hint only
    from analysis.slo import SloError, parse_rule

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail("slo", 'give a list of rules, e.g. slo = ["p95<200ms", "errors<0.1%"]')
    for rule in value:
        try:
            parse_rule(rule)
        except SloError as e:
            raise fail("slo", str(e)) from None
    return value


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`jvm.xmx = [...]` written without quotes nests tables; flatten back to dotted names."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (set(value) & set(SPACE_KEYS)):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _parameters(value: Any, fail, where: str) -> dict[str, Axis]:
    if not isinstance(value, dict) or not value:
        raise fail("[parameters]", 'missing or empty; give e.g. "jvm.xmx" = ["512m", "1g"]')
    axes: dict[str, Axis] = {}
    for name, raw in _flatten(value).items():
        key = f"[parameters] {name}"
        try:
            lookup(name)
            axes[name] = _axis(name, raw)
        except ParameterError as e:
            raise SpecError(f"{where}: [parameters] {e}") from None
        except _AxisError as e:
            raise fail(key, str(e)) from None
    return axes


class _AxisError(ValueError):
    pass


def _axis(name: str, raw: Any) -> Axis:
    if isinstance(raw, list):
        if not raw:
            raise _AxisError("an empty list; give at least one value")
        values = tuple(_text(name, v) for v in raw)
        if len(set(values)) != len(values):
            raise _AxisError("a value is listed twice")
        return Axis(name, "values", values)
    if not isinstance(raw, dict):
        raise _AxisError("give a list of values, {choices = [...]} or {low = , high = }")
    unknown = sorted(set(raw) - set(SPACE_KEYS))
    if unknown:
        raise _AxisError(f"unknown key {unknown[0]!r}; a space has {', '.join(SPACE_KEYS)}")
    if "choices" in raw:
        if set(raw) != {"choices"}:
            raise _AxisError("choices go alone; do not mix them with low/high/step/log")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise _AxisError("choices must be a non-empty list")
        values = tuple(_text(name, v) for v in choices)
        if len(set(values)) != len(values):
            raise _AxisError("a choice is listed twice")
        return Axis(name, "choices", values)
    if "low" not in raw or "high" not in raw:
        raise _AxisError("a range needs both low and high (or give choices = [...])")
    unit = _unit(name, raw["low"])
    low, high = _number(name, raw["low"], unit), _number(name, raw["high"], unit)
    if low > high:
        raise _AxisError(f"low {raw['low']!r} is above high {raw['high']!r}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _AxisError(f"log {log!r} is not true or false")
    step = None
    if "step" in raw:
        step = _number(name, raw["step"], unit, checked=False)
        if step < 1:
            raise _AxisError(f"step {raw['step']!r} must be positive")
        if log:
            raise _AxisError("give either log = true or a step, not both (Optuna allows one)")
    if log and low < 1:
        raise _AxisError("a log range needs low >= 1")
    return Axis(name, "range", (), low, high, log, step, unit)


def _text(name: str, raw: Any) -> str:
    value = validate(name, raw)
    return format_value(value)


def _unit(name: str, low: Any) -> str:
    if isinstance(low, int) and not isinstance(low, bool):
        return "int"
    parameter = lookup(name)
    if isinstance(low, str):
        if _TIME.fullmatch(parameter.example) and not _SIZE.fullmatch(parameter.example):
            return "time"
        if _SIZE.fullmatch(parameter.example) or name.startswith("jvm.flag."):
            return "size"
    raise _AxisError(f"low {low!r}: a range takes numbers (or sizes / times); "
                     "use choices = [...] for other values")


def _number(name: str, raw: Any, unit: str, checked: bool = True) -> int:
    if unit == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _AxisError(f"{raw!r} is not a whole number like low")
        if checked:
            validate(name, raw)
        return raw
    if not isinstance(raw, str):
        raise _AxisError(f"{raw!r}: write it like low, e.g. \"512m\" or \"30s\"")
    if unit == "size":
        if not _SIZE.fullmatch(raw.strip()):
            raise _AxisError(f"{raw!r} is not a size; use e.g. 512m or 2g")
        if checked:
            validate(name, raw)
        mib = size_to_bytes(raw) / (1 << 20)
        if mib < 1 or mib != int(mib):
            raise _AxisError(f"{raw!r}: a size range works in whole MiB; use e.g. 512m")
        return int(mib)
    if checked:
        validate(name, raw)
    seconds = _seconds(raw.strip())
    if not _TIME.fullmatch(raw.strip()) or seconds != int(seconds):
        raise _AxisError(f"{raw!r}: a time range works in whole seconds; use e.g. 30s or 2m")
    return int(seconds)


def _load(value: Any, fail) -> LoadProfile:
    if not isinstance(value, dict):
        raise fail("[load]", "give a table, e.g. [load] users = 10, duration = \"30s\"")
    value = {k: v for k, v in value.items() if v is not None}  # as_data keeps unset fields
    for key in value:
        if key not in LOAD_KEYS:
            raise fail(f"[load] {key}", f"unknown key; [load] takes {', '.join(LOAD_KEYS)}")
    kw: dict[str, Any] = {}
    weights = value.get("scenario", value.get("weights", {"soap_http": 1}))
    try:
        if isinstance(weights, str):
            weights = parse_weights(weights)
        elif isinstance(weights, dict):
            weights = parse_weights(",".join(f"{k}={v}" for k, v in weights.items()))
        else:
            raise ValueError('give e.g. scenario = {soap_http = 3, json = 1}')
    except ValueError as e:
        raise fail("[load] scenario", str(e)) from None
    kw["weights"] = weights
    for key in ("users", "step_users", "spike_users", "processes", "max_concurrency"):
        if key in value:
            kw[key] = _int(value[key], 1, fail, f"[load] {key}")
    for key in ("spawn_rate", "arrival_rate"):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise fail(f"[load] {key}", f"{v!r} is not a positive number")
            kw[key] = float(v)
    for key in ("duration", "warmup", "step_time", "warmup_max"):
        if key in value:
            try:
                if key == "warmup":  # a duration, or "auto" (until throughput is stable)
                    kw["warmup"], kw["warmup_auto"] = parse_warmup(value[key], key)
                else:
                    kw[key] = parse_duration(value[key], key)
            except ConfigError as e:
                raise fail(f"[load] {key}", str(e)) from None
    if "warmup_auto" in value:  # how sweep.json stores a parsed `warmup = "auto"`
        if not isinstance(value["warmup_auto"], bool):
            raise fail("[load] warmup_auto", f"{value['warmup_auto']!r} is not true or false")
        kw["warmup_auto"] = value["warmup_auto"] or kw.get("warmup_auto", False)
    for key in ("shape", "message_size", "rate_profile", "arrivals"):
        if key in value:
            if not isinstance(value[key], str):
                raise fail(f"[load] {key}", f"{value[key]!r} is not text")
            kw[key] = value[key]
    kw.setdefault("spawn_rate", float(kw.get("users", 10)))
    try:
        return LoadProfile(**kw)
    except ConfigError as e:
        raise fail("[load]", str(e)) from None


def _objective(value: Any, fail) -> Objective:
    if not isinstance(value, dict):
        raise fail("[objective]", 'give a table, e.g. [objective] metric = "throughput_rps"')
    for key in value:
        if key not in ("metric", "direction"):
            raise fail(f"[objective] {key}", "unknown key; [objective] takes metric, direction")
    metric = value.get("metric", "throughput_rps")
    if metric not in OBJECTIVES:
        raise fail("[objective] metric", f"{metric!r} is not one of {', '.join(OBJECTIVES)}")
    direction = value.get("direction", OBJECTIVES[metric])
    if direction not in DIRECTIONS:
        raise fail("[objective] direction", f"{direction!r} is not maximize or minimize")
    return Objective(metric, direction)


def _budget(value: Any, strategy: str, fail) -> Budget:
    if not isinstance(value, dict):
        raise fail("[budget]", "give a table, e.g. [budget] trials = 20")
    for key in value:
        if key not in ("trials", "time"):
            raise fail(f"[budget] {key}", "unknown key; [budget] takes trials, time")
    trials = _int(value["trials"], 1, fail, "[budget] trials") if "trials" in value else None
    time_s = None
    if "time" in value:
        try:
            time_s = parse_duration(value["time"], "time")
        except ConfigError as e:
            raise fail("[budget] time", str(e)) from None
        if time_s <= 0:
            raise fail("[budget] time", "give a positive duration, e.g. 30m")
    if strategy == "optuna" and trials is None and time_s is None:
        raise fail("[budget]", "an optuna sweep needs trials or time, e.g. [budget] trials = 20")
    return Budget(trials, time_s)


def _check_grid(spec: SweepSpec, fail) -> None:
    for name, axis in spec.parameters.items():
        if axis.kind == "range" and axis.step is None:
            raise fail(f"[parameters] {name}",
                       "a grid needs a list, choices or a range with step; "
                       'or use strategy = "optuna" to search the range')
    size = math.prod(len(a.grid_values()) for a in spec.parameters.values())
    if size > MAX_GRID:
        raise fail("[parameters]", f"the grid has {size} configurations (at most {MAX_GRID}); "
                                   "use fewer values or strategy = \"optuna\"")
    for config in spec.grid():
        try:
            ParamSet(config)
        except ParameterError as e:
            shown = ", ".join(f"{k}={v}" for k, v in config.items())
            raise fail("[parameters]", f"the combination {shown} cannot run: {e}") from None


