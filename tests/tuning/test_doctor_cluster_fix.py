"""`eiperf doctor --fix` on the nodes' cluster files: one table of (check, breakage, verdict);
each broken copy fails (or warns) for its own reason, the planned edit makes it pass, and --
where the breakage changed a value in place -- gives back the good file byte for byte, in LF
and CRLF files alike. Then the whole of it through the change journal on copies in tmp_path:
written over the node's transport, and put back byte for byte (ISO-8859-1 bytes included)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from eicore.cluster import Cluster, LoadBalancer, Node
from eicore.transport import LocalTransport
from testbed.layout import CONSOLE_HOST_NAME, DOMAIN, HOST_NAME, template_env
from tuning.doctor.cluster_checks import check_cluster
from tuning.doctor.cluster_fix import FIXABLE, edit_node_file, plan_cluster_fixes
from tuning.doctor.facts import NODE_FILES, ClusterFacts, NginxFacts, NodeFacts, gather_node
from tuning.doctor.fix import apply_fixes
from tuning.doctor.row import Verdict
from tuning.journal import Journal

NODES = (Node("node1", "10.0.1.11", "/opt/ei", member_port=4100),
         Node("node2", "10.0.1.12", "/opt/ei", member_port=4100))
LB = LoadBalancer("http://lb", "https://lb", "https://lb", host_name=HOST_NAME,
                  console_host_name=CONSOLE_HOST_NAME)
CLUSTER_FILES = ("axis2.xml", "carbon.xml", "catalina-server.xml")


def good_files(node: Node, nodes: tuple[Node, ...], eol: str = "\n") -> dict[str, str]:
    """A node's cluster files as the guide wants them: the testbed's templates, with the load
    balancer's host names in carbon.xml."""
    env = template_env()
    ctx = dict(clustering=True, domain=DOMAIN, host=node.host, member_port=node.member_port,
               members=[{"host": m.host, "port": m.member_port} for m in nodes],
               offset=node.port_offset, keystore_password="s3cret-keystore")
    carbon = env.get_template("carbon.xml.j2").render(**ctx)
    carbon = carbon.replace(f"<HostName>{node.host}<", f"<HostName>{HOST_NAME}<")
    carbon = carbon.replace(f"<MgtHostName>{node.host}<", f"<MgtHostName>{CONSOLE_HOST_NAME}<")
    files = {"carbon.xml": carbon,
             "axis2.xml": env.get_template("axis2.xml.j2").render(**ctx),
             "catalina-server.xml": env.get_template("catalina-server.xml.j2").render()}
    return {k: v.replace("\n", eol) for k, v in files.items()}


NODE1_MEMBER = re.compile(r"[ \t]*<member>\s*<hostName>10\.0\.1\.11</hostName>\s*<port>4100</port>"
                          r"\s*</member>\r?\n")


def _sub(old: str, new: str):
    return lambda text: text.replace(old, new, 1) if old in text else pytest.fail(old)


#: (id, file of node2, breakage, check, verdict, fixed == good byte for byte)
CASES = [
    ("clustering-off", "axis2.xml", _sub('enable="true"', 'enable="false"'),
     "clustering enabled", Verdict.FAIL, True),
    ("not-wka", "axis2.xml", _sub(">wka<", ">multicast<"), "membershipScheme", Verdict.FAIL, True),
    ("another-domain", "axis2.xml", _sub(f">{DOMAIN}<", ">other.domain<"), "domain",
     Verdict.FAIL, True),
    ("wka-member-missing", "axis2.xml", lambda t: NODE1_MEMBER.sub("", t, count=1),
     "wka members", Verdict.FAIL, False),  # added at the list's end
    ("members-self-closed", "axis2.xml",
     lambda t: re.sub(r"<members>.*</members>", "<members/>", t, flags=re.DOTALL),
     "wka members", Verdict.FAIL, False),
    ("loopback-member-host", "axis2.xml",
     _sub('"localMemberHost">10.0.1.12<', '"localMemberHost">127.0.0.1<'),
     "localMemberHost", Verdict.FAIL, True),
    ("host-name-is-the-node", "carbon.xml", _sub(f">{HOST_NAME}<", ">10.0.1.12<"),
     "carbon.xml HostName", Verdict.WARN, True),
    ("mgt-host-name-commented-out-as-shipped", "carbon.xml",
     _sub(f"<MgtHostName>{CONSOLE_HOST_NAME}</MgtHostName>",
          "<!--MgtHostName>www.wso2.org</MgtHostName-->"),
     "carbon.xml MgtHostName", Verdict.WARN, False),
    ("console-proxyPort-wrong", "catalina-server.xml", _sub('proxyPort="443"', 'proxyPort="8443"'),
     "proxyPort of the 9443 connector", Verdict.WARN, True),
    ("http-connector-proxyPort-missing", "catalina-server.xml",
     lambda t: re.sub(r'[ \t]*proxyPort="80"\r?\n', "", t, count=1),
     "proxyPort of the 9763 connector", Verdict.WARN, False),
]


