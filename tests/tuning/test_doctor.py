"""The doctor's checks, pure, on facts shaped like real hosts' and files shaped like the
product's (the guide's vhosts in tests/tuning/fixtures, node files the testbed's templates
render); each broken copy fails (or warns) for its own reason and passes once fixed."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from eicore.cluster import Cluster, LoadBalancer, Node
from testbed.layout import (
    CONSOLE_HOST_NAME,
    DOMAIN,
    HOST_NAME,
    render_integrator_sh,
    template_env,
)
from tuning.doctor.cluster_checks import check_cluster
from tuning.doctor.diagnose import judge
from tuning.doctor.facts import (
    ClusterFacts,
    NginxFacts,
    NodeFacts,
    parse_host_output,
    sysctl_path,
)
from tuning.doctor.fix import merge_dropin, plan_fixes, relocate
from tuning.doctor.nginx_checks import check_nginx, nginx_seconds
from tuning.doctor.os_checks import (
    LIMITS_DROPIN,
    SYSCTL_DROPIN,
    SYSCTL_GLOBAL_DROPIN,
    SYSCTL_KEYS,
    check_host,
    check_jvm_limit,
)
from tuning.doctor.row import Verdict, failed
from tuning.doctor.table import as_document, fix_script, format_table

FIXTURES = Path(__file__).parent / "fixtures"

# What the facts script prints on a Linux 6.x host (no tcp_tw_recycle), Debian defaults, with
# a low local port range and a 4096-file limit on the EI user.
HOST_OUTPUT = """kernel 6.1.0-18-amd64
user wso2
nofile 4096 4096
sysctl /proc/sys/net/ipv4/tcp_fin_timeout=60
sysctl /proc/sys/net/ipv4/tcp_tw_reuse=2
sysctl /proc/sys/net/ipv4/tcp_tw_recycle
sysctl /proc/sys/net/core/rmem_default=212992
sysctl /proc/sys/net/core/wmem_default=212992
sysctl /proc/sys/net/core/rmem_max=212992
sysctl /proc/sys/net/core/wmem_max=212992
sysctl /proc/sys/net/ipv4/tcp_rmem=4096 131072 33554432
sysctl /proc/sys/net/ipv4/tcp_wmem=4096 16384 4194304
sysctl /proc/sys/fs/file-max=9223372036854775807
sysctl /proc/sys/net/ipv4/ip_local_port_range=1024 65000
"""
JVM_LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            {soft}                 {hard}                 files
Max locked memory         8388608              8388608              bytes
"""


def _by_check(rows):
    return {r.check: r for r in rows}


@pytest.fixture
def host_rows():
    facts = parse_host_output("10.0.1.11", ("node1",), HOST_OUTPUT, SYSCTL_KEYS)
    return _by_check(check_host(facts))


def test_kernel_without_tcp_tw_recycle_is_not_applicable(host_rows):
    row = host_rows["net.ipv4.tcp_tw_recycle"]
    assert row.verdict is Verdict.NA and "4.12" in row.current and row.fix == ""


def test_low_port_range_fails_and_keeps_the_upper_bound(host_rows):
    row = host_rows["net.ipv4.ip_local_port_range"]
    assert row.verdict is Verdict.FAIL and row.current == "1024 65000"
    assert row.fix == "net.ipv4.ip_local_port_range = 10000 65000"
    assert row.fix_file == SYSCTL_DROPIN


@pytest.mark.parametrize(("low", "verdict"), [("1024", Verdict.FAIL), ("9999", Verdict.FAIL),
                                              ("10000", Verdict.OK), ("32768", Verdict.OK)])
def test_port_range_lower_bound(low, verdict):
    text = HOST_OUTPUT.replace("=1024 65000", f"={low} 60999")
    rows = _by_check(check_host(parse_host_output("h", ("lb",), text, SYSCTL_KEYS)))
    assert rows["net.ipv4.ip_local_port_range"].verdict is verdict


