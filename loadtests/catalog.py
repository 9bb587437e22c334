"""The scenario catalogue: names, the vhost each uses, and weight parsing.

Kept free of Locust imports on purpose: importing Locust monkey-patches gevent into the
process, which the `eiperf run` orchestrator (subprocesses, signals) must not get.
"""

from __future__ import annotations

#: scenario name -> the load balancer vhost it goes through
SCENARIO_VHOSTS: dict[str, str] = {
    "soap_http": "http",
    "soap_https": "https",
    "json": "http",
    "delayed": "http",
    "dblookup": "http",
    "console": "console",
    "static": "status",
}


def parse_weights(text: str) -> dict[str, int]:
    """'soap_http=3,soap_https=1' -> {'soap_http': 3, 'soap_https': 1}; one clear error."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in SCENARIO_VHOSTS:
            raise ValueError(f"unknown scenario {name!r} in --weights; scenarios: "
                             f"{', '.join(SCENARIO_VHOSTS)}")
        if not sep:
            value = "1"
        if not value.strip().isdigit():
            raise ValueError(f"--weights {name}={value}: a weight is a whole number >= 0")
        out[name] = int(value)
    if not any(out.values()):
        raise ValueError("--weights gives every scenario weight 0; give at least one a weight")
    return out
