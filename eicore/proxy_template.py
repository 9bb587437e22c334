"""The sample log-mediator proxy, rendered from a jinja2 template."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

LOG_LEVELS = ("simple", "full", "custom", "headers")
_TEMPLATES = Path(__file__).parent / "templates"


def render_proxy(
    name: str = "SampleProxy",
    log_level: str = "simple",
    properties: dict[str, str] | None = None,
    backend_delay_ms: int = 0,
) -> str:
    """Synapse XML for a proxy whose inSequence logs each message and responds with it."""
    if not name.isidentifier():
        raise ValueError(f"proxy name {name!r} must be letters, digits and _ (e.g. SampleProxy)")
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log level {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=True,
    )
    return env.get_template("SampleProxy.xml.j2").render(
        name=name,
        log_level=log_level,
        properties=properties if properties is not None else {"proxy": name},
        backend_delay_ms=int(backend_delay_ms),
    )
