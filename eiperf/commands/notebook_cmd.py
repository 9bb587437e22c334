"""`eiperf notebook NAME RUN... [-p NAME VALUE]`: run one of notebooks/ on runs with papermill
and keep it beside them -- the executed .ipynb and a self-contained HTML rendering, to share like
`eiperf report`. `eiperf notebook --lab` opens JupyterLab on notebooks/ instead (`make notebooks`).

The notebooks read their parameters from a cell tagged `parameters`; papermill injects the
values given here after it. Run and sweep targets are resolved here (one clear line when one is
missing, before anything runs) and passed as absolute folders.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import DictLoader

from analysis.loading import resolve
from eicore.errors import EiperfError
from eicore.fsutil import atomic_write_text
from eicore.results import RESULTS_ENV, results_dir

#: notebooks/ beside the packages (the repository's; `pip install -e .` keeps it there)
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: what to install when papermill, nbconvert or JupyterLab is missing
INSTALL_HINT = ("install the notebooks extra: 'make notebooks', or "
                "\".venv/bin/pip install -e '.[notebooks]'\"")

#: The lab template without its CDN scripts (require.js, MathJax, mermaid): the notebooks show
#: Markdown, tables and PNG images, which need none, and the file opens offline.
_HTML_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

#: a notebook cell still running after this long fails the command (every loop is bounded)
CELL_TIMEOUT_S = 600

Targets = list[tuple[str, Path]]  # ("run" | "sweep", folder), as given on the command line


def _one_run(name: str, targets: Targets) -> dict[str, Any]:
    """capacity_planning: exactly one run (a step-load run)."""
    if len(targets) != 1 or targets[0][0] != "run":
        raise EiperfError(f"{name} takes one run (a step-load run, folder or id), e.g. "
                          f"'eiperf notebook {name} RUN'")
    return {"RUN": str(targets[0][1])}


def _runs_or_sweep(name: str, targets: Targets) -> dict[str, Any]:
    """compare_runs: two runs or more, or one sweep (with or without more runs)."""
    runs = [str(path) for kind, path in targets if kind == "run"]
    sweeps = [str(path) for kind, path in targets if kind == "sweep"]
    if len(sweeps) > 1 or (not sweeps and len(runs) < 2):
        raise EiperfError(f"{name} takes two runs or more, or one sweep, e.g. "
                          f"'eiperf notebook {name} RUN_A RUN_B'")
    return {"RUNS": runs, "SWEEP": sweeps[0] if sweeps else ""}


#: notebook name -> how its targets become its parameters
BINDINGS: dict[str, Callable[[str, Targets], dict[str, Any]]] = {
    "capacity_planning": _one_run,
    "compare_runs": _runs_or_sweep,
}


def _tool(module: str) -> Any:
    """`module` imported, or one line saying how to install it (it is an optional extra)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EiperfError(f"{module} is not installed: {INSTALL_HINT}") from None


