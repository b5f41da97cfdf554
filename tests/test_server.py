"""The embedded server: start/stop/status, recovery from a killed server, busy ports, old data directories."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from workbook_utils import db, server
from workbook_utils.config import WorkbookError


def test_start_is_idempotent():
    first = server.start()
    again = server.start()
    assert again.running and again.pid == first.pid


def test_server_is_configured_for_the_lessons():
    with db.connect(db.admin_url()) as conn:
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
    with db.connect(db.libpq_url()) as conn:
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
    (tmp_path / ".workbook" / "pgdata").mkdir(parents=True)
    (tmp_path / ".workbook" / "pgdata" / "PG_VERSION").write_text("15\n")
    with pytest.raises(WorkbookError, match="PostgreSQL 15.*ships PostgreSQL 18"):
        server.start()


def test_stop_then_start_keeps_the_data():
    server.stop()
    assert not server.status().running
    assert server.start().running
    with db.connect(db.libpq_url()) as conn:
        assert db.seeded_scale(conn) == "tiny"