def test_sysctls_below_wso2_warn_and_the_fix_keeps_better_numbers(host_rows):
    assert host_rows["net.ipv4.tcp_fin_timeout"].verdict is Verdict.WARN
    assert host_rows["net.ipv4.tcp_fin_timeout"].fix == "net.ipv4.tcp_fin_timeout = 30"
    assert host_rows["net.ipv4.tcp_tw_reuse"].verdict is Verdict.WARN
    assert host_rows["net.core.rmem_max"].fix == "net.core.rmem_max = 67108864"
    assert host_rows["net.ipv4.tcp_rmem"].verdict is Verdict.OK  # every number ≥ WSO2's
    # tcp_wmem: the middle and upper numbers are low; the fix raises them only
    assert host_rows["net.ipv4.tcp_wmem"].fix == "net.ipv4.tcp_wmem = 4096 65536 16777216"
    assert host_rows["fs.file-max"].verdict is Verdict.OK


def test_a_4096_limit_on_the_ei_user(host_rows):
    soft, hard = host_rows["nofile soft (wso2)"], host_rows["nofile hard (wso2)"]
    assert soft.verdict is Verdict.OK  # WSO2's soft minimum
    assert hard.verdict is Verdict.FAIL and hard.fix == "wso2 hard nofile 65535"
    assert hard.fix_file == LIMITS_DROPIN


@pytest.mark.parametrize(("soft", "verdict"), [("1024", Verdict.FAIL), ("4096", Verdict.FAIL),
                                               ("20000", Verdict.WARN), ("65536", Verdict.OK),
                                               ("unlimited", Verdict.OK)])
def test_running_jvm_limit(soft, verdict):
    node = NodeFacts("node1", "10.0.1.11", 0, pid=4242,
                     jvm_limits=JVM_LIMITS.format(soft=soft, hard=soft))
    row = check_jvm_limit(node, "wso2")
    assert row.verdict is verdict and row.current == f"{soft} (pid 4242)"


def test_jvm_not_running_is_not_applicable():
    row = check_jvm_limit(NodeFacts("node1", "10.0.1.11", 0, pid=None))
    assert row.verdict is Verdict.NA and "not running" in row.current


def test_unreachable_host_fails():
    facts = parse_host_output("h", ("node1",), "", SYSCTL_KEYS)
    facts = replace(facts, error="ssh: no route to host")
    assert [r.verdict for r in check_host(facts)] == [Verdict.FAIL]


# ---- nginx: the guide's three vhosts ---------------------------------------------------------

LB = LoadBalancer("http://lb", "https://lb", "https://lb")
NODES = (Node("node1", "192.168.48.4", "/opt/ei"), Node("node2", "192.168.48.5", "/opt/ei"))


def _guide_files() -> dict[str, str | None]:
    return {name: (FIXTURES / name).read_text()
            for name in ("ei.http.conf", "ei.https.conf", "ui.ei.https.conf")}


def test_the_guides_vhosts_pass():
    rows = check_nginx(LB, NODES, _guide_files())
    by = _by_check(rows)
    for check in ("vhost ei.http (ei.wso2.com, http)", "vhost ei.https (ei.wso2.com, https)",
                  "vhost ui.ei.https (ui.ei.wso2.com, https)", "upstream wso2.ei.com members",
                  "upstream ssl.wso2.ei.com members", "console target"):
        assert by[check].verdict is Verdict.OK, by[check]
    assert by["upstream wso2.ei.com members"].current == "node1, node2"
    assert by["upstream wso2.ei.com keepalive"].verdict is Verdict.WARN  # the guide sets none
    assert not failed(rows)


def _broken(name: str, old: str, new: str) -> dict[str, str | None]:
    files = _guide_files()
    assert old in files[name]
    files[name] = files[name].replace(old, new)
    return files


