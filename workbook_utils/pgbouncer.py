"""A private PgBouncer in front of the workbook's database (notebook 09): find it, start it, read its console, stop it.

There is no PgBouncer wheel: the binary comes from the system (`apt-get install pgbouncer`, `brew install
pgbouncer`) or WORKBOOK_PGBOUNCER. It listens on 127.0.0.1 and a free port, with its files under
`.workbook/pgbouncer-<name>/`. PgBouncer refuses to run as root, so as root it runs as the embedded server's OS
user. A PgBouncer left behind by a killed kernel is found by its pid file and stopped at the next start.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from . import config, server
from .errors import WorkbookError

INSTALL = ("PgBouncer is not installed: `sudo apt-get install pgbouncer` (Debian, Ubuntu), `brew install pgbouncer` "
           "(macOS), or set WORKBOOK_PGBOUNCER to its path (or WORKBOOK_PGBOUNCER_URL to a running one).")
PLACES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer", "/opt/homebrew/bin/pgbouncer")


def binary() -> str | None:
    """The pgbouncer program: WORKBOOK_PGBOUNCER, else on PATH, else a usual place; None when there is none."""
    if wanted := os.environ.get("WORKBOOK_PGBOUNCER"):
        return wanted if Path(wanted).is_file() else None
    return shutil.which("pgbouncer") or next((p for p in PLACES if Path(p).is_file()), None)


@dataclass
class PgBouncer:
    """A running PgBouncer: the URL of each of its databases, and its admin console."""

    host: str
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)
    folder: Path | None = None

    def url(self, database: str, driver: str = "postgresql+psycopg", user: str = "client") -> str:
        """A client URL of one of its databases (any user name: the server login is in the database's entry)."""
        if self.folder is not None and self.process is None:
            raise WorkbookError(f"This PgBouncer ({self.folder.name}) was stopped: start it again "
                                "(notebook 09: run the first cell of §3 again).")
        return f"{driver}://{quote(user)}@{self.host}:{self.port}/{database}"

    def console(self):  # -> psycopg.Connection
        """A connection to the admin console (database `pgbouncer`): `SHOW POOLS`, `SHOW STATS`, `RELOAD`."""
        import psycopg

        return psycopg.connect(self.url("pgbouncer", "postgresql"), autocommit=True, connect_timeout=5,
                               cursor_factory=psycopg.ClientCursor)  # the console speaks the simple protocol only

    def show(self, what: str) -> list[dict]:
        """`SHOW POOLS`, `SHOW STATS`, … as a list of rows (dicts)."""
        from psycopg.rows import dict_row

        with self.console() as conn:
            return conn.cursor(row_factory=dict_row).execute(f"SHOW {what}").fetchall()

    def config_text(self) -> str:
        """Its configuration file, passwords masked (empty for a PgBouncer this module did not start)."""
        import re

        if self.folder is None:
            return f"; a PgBouncer started elsewhere, at {self.host}:{self.port}"
        return re.sub(r"password='[^']*'", "password='…'", (self.folder / "pgbouncer.ini").read_text())

    def stop(self) -> None:
        """Stop it (immediate shutdown: its server connections close) and wait until the process is gone."""
        if self.process is not None and self.process.poll() is None:
            _terminate(self.process.pid, self.process)
        self.process = None


def entry(url: str, pool_size: int | None = None) -> str:
    """A [databases] line's value: where the server is and who PgBouncer logs in as (from a libpq URL)."""
    p = urlsplit(url.replace("+psycopg", ""))
    parts = {"host": p.hostname or "127.0.0.1", "port": p.port or 5432, "dbname": unquote(p.path.lstrip("/")),
             "user": unquote(p.username or ""), "password": unquote(p.password or ""), "pool_size": pool_size}
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v not in ("", None))


def _folder(name: str) -> Path:
    return config.state_dir() / f"pgbouncer-{name}"


def _alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, our own child not yet reaped, counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _terminate(pid: int, process: subprocess.Popen | None = None, timeout: float = 5.0) -> None:
    """Terminate (PgBouncer's immediate shutdown), then kill after `timeout`; returns once it has exited."""
    import psutil

    for stop in ("terminate", "kill"):
        try:
            getattr(psutil.Process(pid), stop)()
        except psutil.NoSuchProcess:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None or process is None and not _alive(pid):
                return
            time.sleep(0.05)


def stop_leftover(name: str) -> bool:
    """Stop a PgBouncer of this name that an earlier (killed) kernel left running; True if there was one."""
    import psutil

    pidfile = _folder(name) / "pgbouncer.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (OSError, ValueError, IndexError, psutil.Error):
        pidfile.unlink(missing_ok=True)
        return False
    pidfile.unlink(missing_ok=True)
    if not _alive(pid) or str(_folder(name)) not in cmdline:  # a reused pid: not ours
        return False
    _terminate(pid)
    return True


