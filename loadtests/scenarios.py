"""Locust scenarios: FastHttpUser classes, one per kind of traffic through the load balancer.

Each class says which vhost it uses; `configure_scenarios` points them at the cluster's URLs,
sets weights, TLS verification and payloads from the command line (see locustfile.py).
Every response is checked: status, SOAP faults, and that the proxy echoed the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from eicore.cluster import Cluster
from loadtests.catalog import SCENARIO_VHOSTS, parse_weights  # noqa: F401 (re-exported)
from loadtests.messages import json_document, soap_envelope

SAMPLE_PROXY = "/services/SampleProxy"
DELAYED_PROXY = "/services/DelayedProxy"
DBLOOKUP_PROXY = "/services/DbLookupProxy"
SOAP_HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "urn:getQuote"}
JSON_HEADERS = {"Content-Type": "application/json"}
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
CONSOLE_LOGIN = "/carbon/admin/login_action.jsp"
CONSOLE_HOME = "/carbon/admin/index.jsp"
# The console user: the product's default super admin (user-mgt.xml), which the testbed's
# user store holds (as a salted hash, testbed/database.py).
CONSOLE_USER = "admin"
CONSOLE_PASSWORD = "admin"  # noqa: S105 (the product's well-known default, not a secret)


class EiUser(FastHttpUser):
    """Base of every scenario: which vhost, which Host header, what it sends."""

    abstract = True
    scenario = ""
    vhost = "http"  # http | https | console | status
    host_header: str | None = None
    payload: bytes = b""
    network_timeout = 30.0
    connection_timeout = 10.0
    _context: dict[str, str] = {"scenario": ""}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._context = {"scenario": cls.scenario}

    def context(self) -> dict[str, str]:
        """Locust's per-user part of every request event's context: the scenario (the
        recorder's `scenario` column). One dict per class: Locust merges it into a new one
        for each request, so no request builds its own."""
        return self._context

    @staticmethod
    def _status_failure(resp, what: str = "HTTP") -> str:
        """Why a response with the wrong status failed: its status, or for no response at all
        (status 0) the connection error itself, so a reset, a refusal and a timeout differ."""
        if resp.status_code == 0 and getattr(resp, "error", None) is not None:
            return f"connection error: {resp.error!r}"
        return f"{what} {resp.status_code}"

    def _check_echo(self, resp, sent: bytes) -> None:
        if resp.status_code != 200:
            resp.failure(self._status_failure(resp))
        elif resp.content and b":Fault>" in resp.content[:2048]:
            resp.failure("SOAP fault")
        elif resp.content != sent:
            resp.failure("response body is not the message sent (proxy did not echo it)")
        else:
            resp.success()

    def _headers(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "Host": self.host_header} if self.host_header else dict(base)

    def _post(self, path: str, name: str, headers: dict[str, str]) -> None:
        with self.client.post(path, data=self.payload, headers=self._headers(headers), name=name,
                              catch_response=True) as r:
            self._check_echo(r, self.payload)


class SoapHttpUser(EiUser):
    """SOAP 1.1 POST to the sample log-mediator proxy through the HTTP vhost."""

    scenario = "soap_http"
    vhost = "http"

    @task
    def soap(self) -> None:
        self._post(SAMPLE_PROXY, "soap_http", SOAP_HEADERS)


class SoapHttpsUser(EiUser):
    """The same SOAP POST through the HTTPS vhost (certificate checked against the CA)."""

    scenario = "soap_https"
    vhost = "https"

    @task
    def soap(self) -> None:
        self._post(SAMPLE_PROXY, "soap_https", SOAP_HEADERS)


class JsonUser(EiUser):
    """A JSON POST to the sample proxy through the HTTP vhost."""

    scenario = "json"
    vhost = "http"

    @task
    def post_json(self) -> None:
        self._post(SAMPLE_PROXY, "json", JSON_HEADERS)


class DelayedUser(EiUser):
    """SOAP POST to a proxy whose backend answers late (exercises nginx timeouts)."""

    scenario = "delayed"
    vhost = "http"

    @task
    def soap(self) -> None:
        self._post(DELAYED_PROXY, "delayed", SOAP_HEADERS)


class DbLookupUser(EiUser):
    """SOAP POST to a proxy that looks a row up through a JDBC pool per message (the testbed's
    DbLookupProxy): the datasource's pool size and maxWait shape its latency and errors."""

    scenario = "dblookup"
    vhost = "http"

    @task
    def soap(self) -> None:
        self._post(DBLOOKUP_PROXY, "dblookup", SOAP_HEADERS)


class ConsoleUser(EiUser):
    """A console user through the ui.ei.wso2.com vhost: signs in once (the node checks the user
    against its user store database, WSO2_USER_DB) and browses with that session, kept by its
    cookie. A node without a user store has no sign-in (404): the user browses without one."""

    scenario = "console"
    vhost = "console"
    signed_in = False

    def on_start(self) -> None:
        form = urlencode({"username": CONSOLE_USER, "password": CONSOLE_PASSWORD})
        with self.client.post(CONSOLE_LOGIN, data=form, headers=self._headers(FORM_HEADERS),
                              name="console_login", allow_redirects=False,
                              catch_response=True) as r:
            if r.status_code == 404:
                r.success()  # no user store on this node: nothing to sign in to
            elif r.status_code == 302 and r.headers.get("Location", "").endswith(CONSOLE_HOME):
                self.signed_in = True
                r.success()
            else:
                r.failure(f"console sign-in as {CONSOLE_USER} refused "
                          f"({self._status_failure(r)}, to {r.headers.get('Location')})")

    @task
    def console(self) -> None:
        with self.client.get(CONSOLE_HOME, headers=self._headers({}), name="console",
                             catch_response=True) as r:
            if r.status_code != 200 or b"Management Console" not in (r.content or b""):
                r.failure(self._status_failure(r, "console answered HTTP"))
            elif self.signed_in and b"Signed-in as" not in r.content:
                r.failure("console session lost (the sign-in page again)")


class StaticUser(EiUser):
    """GET nginx's static location (no node involved): measures the generator itself.

    Its status check is Locust's own (a 4xx/5xx or a connection error fails the request, with
    Locust's text: "URL ...: code=404", "[Errno 111] Connection refused"), not a
    `catch_response` block like the others: that block cost ~4 % of the Locust process's CPU
    per request here (bench/bench_generator.py), and this scenario is what that bench measures.
    """

    scenario = "static"
    vhost = "status"

    @task
    def static(self) -> None:
        self.client.get("/static", name="static")


SCENARIOS: dict[str, type[EiUser]] = {
    c.scenario: c for c in (SoapHttpUser, SoapHttpsUser, JsonUser, DelayedUser, DbLookupUser,
                            ConsoleUser, StaticUser)
}
assert {n: c.vhost for n, c in SCENARIOS.items()} == SCENARIO_VHOSTS


@dataclass(frozen=True)
class ScenarioConfig:
    weights: dict[str, int]
    message_size: int
    per_user_rate: float | None = None


def _base_url(cluster: Cluster | None, vhost: str, host: str | None) -> str | None:
    if cluster is None:
        return host if vhost == "http" else None
    lb = cluster.load_balancer
    if vhost == "http" and host:
        return host  # --host beside --cluster: the HTTP vhost at that address
    if vhost == "status":
        if not lb.status_url:
            return None
        u = urlsplit(lb.status_url)
        return f"{u.scheme}://{u.netloc}"
    return {"http": lb.http_url, "https": lb.https_url, "console": lb.console_url}[vhost]


def configure_scenarios(cfg: ScenarioConfig, cluster: Cluster | None,
                        host: str | None) -> list[type[EiUser]]:
    """Set each scenario's weight, URL, Host header, TLS and payload; return the active ones."""
    import gevent.ssl

    ca = cluster.load_balancer.ca_file if cluster else None
    active = []
    for name, cls in SCENARIOS.items():
        cls.weight = cfg.weights.get(name, 0)
        if cls.weight <= 0:
            continue
        base = _base_url(cluster, cls.vhost, host)
        if base is None:
            raise ValueError(f"scenario {name} needs the {cls.vhost} vhost: pass --cluster FILE "
                             "(plain --host only serves soap_http and json)")
        cls.host = base
        if cluster is not None and cls.vhost in ("http", "https", "console"):
            lb = cluster.load_balancer
            cls.host_header = lb.console_host_name if cls.vhost == "console" else lb.host_name
        if base.startswith("https"):
            cls.insecure = False
            cls.ssl_context_factory = staticmethod(
                lambda ca=ca: gevent.ssl.create_default_context(cafile=ca))
        cls.payload = (json_document(cfg.message_size) if name == "json"
                       else soap_envelope(cfg.message_size))
        if cfg.per_user_rate:
            cls.wait_time = constant_throughput(cfg.per_user_rate)
        active.append(cls)
    return active
