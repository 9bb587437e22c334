"""Legacy JVM flags checked with the nodes' own java: JDK 11 (EI 6.x's; the session testbed)
warns about -XX:MaxPermSize and deprecates CMS but starts, and refuses ParNew; JDK 17 refuses
all of them. The flag check must give each testbed its own JDK's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from eicore import node_control
from eicore.transport import LocalTransport
from tuning.apply import apply_settings
from tuning.changes import ApplyError
from tuning.journal import Journal
from tuning.params import ParamSet
from tuning.restore import restore_cluster

PERM = {"jvm.flag.MaxPermSize": "256m"}
CMS = {"jvm.flag.UseConcMarkSweepGC": True}
PARNEW = {"jvm.flag.UseParNewGC": True}


@pytest.fixture(params=["11", "17"])
def on_jdk(request):
    """(JDK, its testbed): the session testbed runs 11, `testbed17` runs 17."""
    name = "testbed" if request.param == "11" else "testbed17"
    return request.param, request.getfixturevalue(name)


def check(cluster, changes):
    """The flag check of a dry run: its notes, or the ApplyError's message."""
    try:
        return apply_settings(cluster, ParamSet(changes), None, dry_run=True,
                              progress=lambda m: None).notes
    except ApplyError as e:
        return str(e)


@pytest.mark.parametrize("changes,on11,on17", [
    (PERM, "JDK 11 ignores -XX:MaxPermSize", "its JVM refuses the new flags"),
    (CMS, "JDK 11 warns that -XX:+UseConcMarkSweepGC is deprecated", "its JVM refuses the new flags"),
    (PARNEW, "its JVM refuses the new flags", "its JVM refuses the new flags"),
], ids=["MaxPermSize", "CMS", "ParNew"])
def test_legacy_flags_get_the_nodes_own_jdks_answer(on_jdk, changes, on11, on17):
    jdk, cluster = on_jdk
    got = check(cluster, changes)
    expected = on11 if jdk == "11" else on17
    assert expected in (got if isinstance(got, str) else " ".join(got)), got
    if expected.startswith("its JVM refuses"):
        assert isinstance(got, str)  # an ApplyError: nothing would change
    else:
        assert not isinstance(got, str)  # notes: the change goes ahead


def test_maxpermsize_on_jdk_11_warns_with_the_fix_and_the_node_starts(testbed, tmp_path):
    journal = Journal.begin(tmp_path / "results", Path(testbed.source), "test")
    node = testbed.nodes[0]
    t = LocalTransport()
    before = node_control.read_pid(t, node)
    try:
        outcome = apply_settings(testbed, ParamSet(PERM), journal, progress=lambda m: None)
        notes = " ".join(outcome.notes)
        assert "JDK 11 ignores -XX:MaxPermSize" in notes and "jvm.max_metaspace=256m" in notes
        after = node_control.read_pid(t, node)
        assert after and after != before and node_control.node_state(t, node).up
        out = (Path(node.ei_home) / "repository" / "logs" / "stdout.log").read_text()
        assert "MaxPermSize; support was removed in 8.0" in out  # the JVM's own warning
    finally:
        restore_cluster(testbed, journal, progress=lambda m: None)
        journal.close()
