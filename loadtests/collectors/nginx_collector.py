"""`NginxCollector`: the load balancer's stub_status counters.

Series (source "nginx", node "lb"): `active`, `reading`, `writing`, `waiting` (connections now)
and `accepts`, `handled`, `requests` (cumulative since nginx started; a reload keeps them, a
restart resets them). The collector polls over one kept-alive connection, so it adds one
request per round to `requests`, and its own connection counts in `active` and `writing`.
"""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.parse

from eicore.cluster import Cluster
from loadtests.collectors.base import Collector, Sample, log

NODE = "lb"
_STUB_RE = re.compile(
    r"Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)\s+"
    r"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)"
)
_FIELDS = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")


def parse_stub_status(text: str) -> dict[str, int]:
    """The seven stub_status numbers by name; ValueError when `text` is not a stub_status page."""
    m = _STUB_RE.search(text)
    if not m:
        raise ValueError(f"not an nginx stub_status page: {text[:80]!r}")
    return dict(zip(_FIELDS, map(int, m.groups()), strict=True))


class NginxCollector(Collector):
    """GET the load balancer's stub_status URL every round (short timeout)."""

    name = "nginx"

    def __init__(self, cluster: Cluster, timeout_s: float = 0.5) -> None:
        super().__init__()
        self.url = cluster.load_balancer.status_url
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def start(self) -> None:
        if not self.url:
            log.info("nginx: the cluster file has no load_balancer.status_url; not collecting")

    def sample(self, now: float) -> list[Sample]:
        if not self.url:
            return []
        try:
            values = parse_stub_status(self._get())
        except (OSError, http.client.HTTPException, ValueError) as e:
            self._drop()
            self.gap(NODE, f"{self.url}: {e}")
            return []
        self.answered(NODE)
        return [self.row(now, NODE, k, v) for k, v in values.items()]

    def close(self) -> None:
        self._drop()

    def _get(self) -> str:
        """The status page, over the kept-alive connection (reopened once if nginx closed it)."""
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._open()
            try:
                conn.request("GET", self._path(), headers={"Connection": "keep-alive"})
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
            except TimeoutError:
                self._drop()
                raise  # nginx is slow: no second try in this round
            except (OSError, http.client.HTTPException):
                self._drop()
                if reused and attempt == 1:
                    continue  # nginx closed the idle connection: one fresh try
                raise
            if resp.status != 200:
                self._drop()
                raise ValueError(f"HTTP {resp.status}")
            if resp.will_close:
                self._drop()
            return body
        raise AssertionError("unreachable")

    def _open(self) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # counters only; the status vhost is not the test
            self._conn = http.client.HTTPSConnection(parts.hostname, parts.port,
                                                     timeout=self.timeout_s, context=ctx)
        else:
            self._conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                                    timeout=self.timeout_s)
        return self._conn

    def _path(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
