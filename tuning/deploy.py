"""Deploy a proxy service to every node, over each node's transport, and check it serves.

Why check, not just copy: EI hot-deploys the files it finds in its proxy-services folder, and
a file it refuses (bad XML, a name already deployed from another file) only shows in its log.
So after writing, each node is polled on its own pass-through port until a POST to
/services/<Name> answers, and the node's deployer log lines say what happened.

Writes go through a change journal when one is given (as `eiperf deploy` does): a proxy file
that is replaced keeps its original bytes, a new one is noted as absent, so `eiperf tune restore`
puts every node's folder back as it was (EI undeploys a removed file by itself).
"""

from __future__ import annotations

import http.client
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eicore.cluster import Cluster, Node
from eicore.errors import ConfigError, EiperfError
from eicore.proxy_template import render_proxy
from eicore.transport import NodeTransport, TransportError, transport_for
from tuning.journal import Journal

SYNAPSE_NS = "http://ws.apache.org/ns/synapse"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
POLL_S = 0.1
SERVE_TIMEOUT_S = 30.0
_PING = (b'<?xml version="1.0" encoding="UTF-8"?>'
         b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
         b"<soapenv:Body><eiperf-deploy-check/></soapenv:Body></soapenv:Envelope>")


@dataclass(frozen=True)
class ProxyArtifact:
    """A proxy service's Synapse XML, its name, and where it came from."""

    name: str
    xml: bytes
    source: str

    @property
    def file_name(self) -> str:
        return f"{self.name}.xml"


@dataclass(frozen=True)
class DeployResult:
    """What happened on one node."""

    node: str
    ok: bool
    action: str  # new | replaced | unchanged | failed
    seconds: float
    detail: str

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.node}: {self.action} - {self.detail}"


def parse_proxy(data: bytes, source: str) -> ProxyArtifact:
    """Check `data` is a Synapse proxy definition with a usable name; one ConfigError if not."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ConfigError(f"{source}: not well-formed XML ({e}); fix the file") from None
    tag = root.tag.rsplit("}", 1)[-1]
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if tag != "proxy":
        raise ConfigError(f"{source}: the root element is <{tag}>, not <proxy>; give a Synapse "
                          "proxy service definition (<proxy name=\"...\">)")
    if ns not in ("", SYNAPSE_NS):
        raise ConfigError(f"{source}: <proxy> is in namespace {ns!r}; use xmlns=\"{SYNAPSE_NS}\"")
    name = root.get("name")
    if not name:
        raise ConfigError(f"{source}: <proxy> has no name attribute; add name=\"MyProxy\"")
    if not NAME_RE.match(name):
        raise ConfigError(f"{source}: proxy name {name!r} is not usable in a URL and a file name; "
                          "use letters, digits, '_', '.' and '-'")
    return ProxyArtifact(name=name, xml=data, source=source)


def load_proxy(path: str | Path) -> ProxyArtifact:
    """Read and check a proxy XML file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: proxy file not found; give an existing XML file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder; give one proxy XML file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read proxy file ({e.strerror})") from None
    return parse_proxy(data, str(p))


def sample_proxy(name: str = "SampleProxy", log_level: str = "simple") -> ProxyArtifact:
    """The sample log-mediator proxy rendered from tuning/templates/SampleProxy.xml.j2."""
    try:
        text = render_proxy(name=name, log_level=log_level)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return parse_proxy(text.encode("utf-8"), f"sample proxy {name}")