@pytest.mark.parametrize(("files", "check", "verdict", "fix"), [
    pytest.param(_broken("ei.http.conf", "        server 192.168.48.5:8280;\n", ""),
                 "upstream wso2.ei.com members", Verdict.FAIL, "server 192.168.48.5:8280;",
                 id="upstream-missing-a-node"),
    pytest.param(_broken("ei.http.conf", "server_name ei.wso2.com", "server_name other.com"),
                 "vhost ei.http (ei.wso2.com, http)", Verdict.FAIL, "server {",
                 id="http-vhost-missing"),
    pytest.param({**_guide_files(), "ui.ei.https.conf": None},
                 "vhost ui.ei.https (ui.ei.wso2.com, https)", Verdict.FAIL, "server {",
                 id="console-vhost-file-missing"),
    pytest.param(_broken("ei.https.conf", "192.168.48.5:8243;", "192.168.48.5:8243 backup;"),
                 "upstream ssl.wso2.ei.com backup", Verdict.FAIL, "remove 'ip_hash;'",
                 id="backup-beside-ip_hash"),
    pytest.param(_broken("ei.http.conf", "proxy_read_timeout 5m", "proxy_read_timeout 60s"),
                 "proxy_read_timeout (ei.http.conf:14)", Verdict.WARN, "proxy_read_timeout 5m;",
                 id="short-read-timeout"),
])
def test_broken_nginx(files, check, verdict, fix):
    by = _by_check(check_nginx(LB, NODES, files))
    assert by[check].verdict is verdict, by[check]
    assert by[check].fix.startswith(fix)


def test_backup_members_are_reported_and_keepalive_recognised():
    files = _broken("ei.http.conf", "192.168.48.5:8280;", "192.168.48.5:8280 backup;\n"
                    "        keepalive 16;")
    by = _by_check(check_nginx(LB, NODES, files))
    assert by["upstream wso2.ei.com backup"].verdict is Verdict.OK
    assert by["upstream wso2.ei.com backup"].current == "backup: node2"
    assert by["upstream wso2.ei.com members"].current == "node1, node2 (backup)"
    assert by["upstream wso2.ei.com keepalive"].current == "16"
    assert by["upstream wso2.ei.com keepalive"].verdict is Verdict.OK


def test_invalid_nginx_config_fails_in_one_row():
    rows = check_nginx(LB, NODES, _broken("ei.http.conf", "proxy_pass http://wso2.ei.com;",
                                               "proxy_pass http://wso2.ei.com"))
    assert [(r.check, r.verdict) for r in rows] == [("nginx config", Verdict.FAIL)]
    assert "ei.http.conf" in rows[0].current


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("60", 60), ("1m30s", 90),
                                               ("500ms", 0.5), ("5x", None), ("", None)])
def test_nginx_seconds(text, seconds):
    assert nginx_seconds(text) == seconds


# ---- cluster configuration: node files the testbed's templates render ------------------------

TWO_HOSTS = (Node("node1", "10.0.1.11", "/opt/ei", member_port=4100),
             Node("node2", "10.0.1.12", "/opt/ei", member_port=4100))


def _node_files(node: Node, members: tuple[Node, ...], **over: object) -> dict[str, str | None]:
    env = template_env()
    ctx = dict(clustering=True, domain=DOMAIN, host=node.host, member_port=node.member_port,
               members=[{"host": m.host, "port": m.member_port} for m in members],
               offset=node.port_offset, keystore_password="s3cret-keystore")
    ctx.update(over)
    return {"carbon.xml": env.get_template("carbon.xml.j2").render(**ctx),
            "axis2.xml": env.get_template("axis2.xml.j2").render(**ctx),
            "catalina-server.xml": env.get_template("catalina-server.xml.j2").render(),
            "passthru-http.properties": "worker_pool_size_core=400\n",
            "integrator.sh": render_integrator_sh()}


def _cluster(nodes=TWO_HOSTS) -> Cluster:
    lb = replace(LB, host_name=HOST_NAME, console_host_name=CONSOLE_HOST_NAME)
    return Cluster("c", lb, nodes)


