"""Load generators: the machines and Locust worker processes of a run, and their lifecycle.

A run's load comes from Locust worker processes on its load-generator machines: this machine,
or -- when cluster.toml has `[[generators]]` -- those hosts (reached through their transport,
`eicore.transport.transport_for`; this machine then runs only the Locust master). One worker
on this machine alone is plain standalone Locust; anything else is Locust's own master/worker
mode (`--master`, `--worker`, `--expect-workers`).

- `plan_workers` decides, before any load, how many workers run where (`default_workers`),
  checks that every generator's python has this machine's Locust and eiperf versions (one
  line naming the host otherwise), and picks the master's address and port;
- `WorkerFleet` starts the workers (local: subprocesses; SSH: the cluster file and CA copied to
  a run folder there, workers started with nohup), knows their PIDs, and at the end waits for
  them to quit, kills what is left by PID, fetches the remote logs and removes the run folder.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from eicore import __version__
from eicore.cluster import Cluster, Generator, dump_cluster
from eicore.errors import ConfigError, EiperfError
from eicore.results import WorkerInfo
from eicore.transport import NodeTransport, TransportError, transport_for

#: The name of this machine as a load generator (workers `local-1`, `local-2`, ...).
LOCAL = "local"
#: How long the master waits for every worker to connect before giving up.
WORKER_WAIT_S = 60.0
LOCUSTFILE = str(Path(__file__).with_name("locustfile.py"))
_LOOPBACK = ("127.", "localhost", "::1")

#: What `plan_workers` asks each generator's python (one JSON line back).
PROBE = r"""
import json, os, sys
out = {"python": sys.executable, "cpus": os.cpu_count() or 1, "home": os.path.expanduser("~"),
       "ssh_client": (os.environ.get("SSH_CONNECTION") or " ").split(" ")[0]}
try:
    import locust
    out["locust"] = locust.__version__
    import eicore, loadtests
    out["eiperf"] = eicore.__version__
    out["locustfile"] = os.path.join(os.path.dirname(os.path.abspath(loadtests.__file__)),
                                     "locustfile.py")
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


class GeneratorError(EiperfError):
    """A load-generator host cannot run this run's workers."""


@dataclass(frozen=True)
class Machine:
    """One load-generator machine of a run: where it is and how many workers it runs."""

    name: str                      # "local" or the [[generators]] name
    host: str
    generator: Generator | None    # None: this machine, implicitly
    python: str
    locustfile: str
    cores: int
    workers: int
    dial: str = "127.0.0.1"        # the address its workers dial to reach the master
    home: str | None = None

    @property
    def remote(self) -> bool:
        return self.generator is not None and self.generator.transport != "local"

    def worker_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(1, self.workers + 1)]


@dataclass(frozen=True)
class WorkerPlan:
    """Where a run's workers go and where their master listens."""

    machines: tuple[Machine, ...]
    bind_host: str = "127.0.0.1"
    port: int = 0

    @property
    def total(self) -> int:
        return sum(m.workers for m in self.machines)

    @property
    def single(self) -> bool:
        """One worker, on this machine: plain standalone Locust, no master."""
        return self.total == 1 and self.machines[0].generator is None

    def describe(self) -> str:
        where = ", ".join(f"{m.workers} on {m.name} ({m.cores} cores)" for m in self.machines)
        if self.single:
            return f"1 Locust process on this machine ({self.machines[0].cores} cores)"
        return (f"{self.total} Locust workers: {where}; master on this machine at "
                f"{self.bind_host}:{self.port}")

    def as_dict(self) -> dict[str, Any]:
        """For run.json ``generator``: the machines and the master's address."""
        return {"mode": "standalone" if self.single else "master-workers",
                "master": None if self.single else {"bind": self.bind_host, "port": self.port},
                "machines": [{"name": m.name, "host": m.host, "cores": m.cores,
                              "workers": m.workers, "python": m.python,
                              **({"dial": m.dial} if not self.single else {})}
                             for m in self.machines]}


# --------------------------------------------------------------------------- the plan


def default_workers(cores: int, cluster_processes_here: int) -> int:
    """Workers for a machine with `cores` that also runs `cluster_processes_here` of the
    cluster's processes (nodes, the load balancer): one per core when it runs none of them,
    else the cores left after one per such process, at least 1."""
    return max(1, cores - cluster_processes_here)


def _is_loopback(host: str) -> bool:
    return host.startswith(_LOOPBACK)


