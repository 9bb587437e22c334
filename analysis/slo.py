"""Service-level objectives: rules like `p95<200ms`, `errors<0.1%`, `rps>=500`.

Pure: parse rule text into `SloRule`, evaluate against a `RequestSummary`. A figure that
cannot be computed (no requests) is "unknown" and never counts as met.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from analysis.summary import RequestSummary

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_RULE = re.compile(r"^\s*(?P<metric>[a-z0-9.]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[0-9]*\.?[0-9]+)"
                   r"\s*(?P<unit>ms|us|s|%|rps|/s)?\s*$")
_LATENCY = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
METRICS = (*_LATENCY, "mean", "max", "errors", "rps")


class SloError(ValueError):
    """A rule that cannot be parsed; the message says what a valid rule looks like."""


@dataclass(frozen=True)
class SloRule:
    text: str
    metric: str
    op: str
    threshold: float  # ms for latency, a fraction for errors, req/s for rps

    def unit(self) -> str:
        return {"errors": "%", "rps": " req/s"}.get(self.metric, " ms")


@dataclass(frozen=True)
class SloResult:
    rule: str
    actual: float | None
    ok: bool

    @property
    def verdict(self) -> str:
        if self.actual is None:
            return "unknown"
        return "met" if self.ok else "BROKEN"


def parse_rule(text: str) -> SloRule:
    m = _RULE.match(text.lower())
    hint = "write e.g. p95<200ms, p99<=1s, errors<0.1%, rps>=500"
    if not m:
        raise SloError(f"SLO {text!r} is not a rule; {hint}")
    metric, op, value, unit = m["metric"], m["op"], float(m["value"]), m["unit"]
    if metric not in METRICS:
        raise SloError(f"SLO {text!r}: unknown figure {metric!r}; use one of {', '.join(METRICS)}")
    if metric == "errors":
        if unit not in (None, "%"):
            raise SloError(f"SLO {text!r}: errors take a % (e.g. errors<0.1%)")
        threshold = value / 100.0 if unit == "%" else value
    elif metric == "rps":
        if unit not in (None, "rps", "/s"):
            raise SloError(f"SLO {text!r}: rps takes no time unit (e.g. rps>=500)")
        threshold = value
    else:
        if unit not in (None, "ms", "s", "us"):
            raise SloError(f"SLO {text!r}: latency takes ms, s or us (e.g. p95<200ms)")
        threshold = value * {"ms": 1.0, None: 1.0, "s": 1000.0, "us": 0.001}[unit]
    return SloRule(text.strip(), metric, op, threshold)


def parse_rules(texts: list[str]) -> list[SloRule]:
    return [parse_rule(t) for t in texts]


def actual_value(rule: SloRule, summary: RequestSummary) -> float | None:
    if rule.metric == "errors":
        value = summary.error_rate if summary.count else None
    elif rule.metric == "rps":
        value = summary.throughput_rps if summary.duration_s > 0 else None
    elif rule.metric == "mean":
        value = summary.mean_ms
    elif rule.metric == "max":
        value = summary.max_ms
    else:
        value = summary.percentiles_ms.get(_LATENCY[rule.metric])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def evaluate(rules: list[SloRule], summary: RequestSummary) -> list[SloResult]:
    out = []
    for rule in rules:
        actual = actual_value(rule, summary)
        ok = actual is not None and _OPS[rule.op](actual, rule.threshold)
        out.append(SloResult(rule.text, actual, ok))
    return out


def format_results(rules: list[SloRule], results: list[SloResult]) -> list[str]:
    lines = []
    for rule, r in zip(rules, results):
        if r.actual is None:
            shown = "n/a"
        elif rule.metric == "errors":
            shown = f"{r.actual * 100:.3g}%"
        else:
            shown = f"{r.actual:.4g}{rule.unit()}"
        lines.append(f"SLO {r.rule:<16} actual {shown:<14} {r.verdict}")
    return lines