def _facts(nodes=TWO_HOSTS, edit=None) -> tuple[NodeFacts, ...]:
    out = []
    for n in nodes:
        files = _node_files(n, nodes)
        if edit and n.name == "node2":
            edit(files)
        out.append(NodeFacts(n.name, n.host, n.port_offset, files=files,
                             proxies={"SampleProxy.xml": "<proxy/>"}))
    return tuple(out)


def _row(rows, host, check):
    return next(r for r in rows if r.check == check and r.host.startswith(host))


def test_testbed_shaped_nodes_on_two_hosts_pass_the_clustering_checks():
    rows = check_cluster(_cluster(), _facts())
    assert not failed(rows), [r for r in rows if r.verdict is Verdict.FAIL]
    assert _row(rows, "node1", "wka members").current == "10.0.1.11:4100, 10.0.1.12:4100"
    # the testbed writes the node's address as HostName, not the LB's host name: a warning
    assert _row(rows, "node1", "carbon.xml HostName").verdict is Verdict.WARN


def _sub(name: str, old: str, new: str):
    def edit(files):
        assert old in files[name], old
        files[name] = files[name].replace(old, new)
    return edit


@pytest.mark.parametrize(("edit", "check", "verdict"), [
    pytest.param(_sub("axis2.xml", 'enable="true"', 'enable="false"'), "clustering enabled",
                 Verdict.FAIL, id="clustering-off"),
    pytest.param(_sub("axis2.xml", ">wka<", ">multicast<"), "membershipScheme", Verdict.FAIL,
                 id="not-wka"),
    pytest.param(_sub("axis2.xml", f">{DOMAIN}<", ">other.domain<"), "domain", Verdict.FAIL,
                 id="another-domain"),
    pytest.param(_sub("axis2.xml", "<hostName>10.0.1.11</hostName>",
                      "<hostName>10.0.1.99</hostName>"), "wka members", Verdict.FAIL,
                 id="wka-list-misses-a-member"),
    pytest.param(_sub("axis2.xml", '"localMemberHost">10.0.1.12<', '"localMemberHost">127.0.0.1<'),
                 "localMemberHost", Verdict.FAIL, id="loopback-member-host-across-hosts"),
    pytest.param(_sub("carbon.xml", "<Offset>0</Offset>", "<Offset>3</Offset>"), "port offset",
                 Verdict.FAIL, id="offset-not-as-cluster-toml"),
    pytest.param(_sub("catalina-server.xml", 'proxyPort="443"', ""),
                 "proxyPort of the 9443 connector", Verdict.WARN, id="console-proxyPort-missing"),
    pytest.param(_sub("passthru-http.properties", "=400", "=40"),
                 "passthru-http.properties alike", Verdict.WARN, id="passthru-drift"),
    pytest.param(_sub("integrator.sh", "-Xmx1024m", "-Xmx2g"),
                 "JVM flags alike (bin/integrator.sh)", Verdict.WARN, id="jvm-xmx-drift"),
])
def test_broken_node_files(edit, check, verdict):
    good = {(r.host, r.check): r.verdict for r in check_cluster(_cluster(), _facts())}
    rows = check_cluster(_cluster(), _facts(edit=edit))
    hits = [r for r in rows if r.check == check and r.verdict is verdict]
    assert hits, [r for r in rows if r.check == check]
    assert all(good[(r.host, r.check)] is Verdict.OK for r in hits)  # passed before the edit
    assert all(r.fix for r in hits)


