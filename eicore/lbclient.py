"""A small keep-alive HTTP(S) client for the load balancer's vhosts (for checks, not load).

Routes by the Host header the cluster file names, verifies TLS against the cluster's CA,
and tells which node served each request from nginx's upstream header.
"""

from __future__ import annotations

import http.client
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from eicore.cluster import Cluster

VHOSTS = ("http", "https", "console")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    node: str | None
    upstream: str | None
    latency_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 400


def ssl_context(cluster: Cluster) -> ssl.SSLContext:
    """Verify against the cluster's CA file when it names one, else the system CAs."""
    ctx = ssl.create_default_context(cafile=cluster.load_balancer.ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class LbClient:
    """One persistent connection per vhost; reconnects after a failure."""

    def __init__(self, cluster: Cluster, timeout: float = 10.0) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self._ctx = ssl_context(cluster)
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def _target(self, vhost: str) -> tuple[str, str]:
        lb = self.cluster.load_balancer
        url, host = {
            "http": (lb.http_url, lb.host_name),
            "https": (lb.https_url, lb.host_name),
            "console": (lb.console_url, lb.console_host_name),
        }[vhost]
        return url, host

    def _conn(self, vhost: str) -> http.client.HTTPConnection:
        if vhost not in self._conns:
            url, _ = self._target(vhost)
            parts = urlsplit(url)
            if parts.scheme == "https":
                self._conns[vhost] = http.client.HTTPSConnection(
                    parts.hostname, parts.port or 443, timeout=self.timeout, context=self._ctx)
            else:
                self._conns[vhost] = http.client.HTTPConnection(
                    parts.hostname, parts.port or 80, timeout=self.timeout)
        return self._conns[vhost]

    def request(self, vhost: str, method: str, path: str, body: bytes | None = None,
                content_type: str = "text/xml; charset=UTF-8",
                headers: dict[str, str] | None = None) -> Reply:
        """Send one request through a vhost; a connection error becomes Reply.error."""
        url, host = self._target(vhost)
        port = urlsplit(url).port
        default_port = 443 if url.startswith("https") else 80
        hdrs = {"Host": host if port in (None, default_port) else f"{host}:{port}"}
        if body is not None:
            hdrs["Content-Type"] = content_type
            hdrs["SOAPAction"] = "urn:mediate"
        hdrs.update(headers or {})
        start = time.perf_counter()
        try:
            conn = self._conn(vhost)
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            upstream = resp.getheader(self.cluster.load_balancer.upstream_header)
            return Reply(resp.status, data, self.cluster.node_for_upstream(upstream), upstream,
                         time.perf_counter() - start)
        except (OSError, http.client.HTTPException) as e:
            self._conns.pop(vhost, None)
            return Reply(0, b"", None, None, time.perf_counter() - start,
                         f"{type(e).__name__}: {e}")

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def __enter__(self) -> LbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
