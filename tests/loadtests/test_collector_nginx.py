"""NginxCollector: stub_status parsing and counters that follow real traffic."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from loadtests.collectors.nginx_collector import NginxCollector, parse_stub_status

# nginx really ends these lines with a space
PAGE = ("Active connections: 3 \n"
        "server accepts handled requests\n"
        " 17 17 52 \n"
        "Reading: 0 Writing: 1 Waiting: 2 \n")


def test_parse_stub_status():
    assert parse_stub_status(PAGE) == {"active": 3, "accepts": 17, "handled": 17, "requests": 52,
                                       "reading": 0, "writing": 1, "waiting": 2}
    with pytest.raises(ValueError, match="stub_status"):
        parse_stub_status("<html>404 Not Found</html>")


def test_counters_rise_after_requests(testbed):
    lb = testbed.load_balancer
    with NginxCollector(testbed) as collector:
        before = {r.metric: r.value for r in collector.sample(time.time())}
        for _ in range(5):
            req = urllib.request.Request(lb.http_url + "/", headers={"Host": lb.host_name,
                                                                    "Connection": "close"})
            try:
                urllib.request.urlopen(req, timeout=5).read()
            except urllib.error.HTTPError:
                pass  # any status: nginx counted the request
        after = {r.metric: r.value for r in collector.sample(time.time())}
    # our 5 requests on 5 connections, plus the collector's own poll (kept alive)
    assert after["requests"] >= before["requests"] + 6
    assert after["accepts"] >= before["accepts"] + 5
    assert after["handled"] >= before["handled"] + 5
    assert after["active"] >= 1 and after["writing"] >= 1  # the poll itself


def test_status_polls_reuse_one_connection(testbed):
    with NginxCollector(testbed) as collector:
        first = {r.metric: r.value for r in collector.sample(time.time())}
        for _ in range(3):
            last = {r.metric: r.value for r in collector.sample(time.time())}
    assert last["requests"] >= first["requests"] + 3
    # no new connection per poll (others' traffic on this testbed could add some, not 3 each)
    assert last["accepts"] - first["accepts"] < 3