@pytest.mark.parametrize(("edit", "listed"), [
    pytest.param(_sub("integrator.sh", "-Xmx1024m", "-Xmx2g"),
                 "differ: jvm.xmx (node1 1024m, node2 2g)", id="xmx"),
    pytest.param(_sub("integrator.sh", '-Xmx1024m"', '-Xmx1024m -XX:+UseParallelGC"'),
                 "differ: jvm.gc (node1 -, node2 Parallel)", id="gc-on-one-node"),
    pytest.param(lambda f: f.update({"integrator.sh": None}),
                 "unreadable: node2: bin/integrator.sh missing", id="script-missing"),
])
def test_jvm_flag_drift_lists_each_nodes_value(edit, listed):
    row = _row(check_cluster(_cluster(), _facts()), "all nodes",
               "JVM flags alike (bin/integrator.sh)")
    assert row.verdict is Verdict.OK and row.current.startswith("identical (")
    row = _row(check_cluster(_cluster(), _facts(edit=edit)), "all nodes",
               "JVM flags alike (bin/integrator.sh)")
    assert row.verdict is Verdict.WARN and row.current == listed
    assert row.fix_file == "bin/integrator.sh"


def test_member_port_and_offset_taken_twice_on_one_host():
    same = (replace(TWO_HOSTS[0], host="10.0.1.11"), replace(TWO_HOSTS[1], host="10.0.1.11"))
    rows = check_cluster(_cluster(same), _facts(same))
    assert _row(rows, "node2", "localMemberPort").verdict is Verdict.FAIL
    assert _row(rows, "node2", "port offset").verdict is Verdict.FAIL
    spread = (same[0], replace(same[1], member_port=4101, port_offset=1))
    rows = check_cluster(_cluster(spread), _facts(spread))
    assert _row(rows, "node2", "localMemberPort").verdict is Verdict.OK
    assert _row(rows, "node2", "port offset").verdict is Verdict.OK


def test_plain_text_passwords_are_named_never_shown():
    rows = check_cluster(_cluster(), _facts())
    row = _row(rows, "node1", "plain-text passwords")
    assert row.verdict is Verdict.WARN and "KeyStore/Password" in row.current
    text = "\n".join(format_table(rows)) + json.dumps(as_document(rows, "c"))
    assert "s3cret-keystore" not in text + "\n".join(fix_script(rows))


def test_missing_node_file_fails():
    rows = check_cluster(_cluster(), _facts(edit=lambda f: f.update({"axis2.xml": None})))
    assert _row(rows, "node2", "file axis2.xml").verdict is Verdict.FAIL


# ---- the whole: judge, exit rule, table, JSON, fix script ------------------------------------


def _whole(host_output: str = HOST_OUTPUT) -> list:
    cluster = _cluster()
    hosts = tuple(parse_host_output(n.host, (n.name,), host_output, SYSCTL_KEYS)
                  for n in cluster.nodes)
    return judge(cluster, ClusterFacts(hosts, _facts(), NginxFacts("lb", {}), cluster.load_balancer))


def test_fix_script_writes_drop_ins_per_host_and_is_a_valid_shell_script(tmp_path):
    script = "\n".join(fix_script(_whole()))
    assert script.count("# ---- 10.0.1.1") == 2
    assert "put /etc/sysctl.d/90-eiperf-wso2.conf" in script
    assert "'net.ipv4.ip_local_port_range = 10000 65000'" in script
    assert "'wso2 hard nofile 65535'" in script
    assert "s3cret-keystore" not in script
    # the put helper, run on a scratch file twice: one line per key, the last value wins
    helper = script.split("set -e\n", 1)[1].split("\n\n", 1)[0]
    drop = tmp_path / "d.conf"
    body = (f"{helper}\nput {drop} '^[[:space:]]*net\\.ipv4\\.tcp_fin_timeout[[:space:]]*=' "
            "'net.ipv4.tcp_fin_timeout = 30'\n")
    drop.write_text("net.ipv4.tcp_fin_timeout = 45\nnet.core.rmem_max = 1\n")
    for _ in range(2):
        subprocess.run(["sh", "-ec", body], check=True)
    assert drop.read_text() == "net.core.rmem_max = 1\nnet.ipv4.tcp_fin_timeout = 30\n"


