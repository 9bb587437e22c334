"""The tuning parameter namespace: names, typed values, one-line errors, grouping by target."""

from __future__ import annotations

import pytest

from eicore.errors import EiperfError
from tuning.params import (
    PARAMETERS,
    ParameterError,
    ParamSet,
    Target,
    format_assignment,
    lookup,
    parse_assignment,
    size_to_bytes,
    target_of,
    validate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jvm.xmx=2g", ("jvm.xmx", "2g")),
        ("jvm.xms=512M", ("jvm.xms", "512m")),
        ("jvm.max_metaspace=1024k", ("jvm.max_metaspace", "1024k")),
        ("jvm.gc=zgc", ("jvm.gc", "ZGC")),
        ("jvm.gc=G1GC", ("jvm.gc", "G1")),
        ("jvm.gc=shenandoah", ("jvm.gc", "Shenandoah")),
        ("jvm.flag.UseStringDeduplication=true", ("jvm.flag.UseStringDeduplication", True)),
        (
            "jvm.flag.HeapDumpOnOutOfMemoryError=FALSE",
            ("jvm.flag.HeapDumpOnOutOfMemoryError", False),
        ),
        ("jvm.flag.ParallelGCThreads=4", ("jvm.flag.ParallelGCThreads", "4")),
        ("nginx.proxy_read_timeout=60s", ("nginx.proxy_read_timeout", "60s")),
        ("nginx.proxy_send_timeout=5m", ("nginx.proxy_send_timeout", "5m")),
        ("nginx.proxy_connect_timeout=500ms", ("nginx.proxy_connect_timeout", "500ms")),
        ("nginx.proxy_read_timeout=90", ("nginx.proxy_read_timeout", "90")),
        ("nginx.fail_timeout=1m30s", ("nginx.fail_timeout", "1m30s")),
        ("nginx.upstream_keepalive=0", ("nginx.upstream_keepalive", 0)),
        ("nginx.lb_method=Least-Conn", ("nginx.lb_method", "least_conn")),
        ("nginx.max_fails=3", ("nginx.max_fails", 3)),
        ("nginx.worker_processes=auto", ("nginx.worker_processes", "auto")),
        ("nginx.worker_processes=4", ("nginx.worker_processes", 4)),
        ("nginx.worker_connections=4096", ("nginx.worker_connections", 4096)),
        ("passthru.worker_pool_size_core=200", ("passthru.worker_pool_size_core", 200)),
        ("passthru.worker_pool_queue_length=-1", ("passthru.worker_pool_queue_length", -1)),
        ("passthru.http.user.agent.preserve=true", ("passthru.http.user.agent.preserve", "true")),
        (" jvm.xmx = 2g ", ("jvm.xmx", "2g")),
    ],
)
def test_parse_assignment_checks_and_normalises(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jvm.xmx=2x", "jvm.xmx: '2x' is not a size; use e.g. 512m or 2g"),
        ("jvm.xmx=2048", "jvm.xmx: '2048' has no unit; use e.g. 2048m (k, m, g or t)"),
        ("jvm.xms=0m", "jvm.xms: '0m' is zero; use e.g. 512m or 2g"),
        ("jvm.xmx=", "jvm.xmx: no value given; use e.g. jvm.xmx=2g"),
        ("jvm.xmx2g", "'jvm.xmx2g' is not an assignment; use NAME=VALUE, e.g. jvm.xmx=2g"),
        ("=2g", "'=2g' is not an assignment; use NAME=VALUE, e.g. jvm.xmx=2g"),
        ("jvm.gc=Epsilon", "jvm.gc: 'Epsilon' is not one of G1, Parallel, ZGC, Shenandoah, "
                           "Serial, CMS"),
        (
            "nginx.proxy_read_timeout=5 min",
            "nginx.proxy_read_timeout: '5 min' is not an nginx time; use e.g. 60s, 5m, 500ms or 60 (seconds)",
        ),
        ("nginx.max_fails=-1", "nginx.max_fails: -1 is too small; use 0 or more"),
        (
            "nginx.max_fails=three",
            "nginx.max_fails: 'three' is not a whole number; use e.g. nginx.max_fails=3",
        ),
        (
            "nginx.worker_processes=0",
            "nginx.worker_processes: '0' is not a count; use auto or e.g. 4",
        ),
        (
            "nginx.lb_method=sticky",
            "nginx.lb_method: 'sticky' is not one of round_robin, least_conn, ip_hash",
        ),
        ("jvm.xmxx=2g", "'jvm.xmxx' is not a tuning parameter; did you mean jvm.xmx?"),
        (
            "nginx.proxy_read_timout=60s",
            "'nginx.proxy_read_timout' is not a tuning parameter; did you mean nginx.proxy_read_timeout?",
        ),
        (
            "jvm.flags.UseNUMA=true",
            "'jvm.flags.UseNUMA' is not a tuning parameter; did you mean jvm.flag.UseNUMA?",
        ),
        (
            "passthr.io_buffer_size=1",
            "'passthr.io_buffer_size' is not a tuning parameter; did you mean passthru.io_buffer_size?",
        ),
        (
            "heap=2g",
            "'heap' is not a tuning parameter; names start with jvm., nginx. or passthru. "
            "(e.g. jvm.xmx, nginx.proxy_read_timeout, passthru.worker_pool_size_core)",
        ),
        (
            "jvm.flag.+UseNUMA=true",
            "jvm.flag.+UseNUMA: write the flag without +/-, e.g. jvm.flag.UseNUMA=true",
        ),
        (
            "jvm.flag.-UseNUMA=1",
            "jvm.flag.-UseNUMA: write the flag without +/-, e.g. jvm.flag.UseNUMA=false",
        ),
        ("jvm.flag.Use NUMA=true", "jvm.flag.Use NUMA: 'Use NUMA' is not a -XX flag name"),
        (
            "jvm.flag.=true",
            "jvm.flag.: no flag name; use e.g. jvm.flag.UseStringDeduplication=true",
        ),
        ("jvm.flag.UseG1GC=true", "jvm.flag.UseG1GC: use jvm.gc=G1 instead"),
        (
            "jvm.flag.MaxMetaspaceSize=256m",
            "jvm.flag.MaxMetaspaceSize: use jvm.max_metaspace instead",
        ),
        ("jvm.flag.MaxHeapSize=2g", "jvm.flag.MaxHeapSize: use jvm.xmx instead"),
        (
            "jvm.flag.HeapDumpPath=/tmp/a b",
            "jvm.flag.HeapDumpPath: '/tmp/a b' has spaces, quotes or shell characters; give a plain value",
        ),
        (
            "passthru.worker_pool_size_cor=10",
            "passthru.worker_pool_size_cor: not a pass-through key EI knows; did you mean passthru.worker_pool_size_core?",
        ),
        (
            "passthru.io_buffer_size=big",
            "passthru.io_buffer_size: 'big' is not a whole number; use e.g. passthru.io_buffer_size=400",
        ),
        (
            "passthru.worker_pool_size_core=0",
            "passthru.worker_pool_size_core: 0 is too small; use 1 or more",
        ),
        ("passthru.a b=1", "passthru.a b: 'a b' is not a properties key"),
    ],
)
def test_bad_assignments_give_one_clear_line(text, message):
    with pytest.raises(ParameterError) as info:
        parse_assignment(text)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_parameter_error_is_a_value_error_and_a_cli_error():
    with pytest.raises(ValueError):
        parse_assignment("jvm.xmx=lots")
    with pytest.raises(EiperfError):
        parse_assignment("jvm.xmx=lots")