def deploy_proxy(
    cluster: Cluster,
    artifact: ProxyArtifact,
    *,
    timeout: float = SERVE_TIMEOUT_S,
    on_result: Callable[[DeployResult], None] | None = None,
    journal: Journal | None = None,
) -> list[DeployResult]:
    """Write the proxy into every node's proxy-services folder and wait until each serves it.

    Every node's folder is checked first: if one is missing, nothing is written anywhere.
    A node whose file already holds these bytes is not written again ('unchanged'). With a
    ``journal``, every write goes through it (the original saved first).
    """
    transports = {n.name: transport_for(n) for n in cluster.nodes}
    try:
        for node in cluster.nodes:
            folder = node.proxy_services_dir
            if not transports[node.name].exists(folder):
                raise ConfigError(f"{node.name}: proxy-services folder {folder} not found; is "
                                  "ei_home right in the cluster file? Nothing was deployed")
        results = []
        for node in cluster.nodes:
            r = _deploy_one(transports[node.name], node, artifact, timeout, journal)
            results.append(r)
            if on_result:
                on_result(r)
        return results
    finally:
        for t in transports.values():
            t.close()


def _deploy_one(t: NodeTransport, node: Node, artifact: ProxyArtifact, timeout: float,
                journal: Journal | None) -> DeployResult:
    began = time.monotonic()
    path = f"{node.proxy_services_dir}/{artifact.file_name}"
    try:
        try:
            old = t.read_bytes(path)
        except FileNotFoundError:
            old = None
        offset = t.size(node.log_file)
        if old == artifact.xml:
            action = "unchanged"
        else:
            if journal is not None:
                journal.write(t, path, artifact.xml)
            else:
                t.write_bytes(path, artifact.xml)
            action = "new" if old is None else "replaced"
        problem = _wait_served(t, node, artifact.name, path, offset, action != "unchanged", timeout)
    except (TransportError, OSError) as e:
        return DeployResult(node.name, False, "failed", time.monotonic() - began, str(e))
    took = time.monotonic() - began
    if problem:
        return DeployResult(node.name, False, "failed" if action == "unchanged" else action,
                            took, problem)
    url = f"http://{node.host}:{node.http_port}/services/{artifact.name}"
    return DeployResult(node.name, True, action, took,
                        f"{artifact.file_name} written to {node.proxy_services_dir}; "
                        f"POST {url} answers (after {took:.1f} s)" if action != "unchanged" else
                        f"{path} already holds it; POST {url} answers")


def _deployer_lines(t: NodeTransport, node: Node, offset: int, name: str, path: str) -> list[str]:
    text = t.read_from(node.log_file, offset).decode("utf-8", "replace")
    return [ln.strip() for ln in text.splitlines()
            if "ProxyService" in ln and (name in ln or path in ln)
            or ("ERROR" in ln and (name in ln or path in ln))]


def _wait_served(t: NodeTransport, node: Node, name: str, path: str, offset: int,
                 written: bool, timeout: float) -> str | None:
    """None once the node deployed (when written) and serves `name`; else why not."""
    deadline = time.monotonic() + timeout
    deployed = not written
    last = "no answer yet"
    while True:
        if not deployed:
            lines = _deployer_lines(t, node, offset, name, path)
            errors = [ln for ln in lines if "ERROR" in ln]
            if errors:
                return f"the node refused it: {errors[-1]}"
            deployed = any("has been deployed" in ln for ln in lines)
        if deployed:
            status, last = _post(node, name)
            if 200 <= status < 300:
                return None
        if time.monotonic() > deadline:
            if not deployed:
                return (f"written to {path} but the node did not log its deployment within "
                        f"{timeout:.0f} s; is it running? (last log: "
                        f"{_last_line(t, node) or 'empty'})")
            return f"deployed, but POST /services/{name} did not answer 2xx in {timeout:.0f} s ({last})"
        time.sleep(POLL_S)


def _post(node: Node, name: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("POST", f"/services/{name}", body=_PING,
                     headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "urn:mediate"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as e:
        return 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def _last_line(t: NodeTransport, node: Node) -> str:
    size = t.size(node.log_file)
    lines = t.read_from(node.log_file, max(0, size - 4096)).decode("utf-8", "replace").splitlines()
    return lines[-1].strip() if lines else ""


__all__ = ["DeployResult", "EiperfError", "ProxyArtifact", "deploy_proxy", "load_proxy",
           "parse_proxy", "sample_proxy"]