def cluster_processes_on(cluster: Cluster, host: str | None) -> int:
    """How many of the cluster's nodes and load balancer run on `host` (None: this machine,
    i.e. transport local or a loopback address)."""
    parts = [*cluster.nodes, cluster.load_balancer]
    if host is None:
        return sum(1 for p in parts if p.transport == "local" or _is_loopback(p.host))
    return sum(1 for p in parts if p.host == host)


def _workers_for(requested: int | None, cores: int, here: int) -> int:
    if requested is None:
        return default_workers(cores, here)
    return cores if requested == -1 else requested


def _cap(counts: list[int], limit: int) -> list[int]:
    """`counts` lowered, the largest first and never below 1, until they sum to at most
    `limit`."""
    counts = list(counts)
    while sum(counts) > max(limit, len(counts)):
        i = max(range(len(counts)), key=lambda k: counts[k])
        counts[i] -= 1
    return counts


def _versions_here() -> tuple[str, str]:
    try:
        return version("locust"), __version__
    except PackageNotFoundError:  # run from a source tree without metadata
        import locust

        return locust.__version__, __version__


def probe(gen: Generator, transport: NodeTransport) -> dict[str, Any]:
    """Ask `gen`'s python for its Locust and eiperf versions, cores, home and the address its
    SSH session came from; GeneratorError (one line naming the host) when it cannot run
    workers of this eiperf."""
    where = f"generator {gen.name} ({gen.host})"
    python = gen.python or sys.executable
    try:
        r = transport.run([python, "-c", PROBE], timeout=60)
    except TransportError as e:
        raise GeneratorError(f"{where}: {e} -- no load was started") from None
    if r.returncode == 127 or "No such file" in r.stderr or "Permission denied" in r.stderr:
        raise GeneratorError(f"{where}: cannot run {python} there ({r.stderr.strip()[-200:]}); "
                             "set python in its [[generators]] entry to a python with eiperf "
                             "installed -- no load was started")
    try:
        facts = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise GeneratorError(f"{where}: {python} did not answer the version check "
                             f"(exit {r.returncode}: {r.stderr.strip()[-200:]})") from None
    if facts.get("error"):
        raise GeneratorError(f"{where}: {python} cannot load eiperf's locustfile "
                             f"({facts['error']}); install eiperf there -- no load was started")
    locust_here, eiperf_here = _versions_here()
    if (facts.get("locust"), facts.get("eiperf")) != (locust_here, eiperf_here):
        raise GeneratorError(
            f"{where}: Locust {facts.get('locust')} and eiperf {facts.get('eiperf')} in {python} "
            f"there, Locust {locust_here} and eiperf {eiperf_here} here; install the same "
            "versions on every generator -- no load was started")
    return facts