def test_exit_rule_and_json_document():
    rows = _whole()
    doc = as_document(rows, "c")
    assert doc["ok"] is False and doc["counts"]["fail"] == sum(
        r["verdict"] == "fail" for r in doc["rows"])
    fine = HOST_OUTPUT.replace("=1024 65000", "=32768 60999").replace("4096 4096", "65535 65535")
    rows = [r for r in _whole(fine) if r.area.value == "os"]
    assert not failed(rows)
    assert format_table(rows)[-1].endswith("nothing fails")


# ---- --fix: the drop-ins it writes (the writing itself: tests/eiperf/test_doctor_fix.py) -------


def test_fix_plan_puts_kernel_wide_values_apart_from_net_ones():
    text = HOST_OUTPUT.replace("file-max=9223372036854775807", "file-max=65536")
    rows = check_host(parse_host_output("h", ("node1",), text, SYSCTL_KEYS))
    plan = plan_fixes(rows)["h (node1)"]
    assert plan[SYSCTL_GLOBAL_DROPIN] == ["fs.file-max = 2097152"]
    assert all(x.startswith("net.") for x in plan[SYSCTL_DROPIN])
    assert "net.ipv4.ip_local_port_range = 10000 65000" in plan[SYSCTL_DROPIN]
    assert plan[LIMITS_DROPIN] == ["wso2 hard nofile 65535"]


@pytest.mark.parametrize(("old", "lines", "dropin", "new"), [
    (None, ["net.ipv4.tcp_fin_timeout = 30"], SYSCTL_DROPIN,
     "# written by eiperf doctor --fix (eiperf tune restore removes it)\n"
     "net.ipv4.tcp_fin_timeout = 30\n"),
    ("# mine\nnet.ipv4.tcp_fin_timeout=45\nnet.core.rmem_max = 1", ["net.ipv4.tcp_fin_timeout = 30"],
     SYSCTL_DROPIN, "# mine\nnet.core.rmem_max = 1\nnet.ipv4.tcp_fin_timeout = 30\n"),
    ("wso2  hard nofile 4096\nwso2 soft nofile 4096\n", ["wso2 hard nofile 65535"], LIMITS_DROPIN,
     "wso2 soft nofile 4096\nwso2 hard nofile 65535\n"),
])
def test_merge_dropin_replaces_a_keys_line_and_keeps_the_rest(old, lines, dropin, new):
    assert merge_dropin(old, lines, dropin) == new
    assert merge_dropin(new, lines, dropin) == new  # twice is once


def test_a_read_only_net_value_is_kernel_wide():
    """A network namespace shows net.core.rmem_max read-only (the kernel's own): its fix is
    written for the next boot, never applied with the namespace's values."""
    text = HOST_OUTPUT + "readonly /proc/sys/net/core/rmem_max\n"
    rows = _by_check(check_host(parse_host_output("h", ("node1",), text, SYSCTL_KEYS)))
    assert rows["net.core.rmem_max"].fix_file == SYSCTL_GLOBAL_DROPIN
    assert rows["net.core.wmem_max"].fix_file == SYSCTL_DROPIN


def test_relocate_under_another_etc():
    assert relocate(SYSCTL_DROPIN, "/etc") == SYSCTL_DROPIN
    assert relocate(LIMITS_DROPIN, "/srv/x/etc/") == "/srv/x/etc/security/limits.d/90-eiperf-wso2.conf"


# ---- one table: each OS check broken on its own, then fixed -----------------------------------

# What a host tuned as WSO2 asks prints (Linux >= 4.12: no tcp_tw_recycle).
TUNED = """kernel 6.1.0-18-amd64
user wso2
nofile 4096 65535
sysctl /proc/sys/net/ipv4/tcp_fin_timeout=30
sysctl /proc/sys/net/ipv4/tcp_tw_reuse=1
sysctl /proc/sys/net/ipv4/tcp_tw_recycle
sysctl /proc/sys/net/core/rmem_default=524288
sysctl /proc/sys/net/core/wmem_default=524288
sysctl /proc/sys/net/core/rmem_max=67108864
sysctl /proc/sys/net/core/wmem_max=67108864
sysctl /proc/sys/net/ipv4/tcp_rmem=4096 87380 16777216
sysctl /proc/sys/net/ipv4/tcp_wmem=4096\t65536\t16777216
sysctl /proc/sys/fs/file-max=2097152
sysctl /proc/sys/net/ipv4/ip_local_port_range=10000 65000
"""