def _write_files(folder: Path, port: int, databases: dict[str, str], settings: dict[str, object]) -> Path:
    lines = ["[databases]", *(f"{alias} = {value}" for alias, value in databases.items()), "", "[pgbouncer]"]
    base: dict[str, object] = {"listen_addr": "127.0.0.1", "listen_port": port, "unix_socket_dir": "",
                               "auth_type": "any", "pool_mode": "transaction", "logfile": folder / "pgbouncer.log",
                               "pidfile": folder / "pgbouncer.pid", "ignore_startup_parameters": "extra_float_digits",
                               "server_login_retry": 1, "query_wait_timeout": 10}
    lines += [f"{k} = {v}" for k, v in {**base, **settings}.items()]
    ini = folder / "pgbouncer.ini"
    ini.write_text("; written by workbook_utils.pgbouncer\n" + "\n".join(lines) + "\n")
    ini.chmod(0o600)  # it may hold a password
    return ini


def start(name: str, databases: dict[str, str], **settings: object) -> PgBouncer:
    """Start a PgBouncer named `name` (a leftover of that name is stopped first) serving `databases` (alias → entry).

    `settings` go to its [pgbouncer] section (pool_mode, default_pool_size, max_client_conn, …). With
    WORKBOOK_PGBOUNCER_URL set (e.g. docker compose's PgBouncer), nothing is started: that one is used as it is.
    """
    if external := os.environ.get("WORKBOOK_PGBOUNCER_URL"):
        p = urlsplit(external)
        return PgBouncer(p.hostname or "127.0.0.1", p.port or 6432)
    program = binary()
    if program is None:
        raise WorkbookError(INSTALL)
    stop_leftover(name)
    folder = _folder(name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    server._give_to_os_user(folder)  # as root: PgBouncer runs as the embedded server's user, who owns its files
    port = _free_port()
    ini = _write_files(folder, port, databases, settings)
    if server._as_root():
        shutil.chown(ini, server.OS_USER)
    log = open(folder / "stderr.log", "w")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen([program, str(ini)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               user=server.OS_USER if server._as_root() else None, start_new_session=True)
    log.close()
    bouncer = PgBouncer("127.0.0.1", port, process, folder)
    atexit.register(bouncer.stop)
    _wait_until_listening(bouncer, folder)
    return bouncer


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(bouncer: PgBouncer, folder: Path, timeout: float = 10.0) -> None:
    """Return once its port accepts connections; a PgBouncer that exited is reported with its last log line."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            said = (folder / "stderr.log").read_text(errors="replace").strip().splitlines()
            raise WorkbookError(f"PgBouncer did not start: {said[-1] if said else 'no output'} "
                                f"(files in {folder}).")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((bouncer.host, bouncer.port)) == 0:
                return
        time.sleep(0.05)
    bouncer.stop()
    raise WorkbookError(f"PgBouncer did not listen on port {bouncer.port} within {timeout:.0f} s (files in {folder}).")


def burst(url: str, clients: int, query: str, application_name: str, timeout: float = 30.0) -> list[dict]:
    """`clients` threads connect, one connect at a time; once every one has tried, those connected run `query`.

    One connect at a time: refused attempts directly to PostgreSQL then take one server slot at most, never
    `max_connections` (a crowd of refused backends would refuse everyone else's sessions too).
    One dict per client: outcome ("ok" or why it was refused) and the query's first value. Bounded by `timeout`.
    """
    import psycopg

    everyone_tried, one_at_a_time = threading.Barrier(clients, timeout=timeout), threading.Lock()
    results: list[dict] = []

    def client() -> None:
        conn, outcome, value = None, "ok", None
        try:
            with one_at_a_time:
                conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name=application_name)
        except psycopg.OperationalError as exc:
            outcome = str(exc).split("FATAL:")[-1].strip().splitlines()[0]
        try:
            everyone_tried.wait()
            if conn is not None:
                value = conn.execute(query).fetchone()[0]
        except (threading.BrokenBarrierError, psycopg.Error) as exc:
            outcome = outcome if conn is None else type(exc).__name__
        finally:
            if conn is not None:
                conn.close()
            results.append({"outcome": outcome, "value": value})

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


@contextmanager
def watch_pools(bouncer: PgBouncer, database: str, every: float = 0.05) -> Iterator[list[dict]]:
    """Sample `SHOW POOLS` for one database every `every` seconds while the block runs (notebook 09 §3)."""
    samples: list[dict] = []
    done = threading.Event()

    def sample(console) -> None:
        from psycopg.rows import dict_row

        t0 = time.perf_counter()
        while not done.is_set():
            rows = console.cursor(row_factory=dict_row).execute("SHOW POOLS").fetchall()
            row = next((r for r in rows if r["database"] == database), {})
            samples.append({"seconds": time.perf_counter() - t0, **{k: row.get(k, 0) for k in
                                                                    ("cl_active", "cl_waiting", "sv_active", "sv_idle")}})
            done.wait(every)

    with bouncer.console() as console:
        sampler = threading.Thread(target=sample, args=(console,), daemon=True)
        sampler.start()
        try:
            yield samples
        finally:
            done.set()
            sampler.join(5)
