"""`eiperf doctor` on the central database's files: the session testbed's real
master-datasources.xml and registry.xml pass, and one broken copy per check is caught, never
showing a password."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from tuning.doctor.cluster_checks import check_cluster
from tuning.doctor.facts import NodeFacts
from tuning.doctor.row import Verdict

FILES = ("master-datasources.xml", "registry.xml")


def facts(cluster, edit=None) -> tuple[NodeFacts, ...]:
    out = []
    for n in cluster.nodes:
        files = {"master-datasources.xml": Path(n.master_datasources).read_text(),
                 "registry.xml": Path(n.registry_xml).read_text()}
        if edit is not None and n.name == "node2":
            edit(files)
        out.append(NodeFacts(n.name, n.host, n.port_offset, files=files))
    return tuple(out)


def row(rows, check, host="all nodes"):
    return next(r for r in rows if r.check == check and r.host.startswith(host))


def _sub(name: str, pattern: str, new: str):
    def edit(files):
        files[name], n = re.subn(pattern, new, files[name], count=1)
        assert n == 1
    return edit


def test_the_testbeds_files_pass_and_plain_passwords_warn_without_showing_them(testbed):
    rows = check_cluster(testbed, facts(testbed))
    assert row(rows, "registry mounts on one shared database").verdict is Verdict.OK
    assert row(rows, "local registries apart").verdict is Verdict.OK
    assert row(rows, "datasource pool settings alike").verdict is Verdict.OK
    plain = row(rows, "plain-text datasource passwords", "node1")
    assert plain.verdict is Verdict.WARN and "WSO2_SHARED_REG_DB" in plain.current
    text = repr([asdict(r) for r in rows])
    for ds in testbed.database.datasources:
        assert ds.password() not in text


@pytest.mark.parametrize(("edit", "check", "verdict"), [
    (_sub("registry.xml", r"<dbConfig>sharedregistry</dbConfig>",
          "<dbConfig>wso2registry</dbConfig>"),
     "registry mounts on one shared database", Verdict.FAIL),
    (_sub("master-datasources.xml", r"/REGISTRY_LOCAL2<", "/REGISTRY_LOCAL1<"),
     "local registries apart", Verdict.FAIL),
    (_sub("master-datasources.xml", r"<maxActive>50</maxActive>", "<maxActive>20</maxActive>"),
     "datasource pool settings alike", Verdict.WARN),
], ids=["mount-on-local", "local-shared", "pool-differs"])
def test_a_broken_copy_is_caught(testbed, edit, check, verdict):
    got = row(check_cluster(testbed, facts(testbed, edit)), check)
    assert got.verdict is verdict and got.fix and got.fix_file


def test_secure_vault_passwords_pass(testbed):
    def vault(files):
        files["master-datasources.xml"] = re.sub(
            r"<password>[^<]*</password>",
            '<password svns:secretAlias="Datasources.X.Configuration.Password">password'
            "</password>", files["master-datasources.xml"])
    rows = check_cluster(testbed, facts(testbed, vault))
    assert row(rows, "plain-text datasource passwords", "node2").verdict is Verdict.OK