def test_typed_values_from_sweep_files():
    assert validate("nginx.max_fails", 3) == 3
    assert validate("nginx.proxy_read_timeout", 60) == "60"
    assert validate("jvm.flag.UseNUMA", True) is True
    assert validate("jvm.flag.ParallelGCThreads", 4) == "4"
    assert validate("passthru.worker_pool_size_max", "600") == 600
    assert validate("jvm.xmx", None) is None
    with pytest.raises(
        ParameterError, match=r"^nginx.max_fails: True is not a text or number value$"
    ):
        validate("nginx.max_fails", True)


def test_every_parameter_has_a_target_and_help():
    assert {p.target for p in PARAMETERS.values()} == {Target.JVM, Target.NGINX}
    assert all(p.help for p in PARAMETERS.values())
    assert target_of("jvm.flag.UseNUMA") is Target.JVM
    assert target_of("passthru.io_buffer_size") is Target.PASSTHRU
    assert lookup("jvm.flag.UseNUMA").name == "jvm.flag.<Name>"


def test_size_to_bytes():
    assert size_to_bytes("512m") == 512 * 1024 * 1024
    assert size_to_bytes("2G") == 2 * 1024**3
    assert size_to_bytes("1024k") == 1024 * 1024


def test_param_set_groups_by_target():
    params = ParamSet.parse(
        ["jvm.xmx=2g", "nginx.proxy_read_timeout=60s", "passthru.worker_pool_size_core=200"]
    )
    assert params.jvm == {"jvm.xmx": "2g"}
    assert params.nginx == {"nginx.proxy_read_timeout": "60s"}
    assert params.passthru == {"passthru.worker_pool_size_core": 200}
    assert params.targets == {Target.JVM, Target.NGINX, Target.PASSTHRU}
    assert params.needs_node_restart and params.needs_nginx_reload
    assert dict(params) == {
        "jvm.xmx": "2g",
        "nginx.proxy_read_timeout": "60s",
        "passthru.worker_pool_size_core": 200,
    }