def parameter_value(text: str) -> Any:
    """A -p value as papermill's own CLI reads it: int, float, True/False/None, else text."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def notebook_path(name: str) -> Path:
    """notebooks/<name>.ipynb, or one line naming the notebooks there are."""
    path = NOTEBOOKS / f"{name}.ipynb"
    if name not in BINDINGS or not path.is_file():
        known = ", ".join(sorted(n for n in BINDINGS if (NOTEBOOKS / f"{n}.ipynb").is_file()))
        raise EiperfError(f"no notebook {name!r}: eiperf notebook runs {known or 'none'} "
                          f"(from {NOTEBOOKS}/)")
    return path


def notebook_parameters(name: str, path: Path, targets: Targets,
                        given: list[list[str]] | None, results: Path) -> dict[str, Any]:
    """The targets' parameters, then each -p NAME VALUE, checked against the notebook's own
    `parameters` cell (an unknown or target-bound name is refused in one line)."""
    parameters = {**BINDINGS[name](name, targets), "RESULTS": str(results)}
    for key, _ in given or []:
        if key in parameters:
            raise EiperfError(f"-p {key}: is set from the runs given (and --results); "
                              "pass them as arguments instead")
    declared = _tool("papermill").inspect_notebook(str(path)) if given else {}
    for key, text in given or []:
        if key not in declared:
            free = ", ".join(k for k in declared if k not in parameters)
            raise EiperfError(f"-p {key}: {name} has no such parameter (it takes {free})")
        parameters[key] = checked_value(name, key, text, declared[key]["inferred_type_name"])
    return parameters


#: a parameter annotated `: float` or `: int` in the notebook -> the values it takes
_NUMBERS = {"float": ((int, float), "a number"), "int": ((int,), "a whole number")}


def checked_value(name: str, key: str, text: str, declared_type: str) -> Any:
    """The -p value, refused in one line when the notebook declares a number and `text` is
    none (rather than a cell failing on it halfway through)."""
    value = parameter_value(text)
    if declared_type in _NUMBERS:
        types, what = _NUMBERS[declared_type]
        if isinstance(value, bool) or not isinstance(value, types):
            raise EiperfError(f"-p {key} {text}: {name}'s {key} is {what}")
    return value


def output_folder(output: str | None, targets: Targets) -> Path:
    """-o DIR, else the first run's (or sweep's) folder."""
    out = Path(output) if output else targets[0][1]
    if out.exists() and not out.is_dir():
        raise EiperfError(f"{out}: is a file; -o takes a folder for the notebook and its HTML")
    return out


def execute(path: Path, parameters: dict[str, Any]) -> Any:
    """The notebook executed by papermill with the venv's own kernel; nothing is written. A
    failing cell becomes one line naming the cell and its exception."""
    papermill = _tool("papermill")
    kernelspec = _tool("jupyter_client.kernelspec")
    try:
        return papermill.execute_notebook(
            str(path), None, parameters=parameters, kernel_name=kernelspec.NATIVE_KERNEL_NAME,
            progress_bar=False, cwd=str(Path.cwd()), execution_timeout=CELL_TIMEOUT_S,
            # the kernel's own log stays out of the user's terminal: its TCP-on-loopback note,
            # and "KeyboardInterrupt caught in kernel" (ERROR) when a failing cell ends the run
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except papermill.PapermillExecutionError as e:
        evalue = " ".join(str(e.evalue).split())
        raise EiperfError(f"{path.stem}: cell {e.exec_count} failed: {e.ename}: {evalue}") \
            from None


def html_of(nb: Any) -> str:
    """One self-contained HTML page of an executed notebook: CSS inline, images embedded."""
    nbconvert = _tool("nbconvert")
    exporter = nbconvert.HTMLExporter(
        template_name="lab", template_file="eiperf_notebook.html.j2", embed_images=True,
        extra_loaders=[DictLoader({"eiperf_notebook.html.j2": _HTML_TEMPLATE})])
    body, _ = exporter.from_notebook_node(nb)
    return body


def run_notebook(args: argparse.Namespace) -> int:
    path = notebook_path(args.name)
    results = results_dir(args.results).resolve()
    if not args.targets:
        raise EiperfError(f"give the runs {args.name} works on, e.g. "
                          f"'eiperf notebook {args.name} RUN'")
    targets = [(kind, folder.resolve()) for kind, folder in
               (resolve(t, results) for t in args.targets)]
    parameters = notebook_parameters(args.name, path, targets, args.parameters, results)
    out = output_folder(args.output, targets)
    nb = execute(path, parameters)
    nbformat = _tool("nbformat")
    html = html_of(nb)
    written = [out / f"{args.name}.ipynb", out / f"{args.name}.html"]
    try:
        atomic_write_text(written[0], nbformat.writes(nb))
        atomic_write_text(written[1], html)
    except OSError as e:
        raise EiperfError(f"{out}: cannot write the notebook there ({e.strerror}); "
                          "pass another folder with -o") from None
    for p in written:
        print(p)
    return 0


def lab_command(port: int) -> list[str]:
    """JupyterLab on notebooks/, loopback only, no browser, on exactly this port (as root too:
    `make demo` runs as root on a fresh machine, and JupyterLab refuses root unless told)."""
    root = ["--allow-root"] if os.geteuid() == 0 else []
    return [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={NOTEBOOKS}", *root]


def open_lab(args: argparse.Namespace) -> int:
    """Replace this process with JupyterLab (its PID is this one's: stopping it stops the lab).
    The token comes from $JUPYTER_TOKEN or is made here; the URL with it is printed first."""
    if importlib.util.find_spec("jupyterlab") is None:
        raise EiperfError(f"JupyterLab is not installed: {INSTALL_HINT}")
    if not NOTEBOOKS.is_dir():
        raise EiperfError(f"{NOTEBOOKS}: no notebooks folder; run from a checkout of eiperf")
    with socket.socket() as probe:  # a taken port: one line here, not JupyterLab's log
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as e:
            raise EiperfError(f"127.0.0.1:{args.port}: {e.strerror}; pick another port with "
                              "--port (make notebooks NOTEBOOK_PORT=...)") from None
    env = dict(os.environ)
    env.setdefault("JUPYTER_TOKEN", secrets.token_hex(24))
    # the kernels start in notebooks/: ids resolve against the results folder of this one
    env[RESULTS_ENV] = str(results_dir(args.results).resolve())
    print(f"JupyterLab on {NOTEBOOKS}/ (results: {env[RESULTS_ENV]}), Ctrl-C stops it:\n"
          f"  http://127.0.0.1:{args.port}/lab?token={env['JUPYTER_TOKEN']}", flush=True)
    command = lab_command(args.port)
    os.execve(command[0], command, env)
    return 0  # not reached


def cmd_notebook(args: argparse.Namespace) -> int:
    if args.lab:
        if args.name or args.targets or args.parameters or args.output:
            raise EiperfError("--lab opens JupyterLab; it takes no notebook, runs, -p or -o")
        return open_lab(args)
    if not args.name:
        raise EiperfError(f"name a notebook ({' or '.join(BINDINGS)}) and its runs, "
                          "or pass --lab to open JupyterLab")
    return run_notebook(args)
