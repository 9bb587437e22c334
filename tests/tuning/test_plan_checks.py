"""Cluster mode judges related settings the way `--file` mode does, in dry runs too: on a
cluster whose files were written for the test (one node's EI_HOME, an nginx prefix; nothing
runs), a change the files refuse stops before anything is written, and what was left alone or
only warned about comes back as notes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from eicore.cluster import Cluster, LoadBalancer, Node, save_cluster
from tuning.apply import apply_settings
from tuning.changes import ApplyError
from tuning.edit import EditorError
from tuning.journal import Journal
from tuning.params import ParamSet

FIXTURES = Path(__file__).parent / "fixtures"

# Stands in for a Temurin 11.0.13 java (this machine has JDK 17 only): its version line and
# what it does with the legacy flags (measured: MaxPermSize/PermSize ignored with a warning,
# ParNew refused).
JAVA_11 = """#!/bin/sh
for a in "$@"; do
  case "$a" in
    -XX:+UseParNewGC) echo "Unrecognized VM option 'UseParNewGC'" >&2
       echo "Error: Could not create the Java Virtual Machine." >&2; exit 1;;
    -XX:MaxPermSize=*|-XX:PermSize=*)
       echo "OpenJDK 64-Bit Server VM warning: Ignoring option ${a#-XX:}; support was removed in 8.0" >&2;;
  esac
done
echo 'openjdk version "11.0.13" 2021-10-19' >&2
"""


def file_cluster(root: Path, script: str, nginx: str,
                 passthru: str = "passthru-http.properties") -> Cluster:
    """A one-node cluster made of files only: EI_HOME with the script and properties given,
    an nginx prefix whose nginx.conf is `nginx`."""
    home = root / "ei"
    (home / "bin").mkdir(parents=True)
    (home / "conf").mkdir()
    shutil.copy(FIXTURES / script, home / "bin" / "integrator.sh")
    shutil.copy(FIXTURES / passthru, home / "conf" / "passthru-http.properties")
    (root / "nginx" / "conf").mkdir(parents=True)
    shutil.copy(FIXTURES / nginx, root / "nginx" / "conf" / "nginx.conf")
    cluster = Cluster(
        name="files",
        load_balancer=LoadBalancer(http_url="http://127.0.0.1:1", https_url="https://127.0.0.1:2",
                                   console_url="https://127.0.0.1:3", prefix=str(root / "nginx")),
        nodes=(Node(name="node1", host="127.0.0.1", ei_home=str(home)),),
    )
    save_cluster(cluster, root / "cluster.toml")
    return Cluster(**{**cluster.__dict__, "source": str(root / "cluster.toml")})


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"nginx.lb_method": "ip_hash"},
         "conf/nginx.conf:29: upstream ei_sticky has a backup server, which nginx's ip_hash refuses"),
        ({"nginx.max_fails": 2},
         "conf/nginx.conf:29: upstream ei_sticky has a backup server, which nginx's hash refuses"),
        ({"passthru.worker_pool_size_core": 600},
         "node1: passthru-http.properties: worker_pool_size_core 600 would be above "
         "worker_pool_size_max 500 (line 16)"),
        ({"jvm.xms": "2g"}, "node1: bin/integrator.sh:184: -Xms2g would be above -Xmx1024m"),
    ],
)
def test_a_pair_the_files_refuse_stops_dry_run_and_apply_before_any_write(tmp_path, params,
                                                                         message):
    cluster = file_cluster(tmp_path / "c", "integrator.sh", "nginx-backup-methods.conf")
    before = digest(tmp_path / "c")
    with pytest.raises(EditorError) as info:
        apply_settings(cluster, ParamSet(params), None, dry_run=True, progress=lambda m: None)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    journal = Journal.begin(tmp_path / "results", Path(cluster.source or ""), "test")
    with pytest.raises(EditorError):
        apply_settings(cluster, ParamSet(params), journal, progress=lambda m: None)
    assert journal.changed_files() == []
    journal.close()
    assert digest(tmp_path / "c") == before


def test_notes_say_what_was_left_alone_in_cluster_mode(tmp_path):
    cluster = file_cluster(tmp_path / "c", "integrator.sh", "nginx-stream.conf")
    said: list[str] = []
    outcome = apply_settings(
        cluster, ParamSet({"nginx.proxy_read_timeout": "30s", "jvm.flag.MaxPermSize": None}),
        None, dry_run=True, progress=said.append)
    stream, old_java = outcome.notes
    assert stream.startswith("conf/nginx.conf:12: stream {} left alone: ")
    # the node's own java (this machine's) decides which JDK "never runs" the old-Java line
    assert old_java.startswith("node1: bin/integrator.sh:186: -XX:MaxPermSize=256m stands on "
                               "the line the script runs only for Java older than 1.8")
    assert "never runs it" in old_java
    assert said == [f"note: {n}" for n in outcome.notes]
    assert len(outcome.diffs) == 1  # nginx.conf; the script has nothing to change


def test_a_jdk_11_node_warns_about_maxpermsize_and_refuses_parnew(tmp_path, monkeypatch):
    java = tmp_path / "java11"
    java.write_text(JAVA_11)
    java.chmod(0o755)
    monkeypatch.setenv("JAVACMD", str(java))  # how integrator.sh and eiperf find a node's java
    cluster = file_cluster(tmp_path / "c", "wso2server-crlf.sh", "nginx-stream.conf")
    outcome = apply_settings(cluster, ParamSet({"jvm.xmx": "2g"}), None, dry_run=True,
                             progress=lambda m: None)
    assert outcome.notes == [
        "node1: bin/integrator.sh:124: JDK 11 ignores -XX:MaxPermSize (with a warning): PermGen "
        "went in JDK 8; -XX:MaxMetaspaceSize bounds class metadata instead; fix: --unset "
        "jvm.flag.MaxPermSize --set jvm.max_metaspace=256m"]
    cms = file_cluster(tmp_path / "cms", "wso2server-cms-crlf.sh", "nginx-stream.conf")
    with pytest.raises(ApplyError, match=r"its JVM refuses the new flags \(Unrecognized VM "
                       r"option 'UseParNewGC'\); fix: -XX:\+UseParNewGC -> \(drop it\) \(JDK 11 refuses"):
        apply_settings(cms, ParamSet({"jvm.xmx": "2g"}), None, dry_run=True,
                       progress=lambda m: None)