def _bindable(address: str) -> bool:
    """True when `address` is one of this machine's (the master can listen on it)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def free_port(host: str) -> int:
    """A TCP port free on `host` ("*": every address) right now."""
    with socket.socket() as s:
        s.bind(("" if host == "*" else host, 0))
        return s.getsockname()[1]


def plan_workers(cluster: Cluster, requested: int | None, users: int,
                 master_host: str | None = None, master_port: int | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> WorkerPlan:
    """Where the workers of a run go (see the module docstring); every generator is checked
    before any load. `requested` is `--workers` (None: the default rule, capped at `users`;
    -1: one per core)."""
    machines: list[Machine] = []
    if not cluster.generators:
        cores = os.cpu_count() or 1
        machines.append(Machine(LOCAL, socket.gethostname(), None, sys.executable, LOCUSTFILE, cores,
                                _workers_for(requested, cores, cluster_processes_on(cluster, None))))
    for gen in cluster.generators:
        local = gen.transport == "local"
        t = transport_for(gen)
        try:
            if local and (gen.python or sys.executable) == sys.executable:
                facts = {"cpus": os.cpu_count() or 1, "locustfile": LOCUSTFILE,
                         "python": sys.executable, "home": str(Path.home()), "ssh_client": ""}
            else:
                progress(f"checking generator {gen.name} ({gen.host}) ...")
                facts = probe(gen, t)
        finally:
            t.close()
        here = cluster_processes_on(cluster, None if local else gen.host)
        cores = int(facts.get("cpus") or 1)
        count = gen.workers or _workers_for(requested, cores, here)
        dial = "127.0.0.1" if local else (master_host or gen.master_host or facts.get("ssh_client"))
        if not dial:
            raise ConfigError(f"generator {gen.name} ({gen.host}): no address for its workers to "
                              "reach the master on this machine; set master_host in its "
                              "[[generators]] entry or pass --master-host")
        machines.append(Machine(gen.name, gen.host, gen, gen.python or sys.executable,
                                str(facts.get("locustfile") or LOCUSTFILE), cores, count, dial,
                                facts.get("home")))
    if requested is None:  # the default rule never starts more workers than users
        auto = [i for i, m in enumerate(machines) if not (m.generator and m.generator.workers)]
        fixed = sum(m.workers for i, m in enumerate(machines) if i not in auto)
        capped = _cap([machines[i].workers for i in auto], users - fixed)
        for i, count in zip(auto, capped, strict=True):
            machines[i] = replace(machines[i], workers=count)
    remote_dials = {m.dial for m in machines if m.remote}
    if not remote_dials:
        bind = "127.0.0.1"
    elif len(remote_dials) == 1 and _bindable(next(iter(remote_dials))):
        bind = next(iter(remote_dials))
    else:
        bind = "*"
    if bind != "127.0.0.1":  # local workers dial the address the master listens on
        machines = [m if m.remote else replace(m, dial="127.0.0.1" if bind == "*" else bind)
                    for m in machines]
    return WorkerPlan(tuple(machines), bind, master_port or free_port(bind))


# --------------------------------------------------------------------------- the workers


@dataclass
class WorkerProcess:
    """One started worker: its name, machine, PID, and (local) its process handle."""

    name: str
    machine: Machine
    pid: int | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    log: Path | None = None
    #: when `WorkerFleet.poll` first found the process gone (epoch s)
    exited_at: float | None = None

    def info(self) -> WorkerInfo:
        """This worker as run.json lists it, before the master's figures are known."""
        return {"name": self.name, "generator": self.machine.name, "host": self.machine.host,
                "pid": self.pid, "rows": 0, "lost_at": None}


