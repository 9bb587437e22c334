"""Compile the testbed node program once, cache it by the hash of its source, reuse it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from eicore.errors import EiperfError

NODE_SOURCE = Path(__file__).parent / "node" / "EiNode.java"
MAIN_CLASS = "EiNode"


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


def compiled_classes() -> Path:
    """A folder holding the compiled node classes, compiled now if the source changed."""
    source = NODE_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = cache_root() / "node" / digest
    if (target / f"{MAIN_CLASS}.class").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        r = subprocess.run(
            [find_javac(), "-nowarn", "-encoding", "UTF-8", "-d", str(tmp), str(NODE_SOURCE)],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            raise EiperfError(f"compiling {NODE_SOURCE.name} failed:\n{r.stderr.strip()}")
        try:
            os.rename(tmp, target)
        except OSError:  # another process compiled it first
            if not (target / f"{MAIN_CLASS}.class").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def install_classes(lib_dir: Path) -> None:
    """Copy the compiled node classes into a node's lib/ (replacing older ones)."""
    classes = compiled_classes()
    lib_dir.mkdir(parents=True, exist_ok=True)
    for old in lib_dir.glob("*.class"):
        old.unlink()
    for cls in classes.glob("*.class"):
        shutil.copy2(cls, lib_dir / cls.name)
