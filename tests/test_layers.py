"""The layers (DESIGN.md "Architecture") hold: the import-linter contract in pyproject.toml
passes on the code, fails on an upward import, and project imports sit at module top."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("eicore", "analysis", "testbed", "loadtests", "tuning", "eiperf")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_the_import_contract_is_kept():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("module, upward", [
    ("eicore/errors.py", "import eiperf.cli"),           # the foundation imports the CLI
    ("tuning/sweep.py", "import eiperf.commands.run_cmd"),  # the old sweep -> CLI import
    ("loadtests/run.py", "import tuning.settings"),      # the old loadtests <-> tuning loop
    ("analysis/report.py", "import loadtests.run"),      # siblings stay independent
    ("tuning/apply.py", "import testbed.manager"),       # tuning never starts the testbed
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.j2", "*.java"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # deliberately wrong\n")
    r = lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout[-3000:]
    assert "BROKEN" in r.stdout and module.removesuffix(".py").replace("/", ".") in r.stdout


def _lazy_project_imports(path: Path) -> list[str]:
    """Function-level imports of a project package with no comment giving the reason."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                names = [inner.module or ""]
            elif isinstance(inner, ast.Import):
                names = [a.name for a in inner.names]
            else:
                continue
            if not any(n.split(".")[0] in PACKAGES for n in names):
                continue
            line = lines[inner.lineno - 1]
            above = lines[inner.lineno - 2].strip() if inner.lineno > 1 else ""
            if "#" not in line and not above.startswith("#"):
                found.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {line.strip()}")
    return found


def test_project_imports_are_at_module_top_or_say_why():
    lazy = [hit for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            for hit in _lazy_project_imports(path)]
    assert lazy == [], "\n".join(lazy)
