"""The testbed's central database: a private MariaDB, as the clustering guide's `carbondb`.

The guide gives every cluster one database server holding `REGISTRY_DB` (the config and
governance registry mounts every node shares), one local registry per node
(`REGISTRY_LOCAL<n>`) and `WSO2_USER_DB`. This module creates such a server inside the testbed
folder (`<testbed>/database/`: datadir, socket, pid file, error log) with Debian's
`mariadb-install-db` and `mariadbd --no-defaults`, so the system instance and /var/lib/mysql are
never touched; it listens on 127.0.0.1 and a port of the testbed's plan.

One user per purpose (the shared registry, each local registry, the user store), each with a
generated password in a 0600 file beside the datadir; cluster.toml's `[database]` names those
files, never the passwords. The server runs as the user eiperf runs as: as root that needs
`--user=root` (mariadbd refuses root otherwise); a dedicated system user would have to reach a
datadir under root's 0700 home, which it cannot. The schema admin is the OS user itself over
the socket (unix_socket authentication, as Debian sets root up): no admin password exists.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eicore.cluster import Database, Datasource
from eicore.credentials import write_secret_file
from eicore.errors import EiperfError

Progress = Callable[[str], None]

FOLDER = "database"  # in the testbed folder
SHARED_REGISTRY_DB = "REGISTRY_DB"
USER_DB = "WSO2_USER_DB"
LOCAL_REGISTRY_DB = "REGISTRY_LOCAL{n}"
# Datasource names and JNDI names as the guide's master-datasources.xml declares them.
SHARED_DATASOURCE = "WSO2_SHARED_REG_DB"
LOCAL_DATASOURCE = "WSO2_CARBON_DB"
USER_DATASOURCE = "WSO2_USER_DB"
JNDI_NAMES = {SHARED_DATASOURCE: "jdbc/WSO2SharedDB", LOCAL_DATASOURCE: "jdbc/WSO2CarbonDB",
              USER_DATASOURCE: "jdbc/WSO2UMDB"}
DESCRIPTIONS = {SHARED_DATASOURCE: "The datasource used for the shared config and governance "
                "registry", LOCAL_DATASOURCE: "The datasource used for the local registry",
                USER_DATASOURCE: "The datasource used for the user manager"}
JDBC_DRIVER = "org.mariadb.jdbc.Driver"  # Debian's libmariadb-java; it takes jdbc:mysql: URLs
#: the guide's pool settings (Tomcat JDBC pool), as master-datasources.xml spells them
POOL_DEFAULTS = {"maxActive": "50", "maxWait": "60000", "minIdle": "5", "testOnBorrow": "true",
                 "validationQuery": "SELECT 1", "validationInterval": "30000"}
# Small InnoDB files: the testbed's datadir is ~26 MB instead of ~114 MB.
_SERVER_OPTS = ("--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M",
                "--skip-name-resolve")
_SOCKET_MAX = 100  # sun_path holds 108 bytes
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
FALLBACK_DIRS = ("/usr/sbin", "/usr/bin")  # Debian puts mariadbd outside a non-root PATH


def _find(name: str) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in FALLBACK_DIRS if os.access(f"{d}/{name}", os.X_OK)), None)
    if not found:
        raise EiperfError(f"{name} not found: install MariaDB (apt-get install mariadb-server, "
                          "or scripts/install_system_deps.sh as root)")
    return found


@dataclass(frozen=True)
class DatabasePlan:
    """Where the testbed's database lives and what it holds, for `nodes` nodes."""

    dir: Path  # the testbed folder
    port: int
    nodes: tuple[str, ...]
    host: str = "127.0.0.1"

    @property
    def folder(self) -> Path:
        return self.dir / FOLDER

    def datasources(self) -> tuple[Datasource, ...]:
        """The guide's datasources, one database user each (its password file beside them)."""

        def ds(name: str, database: str, user: str, node: str | None = None) -> Datasource:
            return Datasource(name, database, user, str(self.folder / f"{user}.password"), node)

        out = [ds(SHARED_DATASOURCE, SHARED_REGISTRY_DB, "regadmin")]
        out += [ds(LOCAL_DATASOURCE, LOCAL_REGISTRY_DB.format(n=i + 1), f"reglocal{i + 1}", node)
                for i, node in enumerate(self.nodes)]
        out.append(ds(USER_DATASOURCE, USER_DB, "umadmin"))
        return tuple(out)

    def database(self) -> Database:
        return Database(self.host, self.port, self.datasources())


def folder_of(testbed_dir: str | Path) -> Path:
    return Path(testbed_dir) / FOLDER


def _paths(folder: Path) -> dict[str, Path]:
    return {"datadir": folder / "data", "socket": folder / "mariadbd.sock",
            "pid": folder / "mariadbd.pid", "log": folder / "mariadbd.err"}


def socket_path(testbed_dir: str | Path) -> Path:
    return _paths(folder_of(testbed_dir))["socket"]