def test_what_a_change_needs():
    assert not ParamSet.parse(["nginx.lb_method=least_conn"]).needs_node_restart
    assert ParamSet.parse(["nginx.lb_method=least_conn"]).needs_nginx_reload
    # EI reads passthru-http.properties only at start-up: a restart, not a reload.
    assert ParamSet.parse(["passthru.io_buffer_size=8192"]).needs_node_restart
    assert not ParamSet.parse(["jvm.gc=ZGC"]).needs_nginx_reload
    assert not ParamSet().needs_node_restart and not ParamSet().needs_nginx_reload


def test_param_set_round_trips_through_assignments():
    given = ["jvm.xmx=2g", "jvm.flag.UseNUMA=false", "nginx.upstream_keepalive=16"]
    assert ParamSet.parse(given).assignments() == given
    assert format_assignment("jvm.flag.UseNUMA", True) == "jvm.flag.UseNUMA=true"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["jvm.xmx=2g", "jvm.xmx=4g"], "jvm.xmx: set twice ('2g' and '4g'); give it once"),
        (["jvm.xms=4g", "jvm.xmx=2g"], "jvm.xms: 4g is above jvm.xmx 2g; the JVM refuses that"),
        (
            ["passthru.worker_pool_size_core=600", "passthru.worker_pool_size_max=500"],
            "passthru.worker_pool_size_core: 600 is above worker_pool_size_max 500; raise the max too",
        ),
    ],
)
def test_param_set_rejects_what_would_fail_at_start_up(values, message):
    with pytest.raises(ParameterError) as info:
        ParamSet.parse(values)
    assert str(info.value) == message


def test_param_set_from_mapping_validates_and_allows_removal():
    params = ParamSet({"jvm.xmx": "2G", "jvm.gc": None})
    assert params["jvm.xmx"] == "2g" and params["jvm.gc"] is None
    assert params.assignments() == ["jvm.xmx=2g"]
    with pytest.raises(ParameterError, match="did you mean jvm.gc"):
        ParamSet({"jvm.gcc": "G1"})