def _facts(files: dict[str, dict[str, str]]) -> tuple[NodeFacts, ...]:
    return tuple(NodeFacts(n.name, n.host, n.port_offset, files=dict(files[n.name]))
                 for n in NODES)


def _verdict(cluster: Cluster, files, check: str) -> Verdict:
    rows = check_cluster(cluster, _facts(files))
    return next(r for r in rows if r.check == check and r.host.startswith("node2")).verdict


def test_every_fixable_check_has_a_case():
    assert {c[3] for c in CASES} == set(FIXABLE)


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(("file", "breakage", "check", "verdict", "exact"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_broken_file_fails_and_the_fix_makes_it_pass(file, breakage, check, verdict, exact,
                                                       eol):
    cluster = Cluster("c", LB, NODES)
    good = {n.name: good_files(n, NODES, eol) for n in NODES}
    assert _verdict(cluster, good, check) is Verdict.OK
    assert not plan_cluster_fixes(cluster, _facts(good), check_cluster(cluster, _facts(good)))
    broken = {k: dict(v) for k, v in good.items()}
    broken["node2"][file] = breakage(good["node2"][file])
    assert broken["node2"][file] != good["node2"][file]
    assert _verdict(cluster, broken, check) is verdict

    rows = check_cluster(cluster, _facts(broken))
    plan = plan_cluster_fixes(cluster, _facts(broken), rows)
    assert set(plan) == {("node2", file)}, plan  # only the broken file, nothing else
    fixed = {k: dict(v) for k, v in broken.items()}
    fixed["node2"][file] = edit_node_file(broken["node2"][file], plan[("node2", file)])
    assert _verdict(cluster, fixed, check) is Verdict.OK
    before = {(r.host, r.check): r.verdict for r in check_cluster(cluster, _facts(good))}
    after = {(r.host, r.check): r.verdict for r in check_cluster(cluster, _facts(fixed))}
    assert after == before  # nothing else moved
    text = fixed["node2"][file]
    if eol == "\r\n":
        assert "\n" not in text.replace("\r\n", "")
    if exact:
        assert text == good["node2"][file]


def test_a_loopback_member_host_is_listed_by_its_fixed_address_elsewhere():
    """node2's localMemberHost 127.0.0.1 on two hosts: node1's wka list already names
    10.0.1.12, the address node2 gets; the fix must not add 127.0.0.1 to it."""
    cluster = Cluster("c", LB, NODES)
    files = {n.name: good_files(n, NODES) for n in NODES}
    files["node2"]["axis2.xml"] = files["node2"]["axis2.xml"].replace(
        '"localMemberHost">10.0.1.12<', '"localMemberHost">127.0.0.1<')
    plan = plan_cluster_fixes(cluster, _facts(files), check_cluster(cluster, _facts(files)))
    assert list(plan) == [("node2", "axis2.xml")]
    assert [e.describe() for e in plan[("node2", "axis2.xml")]] == ["localMemberHost = 10.0.1.12"]


def test_an_unfixable_finding_plans_nothing():
    """A console connector that is missing altogether is not invented: the row warns, with
    its fix line for a person, and --fix leaves the file alone."""
    cluster = Cluster("c", LB, NODES)
    files = {n.name: good_files(n, NODES) for n in NODES}
    files["node2"]["catalina-server.xml"] = re.sub(
        r"<Connector[^>]*port=\"9443\".*?/>", "", files["node2"]["catalina-server.xml"],
        flags=re.DOTALL)
    rows = check_cluster(cluster, _facts(files))
    assert any(r.check == "proxyPort of the 9443 connector" and r.verdict is Verdict.WARN
               for r in rows)
    assert plan_cluster_fixes(cluster, _facts(files), rows) == {}


# ---- through the journal, on copies in tmp_path --------------------------------------------


def _write_nodes(tmp_path: Path, files: dict[str, dict[str, bytes]]) -> Cluster:
    nodes = tuple(replace(n, ei_home=str(tmp_path / n.name)) for n in NODES)
    for n in nodes:
        for name, data in files[n.name].items():
            path = Path(n.path(*NODE_FILES[name]))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return Cluster("c", LB, nodes)


def test_fix_writes_through_the_journal_and_restore_is_byte_exact(tmp_path):
    """node2 broken three ways in CRLF files, its catalina-server.xml in ISO-8859-1 with a
    non-ASCII byte: --fix writes the three files, the checks pass when read again from disk,
    node1 is untouched, and restoring the journal gives back every byte."""
    good = {n.name: {k: v.encode() for k, v in good_files(n, NODES, "\r\n").items()}
            for n in NODES}
    broken = {k: dict(v) for k, v in good.items()}
    b2 = broken["node2"]
    b2["axis2.xml"] = NODE1_MEMBER.sub("", b2["axis2.xml"].decode(), count=1).encode()
    b2["carbon.xml"] = b2["carbon.xml"].replace(f">{HOST_NAME}<".encode(), b">10.0.1.12<")
    b2["catalina-server.xml"] = b2["catalina-server.xml"].replace(
        b"<!-- eiperf testbed:", b"<!-- Caf\xe9 eiperf testbed:").replace(
        b'proxyPort="443"', b'proxyPort="8443"')
    cluster = _write_nodes(tmp_path, broken)

    def facts() -> tuple[NodeFacts, ...]:
        return tuple(gather_node(LocalTransport(), n) for n in cluster.nodes)

    rows = check_cluster(cluster, facts())
    bad = {(r.host.split()[0], r.check) for r in rows if r.verdict is not Verdict.OK
           and r.check in FIXABLE}
    assert bad == {("node2", "wka members"), ("node2", "carbon.xml HostName"),
                   ("node2", "proxyPort of the 9443 connector")}
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    journal = Journal.begin(tmp_path / "results", None, "doctor --fix")
    out = apply_fixes(cluster, ClusterFacts((), facts(), NginxFacts("lb"), LB), rows, journal)
    assert out.complete, out.lines
    assert sorted(x.rsplit("/", 1)[-1] for x in out.written) == sorted(CLUSTER_FILES)
    rows = check_cluster(cluster, facts())
    assert not [r for r in rows if r.check in FIXABLE and r.verdict is not Verdict.OK]
    now = {name: Path(cluster.nodes[1].path(*NODE_FILES[name])).read_bytes()
           for name in CLUSTER_FILES}
    assert now["carbon.xml"] == good["node2"]["carbon.xml"]  # values set in place
    assert now["catalina-server.xml"] == good["node2"]["catalina-server.xml"].replace(
        b"<!-- eiperf testbed:", b"<!-- Caf\xe9 eiperf testbed:")  # the Latin-1 byte kept
    # the member goes back at the list's end: same lines, CRLF, another order
    assert sorted(now["axis2.xml"].split(b"\r\n")) == sorted(good["node2"]["axis2.xml"].split(b"\r\n"))
    assert {p: p.read_bytes() for p in snapshot if "node1" in p.parts} == {
        p: b for p, b in snapshot.items() if "node1" in p.parts}

    journal.restore()
    journal.close()
    assert {p: p.read_bytes() for p in snapshot} == snapshot