def _as_root() -> tuple[str, ...]:
    return ("--user=root",) if os.geteuid() == 0 else ()


def new_password() -> str:
    """A random database password (letters, digits, '-' and '_': safe in XML, JDBC and SQL)."""
    return secrets.token_urlsafe(18)


def write_passwords(plan: DatabasePlan) -> None:
    """A new password for each database user, in its 0600 file (before `create` uses them)."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    os.chmod(plan.folder, 0o700)
    for ds in plan.datasources():
        write_secret_file(Path(ds.password_file), new_password())


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _setup_sql(plan: DatabasePlan, passwords: dict[str, str]) -> str:
    """The guide's databases, and each user allowed only its own one."""
    out = []
    for ds in plan.datasources():
        out.append(f"CREATE DATABASE IF NOT EXISTS `{ds.database}`;")
    for ds in plan.datasources():
        out.append(f"CREATE USER IF NOT EXISTS {_quote(ds.user)}@'%' "
                   f"IDENTIFIED BY {_quote(passwords[ds.user])};")
        out.append(f"GRANT ALL PRIVILEGES ON `{ds.database}`.* TO {_quote(ds.user)}@'%';")
    return "\n".join(out) + "\n"


# The registry's path table, as WSO2's registry schema (dbscripts/mysql.sql) declares it: a node
# checks each mount's target path in it at start. Rows: the paths each registry holds.
_REG_PATH = """CREATE TABLE IF NOT EXISTS `{db}`.REG_PATH (
    REG_PATH_ID INTEGER NOT NULL AUTO_INCREMENT,
    REG_PATH_VALUE VARCHAR(750) NOT NULL,
    REG_PATH_PARENT_ID INTEGER,
    REG_TENANT_ID INTEGER DEFAULT 0,
    CONSTRAINT PK_REG_PATH PRIMARY KEY (REG_PATH_ID, REG_TENANT_ID),
    CONSTRAINT UNIQUE_REG_PATH_TENANT_ID UNIQUE (REG_PATH_VALUE, REG_TENANT_ID)
) ENGINE INNODB;"""
SHARED_PATHS = ("/", "/_system", "/_system/config", "/_system/governance")
LOCAL_PATHS = ("/", "/_system", "/_system/local")
TENANT_ID = -1234  # carbon.super
#: the `dblookup` scenario's table, in each node's local registry database (WSO2_CARBON_DB), as
#: Synapse's DBLookup sample (360) creates it
LOOKUP_DATASOURCE = LOCAL_DATASOURCE
LOOKUP_TABLE = "company"
_LOOKUP = """CREATE TABLE IF NOT EXISTS `{db}`.company (
    name VARCHAR(10) PRIMARY KEY, id VARCHAR(10), price DOUBLE, location VARCHAR(10)
) ENGINE INNODB;
INSERT IGNORE INTO `{db}`.company VALUES ('IBM', 'c1', 0.0, 'NY'), ('SUN', 'c2', 0.0, 'CA'),
    ('MSFT', 'c3', 0.0, 'WA');"""


# The user store's users table (Carbon 4.4's JDBC user store, dbscripts/mysql.sql) and its one
# user: the product's default super admin (user-mgt.xml's admin/admin), with the password kept
# as Carbon keeps it, base64(SHA-256(password + salt)). The console scenario signs in as it.
CONSOLE_USER = "admin"
CONSOLE_PASSWORD = "admin"  # noqa: S105 (the product's well-known default, not a secret)
_UM_USER = """CREATE TABLE IF NOT EXISTS `{db}`.UM_USER (
    UM_ID INTEGER NOT NULL AUTO_INCREMENT,
    UM_USER_NAME VARCHAR(255) NOT NULL,
    UM_USER_PASSWORD VARCHAR(255) NOT NULL,
    UM_SALT_VALUE VARCHAR(31),
    UM_REQUIRE_CHANGE BOOLEAN DEFAULT FALSE,
    UM_CHANGED_TIME TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UM_TENANT_ID INTEGER DEFAULT 0,
    PRIMARY KEY (UM_ID, UM_TENANT_ID),
    UNIQUE (UM_USER_NAME, UM_TENANT_ID)
) ENGINE INNODB;"""


def password_hash(password: str, salt: str) -> str:
    """How Carbon's JDBC user store keeps a password: base64 of SHA-256(password + salt)."""
    return base64.b64encode(hashlib.sha256((password + salt).encode()).digest()).decode()


def _users_sql(database: str) -> str:
    salt = secrets.token_urlsafe(12)
    return (_UM_USER.format(db=database) + "\n"
            f"INSERT IGNORE INTO `{database}`.UM_USER (UM_USER_NAME, UM_USER_PASSWORD, "
            f"UM_SALT_VALUE, UM_TENANT_ID) VALUES ({_quote(CONSOLE_USER)}, "
            f"{_quote(password_hash(CONSOLE_PASSWORD, salt))}, {_quote(salt)}, {TENANT_ID});")