@pytest.mark.parametrize(("check", "old", "new", "verdict"), [
    ("net.ipv4.tcp_fin_timeout", "tcp_fin_timeout=30", "tcp_fin_timeout=60", Verdict.WARN),
    ("net.ipv4.tcp_tw_reuse", "tcp_tw_reuse=1", "tcp_tw_reuse=2", Verdict.WARN),
    ("net.core.rmem_default", "rmem_default=524288", "rmem_default=212992", Verdict.WARN),
    ("net.core.wmem_default", "wmem_default=524288", "wmem_default=212992", Verdict.WARN),
    ("net.core.rmem_max", "rmem_max=67108864", "rmem_max=212992", Verdict.WARN),
    ("net.core.wmem_max", "wmem_max=67108864", "wmem_max=212992", Verdict.WARN),
    ("net.ipv4.tcp_rmem", "tcp_rmem=4096 87380", "tcp_rmem=4096 8192", Verdict.WARN),
    ("net.ipv4.tcp_wmem", "16777216\nsysctl /proc/sys/fs", "4194304\nsysctl /proc/sys/fs",
     Verdict.WARN),
    ("fs.file-max", "file-max=2097152", "file-max=65536", Verdict.WARN),
    ("net.ipv4.ip_local_port_range", "=10000 65000", "=1024 65000", Verdict.FAIL),
    ("nofile soft (wso2)", "nofile 4096 65535", "nofile 1024 65535", Verdict.FAIL),
    ("nofile hard (wso2)", "nofile 4096 65535", "nofile 4096 4096", Verdict.FAIL),
    ("nofile hard (wso2)", "nofile 4096 65535", "nofile 4096 16384", Verdict.WARN),
], ids=["fin_timeout", "tw_reuse", "rmem_default", "wmem_default", "rmem_max", "wmem_max",
        "tcp_rmem", "tcp_wmem-tabs", "file-max", "port_range", "nofile_soft", "nofile_hard-4096",
        "nofile_hard-16384"])
def test_each_os_check_broken_then_fixed(check, old, new, verdict):
    """Broken on its own, the check (only it) warns or fails, with a fix line for its drop-in;
    the value its fix line sets makes it pass again."""
    tuned = _by_check(check_host(parse_host_output("h", ("node1",), TUNED, SYSCTL_KEYS)))
    assert {r.verdict for k, r in tuned.items() if k != "net.ipv4.tcp_tw_recycle"} == {Verdict.OK}
    assert old in TUNED
    broken = _by_check(check_host(parse_host_output("h", ("node1",), TUNED.replace(old, new),
                                                    SYSCTL_KEYS)))
    assert broken[check].verdict is verdict
    assert [k for k, r in broken.items() if r.verdict is not tuned[k].verdict] == [check]
    row = broken[check]
    assert row.fix and row.fix_file in (SYSCTL_DROPIN, SYSCTL_GLOBAL_DROPIN, LIMITS_DROPIN)
    if row.fix_file != LIMITS_DROPIN:  # the fix's value, read back, passes
        key, value = (x.strip() for x in row.fix.split("=", 1))
        fixed = re.sub(rf"^sysctl {re.escape(sysctl_path(key))}=.*$",
                       f"sysctl {sysctl_path(key)}={value}", TUNED.replace(old, new),
                       flags=re.MULTILINE)
        again = _by_check(check_host(parse_host_output("h", ("node1",), fixed, SYSCTL_KEYS)))
        assert again[check].verdict is Verdict.OK, (row.fix, again[check])
