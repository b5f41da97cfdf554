"""The embedded server: start/stop/status, recovery from a killed server, busy ports, old data directories."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from workbook_utils import db, marker, server, urls
from workbook_utils.errors import WorkbookError


def test_start_is_idempotent():
    first = server.start()
    again = server.start()
    assert again.running and again.pid == first.pid


def test_server_is_configured_for_the_lessons():
    with db.connect(urls.admin_url()) as conn:
        show = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in
                ("shared_preload_libraries", "log_lock_waits", "deadlock_timeout", "max_connections", "listen_addresses")}
    assert show == {"shared_preload_libraries": "pg_stat_statements,auto_explain", "log_lock_waits": "on",
                    "deadlock_timeout": "200ms", "max_connections": "50", "listen_addresses": "127.0.0.1"}


def test_also_listens_on_a_unix_socket():
    import psycopg

    sockdir = server._socket_dir()
    with psycopg.connect(host=str(sockdir), port=server.status().port, user="postgres", dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_recovers_after_the_server_is_killed():
    pid = server.status().pid
    os.kill(pid, signal.SIGKILL)  # what an OOM killer or a closed laptop lid does
    deadline = time.time() + 10
    while server.status().running and time.time() < deadline:
        time.sleep(0.1)
    assert not server.status().running
    st = server.start()
    assert st.running and st.pid != pid
    with db.connect(urls.libpq_url()) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0


def test_a_busy_port_is_replaced_by_a_free_one():
    busy = server.status().port  # our own server holds it
    assert not server.port_is_free(busy)
    chosen = server._choose_port()
    assert chosen != busy and server.port_is_free(chosen)


def test_a_configured_port_that_is_busy_is_refused_clearly(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("WORKBOOK_PGPORT", str(s.getsockname()[1]))
        with pytest.raises(WorkbookError, match="already in use"):
            server._choose_port()


def test_data_directory_from_another_major_version_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path))
    (tmp_path / ".workbook" / "pgdata" / "global").mkdir(parents=True)
    (tmp_path / ".workbook" / "pgdata" / "PG_VERSION").write_text("15\n")
    (tmp_path / ".workbook" / "pgdata" / "global" / "pg_control").write_bytes(b"\0" * 8192)
    with pytest.raises(WorkbookError, match="PostgreSQL 15.*ships PostgreSQL 18"):
        server.start()


def test_stop_then_start_keeps_the_data():
    server.stop()
    assert not server.status().running
    assert server.start().running
    with db.connect(urls.libpq_url()) as conn:
        assert marker.seeded_scale(conn) == "tiny"


def test_setup_runs_pg_ctl_once_at_most(monkeypatch):
    """URLs read the port from the server's file; only start() checks that the server is alive."""
    from workbook_utils import setup

    calls = []
    real = server._call_pg_ctl
    monkeypatch.setattr(server, "_call_pg_ctl", lambda *a, **k: calls.append(a) or real(*a, **k))
    setup("99").close()
    assert calls == [("status",)]


@pytest.fixture
def fresh_home(tmp_path):
    """A workbook home with no server yet; its server (if a test started one) is stopped afterwards."""
    env = {**os.environ, "WORKBOOK_HOME": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    yield tmp_path, env
    subprocess.run([sys.executable, "-m", "workbook_utils.cli", "db", "stop"], env=env, capture_output=True, timeout=60)


def _start(env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbook_utils.cli", "db", "start"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_two_first_starts_at_once_share_one_server(fresh_home):
    home, env = fresh_home
    first, second = _start(env), _start(env)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    pids = {out.split("(pid ")[1].split(",")[0] for out, _ in outputs}
    assert len(pids) == 1, outputs  # the second waited for the first, then found its server running
    assert sorted(p.name for p in (home / ".workbook").iterdir() if p.name.startswith("pgdata")) == ["pgdata"]


def test_a_first_start_killed_during_initdb_does_not_block_the_next(fresh_home):
    home, env = fresh_home
    starting = _start(env, start_new_session=True)  # its own process group: initdb goes down with it
    deadline = time.time() + 60
    while not list((home / ".workbook").glob("pgdata.init-*/base")) and time.time() < deadline:
        time.sleep(0.02)
    assert list((home / ".workbook").glob("pgdata.init-*")), "initdb never started"
    os.killpg(starting.pid, signal.SIGKILL)  # a closed terminal, an OOM kill
    starting.wait(timeout=10)
    assert not (home / ".workbook" / "pgdata").exists()  # the half-made cluster never took the real name
    again = _start(env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and "running on 127.0.0.1" in out, err
    assert not list((home / ".workbook").glob("pgdata.init-*"))


def test_an_incomplete_data_directory_is_set_aside_with_one_line(fresh_home):
    home, env = fresh_home
    data = home / ".workbook" / "pgdata"
    data.mkdir(parents=True)
    (data / "postmaster.opts").write_text("left by an earlier release's failed start\n")
    started = _start(env)
    out, err = started.communicate(timeout=120)
    assert started.returncode == 0 and "running on 127.0.0.1" in out, err
    assert len(err.strip().splitlines()) == 1 and "not a complete PostgreSQL data directory" in err
    aside = list((home / ".workbook").glob("pgdata.incomplete-*"))
    assert len(aside) == 1 and (aside[0] / "postmaster.opts").exists()  # moved, never deleted


def test_a_start_that_fails_says_why_in_one_line(fresh_home, monkeypatch):
    home, env = fresh_home
    assert _start(env).wait(timeout=120) == 0
    subprocess.run([sys.executable, "-m", "workbook_utils.cli", "db", "stop"], env=env, check=True, timeout=60)
    conf = home / ".workbook" / "pgdata" / "postgresql.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'lots'\n")  # a setting the server refuses
    failed = _start(env)
    out, err = failed.communicate(timeout=120)
    assert failed.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "did not start" in err and "shared_buffers" in err and "server.log" in err and "workbook db start" in err