def _schema_sql(plan: DatabasePlan) -> str:
    """The registry path tables (shared and local), the lookup table of each local one and the
    user store's users."""
    out = []
    for ds in plan.datasources():
        if ds.name == USER_DATASOURCE:
            out.append(_users_sql(ds.database))
            continue
        paths = SHARED_PATHS if ds.name == SHARED_DATASOURCE else LOCAL_PATHS
        out.append(_REG_PATH.format(db=ds.database))
        rows = ", ".join(f"({_quote(p)}, {TENANT_ID})" for p in paths)
        out.append(f"INSERT IGNORE INTO `{ds.database}`.REG_PATH (REG_PATH_VALUE, REG_TENANT_ID) "
                   f"VALUES {rows};")
        if ds.name == LOOKUP_DATASOURCE:
            out.append(_LOOKUP.format(db=ds.database))
    return "\n".join(out) + "\n"


def admin_sql(testbed_dir: str | Path, sql: str, timeout: float = 30) -> str:
    """Run `sql` as the schema admin (the OS user over the socket); its tab-separated output."""
    sock = socket_path(testbed_dir)
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
    r = subprocess.run([_find("mariadb"), "--no-defaults", f"--socket={sock}", f"--user={user}",
                        "--batch", "--skip-column-names"], input=sql, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise EiperfError(f"database: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
    return r.stdout


def create(plan: DatabasePlan, progress: Progress = print) -> Database:
    """Initialise the datadir, write the passwords, start the server, make the databases and
    users; the server is left running. Whatever fails, nothing started here keeps running."""
    paths = _paths(plan.folder)
    if len(str(paths["socket"])) > _SOCKET_MAX:
        raise EiperfError(f"database socket path {paths['socket']} is too long for a Unix "
                          "socket; choose a shorter --testbed-dir")
    plan.folder.mkdir(parents=True, exist_ok=True)
    os.chmod(plan.folder, 0o700)
    progress("initialising the central database (MariaDB) ...")
    stop(plan.dir)
    shutil.rmtree(paths["datadir"], ignore_errors=True)  # left by a half-made testbed
    r = subprocess.run([_find("mariadb-install-db"), "--no-defaults",
                        f"--datadir={paths['datadir']}", *_as_root(),
                        "--auth-root-authentication-method=socket", "--skip-test-db",
                        *_SERVER_OPTS], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise EiperfError(f"mariadb-install-db failed: {tail[0]}")
    passwords = {ds.user: ds.password() for ds in plan.datasources()}
    db = plan.database()
    start(plan.dir, db)
    try:
        admin_sql(plan.dir, _setup_sql(plan, passwords) + _schema_sql(plan))
    except BaseException:
        stop(plan.dir)
        raise
    return db


def running_pid(testbed_dir: str | Path) -> int | None:
    """The PID of the testbed's mariadbd when its pid file names a live mariadbd."""
    pid_file = _paths(folder_of(testbed_dir))["pid"]
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm in ("mariadbd", "mysqld") and _alive(pid) else None


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _answers(testbed_dir: str | Path) -> bool:
    try:
        admin_sql(testbed_dir, "SELECT 1;", timeout=5)
    except (EiperfError, subprocess.TimeoutExpired):
        return False
    return True


def start(testbed_dir: str | Path, db: Database) -> int:
    """Start the testbed's mariadbd (unless it runs) and wait until it answers; its PID."""
    pid = running_pid(testbed_dir)
    if pid is not None:
        return pid
    paths = _paths(folder_of(testbed_dir))
    if not paths["datadir"].is_dir():
        raise EiperfError(f"no database in {paths['datadir']}; run 'eiperf down --purge' and "
                          "'eiperf up' to build the testbed again")
    argv = [_find("mariadbd"), "--no-defaults", f"--datadir={paths['datadir']}",
            f"--socket={paths['socket']}", f"--port={db.port}", f"--bind-address={db.host}",
            f"--pid-file={paths['pid']}", f"--log-error={paths['log']}", *_as_root(),
            *_SERVER_OPTS]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EiperfError(f"mariadbd exited with code {proc.returncode}: "
                              f"{_last_error(paths['log'])}")
        if _answers(testbed_dir):
            return proc.pid
        time.sleep(0.05)
    _kill(proc.pid)
    raise EiperfError(f"mariadbd did not answer within {START_TIMEOUT_S:.0f} s: "
                      f"{_last_error(paths['log'])}")


def _last_error(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "[ERROR]" in ln]
    except FileNotFoundError:
        return "no error log"
    return lines[-1].split("[ERROR]", 1)[-1].strip() if lines else f"see {log}"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(testbed_dir: str | Path) -> bool:
    """Stop the testbed's mariadbd by its PID (TERM: a clean shutdown); True if it ran."""
    pid = running_pid(testbed_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:  # our own child when this process started it: reap it
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _alive(pid):
            return True
        time.sleep(0.05)
    _kill(pid)
    return True