class WorkerFleet:
    """Start, watch and stop the workers of a `WorkerPlan` (never the master)."""

    def __init__(self, plan: WorkerPlan, cluster: Cluster, locust_args: list[str],
                 run_id: str, log_dir: Path) -> None:
        self.plan = plan
        self.cluster = cluster
        self.locust_args = list(locust_args)
        self.run_id = run_id
        self.log_dir = Path(log_dir)
        self.workers: list[WorkerProcess] = []
        self._transports: dict[str, NodeTransport] = {}
        self._remote_dirs: dict[str, str] = {}
        self._next_remote_poll = 0.0

    def _argv(self, machine: Machine, name: str, cluster_file: str) -> list[str]:
        return [machine.python, "-m", "locust", "-f", machine.locustfile, "--worker",
                "--master-host", machine.dial, "--master-port", str(self.plan.port),
                "--cluster", cluster_file, "--eiperf-worker", name, "--loglevel", "WARNING",
                *self.locust_args]

    def start(self) -> None:
        """Start every worker; TransportError/GeneratorError when a host refuses."""
        for machine in self.plan.machines:
            if machine.remote:
                self._start_remote(machine)
            else:
                self._start_local(machine)

    def _start_local(self, machine: Machine) -> None:
        assert self.cluster.source
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in machine.worker_names():
            log_path = self.log_dir / f"worker-{name}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(self._argv(machine, name, self.cluster.source),
                                        stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        cwd=self.log_dir)
            self.workers.append(WorkerProcess(name, machine, proc.pid, proc, log_path))

    def _remote_dir(self, machine: Machine) -> str:
        gen = machine.generator
        assert gen is not None
        base = gen.work_dir or f"{(machine.home or '/tmp').rstrip('/')}/.eiperf/runs"
        return f"{base.rstrip('/')}/{self.run_id}"

    def _start_remote(self, machine: Machine) -> None:
        gen = machine.generator
        assert gen is not None
        t = self._transports[machine.name] = transport_for(gen)
        rdir = self._remote_dirs[machine.name] = self._remote_dir(machine)
        lb = self.cluster.load_balancer
        copy = self.cluster
        try:
            if lb.ca_file:  # the CA the scenarios verify the load balancer against
                t.write_bytes(f"{rdir}/ca.crt", Path(lb.ca_file).read_bytes(), mode=0o644)
                copy = replace(copy, load_balancer=replace(lb, ca_file=f"{rdir}/ca.crt"))
            t.write_bytes(f"{rdir}/cluster.toml", dump_cluster(copy).encode(), mode=0o644)
            names = machine.worker_names()
            script = [f"cd {shlex.quote(rdir)} || exit 1"]
            for name in names:
                argv = self._argv(machine, name, f"{rdir}/cluster.toml")
                script.append(f"nohup {shlex.join(argv)} >{shlex.quote(f'worker-{name}.log')} "
                              "2>&1 </dev/null & echo $!")
            r = t.run(["sh", "-c", "\n".join(script)], timeout=60)
        except (OSError, TransportError) as e:
            raise GeneratorError(f"generator {gen.name} ({gen.host}): cannot start workers "
                                 f"({e})") from None
        pids = [int(w) for w in r.stdout.split() if w.isdigit()]
        if not r.ok or len(pids) != len(names):
            raise GeneratorError(f"generator {gen.name} ({gen.host}): starting workers failed "
                                 f"(exit {r.returncode}: {r.stderr.strip()[-200:]})")
        for name, pid in zip(names, pids, strict=True):
            self.workers.append(WorkerProcess(name, machine, pid))

    def local_pids(self) -> list[int]:
        """PIDs of the workers on this machine (for the generator PID file)."""
        return [w.pid for w in self.workers if not w.machine.remote and w.pid]

    def _alive(self, w: WorkerProcess) -> bool:
        if w.popen is not None:
            return w.popen.poll() is None
        t = self._transports.get(w.machine.name)
        try:
            return bool(w.pid) and t is not None and t.pid_alive(int(w.pid))
        except TransportError:
            return False

    def poll(self, remote_every: float = 2.0) -> list[str]:
        """Note the workers whose process is gone (local: every call; remote, one SFTP read
        each: at most every `remote_every` s); returns the names newly found gone."""
        now = time.monotonic()
        remote = now >= self._next_remote_poll
        if remote:
            self._next_remote_poll = now + remote_every
        gone = []
        for w in self.workers:
            if w.exited_at is None and (w.popen is not None or remote) and not self._alive(w):
                w.exited_at = time.time()
                gone.append(w.name)
        return gone

    def exits(self) -> dict[str, float]:
        """{worker name: when it was found gone} of the workers `poll` saw exit."""
        return {w.name: w.exited_at for w in self.workers if w.exited_at is not None}

    def stop(self, grace: float = 10.0) -> list[str]:
        """Wait up to `grace` s for the workers to quit (the master tells them), then kill
        what is left by PID; fetch remote logs into the log folder and remove the run's
        folder on each host. Returns the names of the workers that had to be killed."""
        deadline = time.monotonic() + grace
        left = [w for w in self.workers if self._alive(w)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [w for w in left if self._alive(w)]
        for w in left:
            try:
                if w.popen is not None:
                    w.popen.kill()
                elif w.pid:
                    self._transports[w.machine.name].kill(int(w.pid), signal.SIGKILL)
            except (OSError, TransportError, KeyError):
                pass
        for w in self.workers:
            if w.popen is not None:
                try:
                    w.popen.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        self._collect_remote()
        return [w.name for w in left]

    def _collect_remote(self) -> None:
        for machine_name, t in self._transports.items():
            rdir = self._remote_dirs.get(machine_name)
            try:
                for w in self.workers:
                    if w.machine.name == machine_name and rdir:
                        log = f"{rdir}/worker-{w.name}.log"
                        w.log = self.log_dir / f"worker-{w.name}.log"
                        self.log_dir.mkdir(parents=True, exist_ok=True)
                        try:
                            w.log.write_bytes(t.read_bytes(log))
                        except FileNotFoundError:
                            w.log = None
                if rdir and rdir.rstrip("/").endswith(self.run_id):
                    t.run(["rm", "-rf", "--", rdir], timeout=30)
            except (OSError, TransportError):
                pass
            finally:
                t.close()
        self._transports.clear()

    def exited_early(self) -> list[tuple[str, str]]:
        """(name, its log's last line) of each worker whose process is gone (remote logs are
        fetched by `stop`: before it, a remote worker's line is "see its log")."""
        return [(w.name, _last_line(w.log) if w.log else "see its log")
                for w in self.workers if not self._alive(w)]

    def infos(self) -> list[WorkerInfo]:
        """The started workers as run.json lists them (rows and lost_at still unknown)."""
        return [w.info() for w in self.workers]


def _last_line(path: Path | None) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, TypeError):
        return "(no log)"
    return lines[-1].strip()[-300:] if lines else "(empty log)"
