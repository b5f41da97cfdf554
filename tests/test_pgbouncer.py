"""workbook_utils.pgbouncer against the real embedded server: starts, serves, stops, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess

import psycopg
import pytest

from workbook_utils import pgbouncer, urls
from workbook_utils.errors import WorkbookError

pytestmark = pytest.mark.skipif(pgbouncer.binary() is None, reason=pgbouncer.INSTALL)  # CI installs it (.ci/run)


@pytest.fixture
def bouncer():
    started = pgbouncer.start("test", {"one": pgbouncer.entry(urls.libpq_url("tiny"), 1)})
    yield started
    started.stop()


def _pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"pgbouncer-{name}/"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_serves_clients_on_one_server_session_in_transaction_mode(bouncer):
    with psycopg.connect(bouncer.url("one", "postgresql"), autocommit=True) as a, \
            psycopg.connect(bouncer.url("one", "postgresql"), autocommit=True) as b:
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (a, b)}
        assert len(pids) == 1 and a.execute("SELECT current_user").fetchone()[0] == urls.APP_ROLE
    pool = next(r for r in bouncer.show("POOLS") if r["database"] == "one")
    assert pool["pool_mode"] == "transaction" and pool["sv_idle"] + pool["sv_used"] == 1


def test_runs_as_an_unprivileged_user_and_stop_leaves_no_process(bouncer):
    pid = bouncer.process.pid
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0  # PgBouncer refuses root; as root it runs as the embedded server's OS user
    bouncer.stop()
    assert _pids("test") == [] and bouncer.process is None
    bouncer.stop()  # twice is harmless
    with pytest.raises(WorkbookError, match="was stopped: start it again"):
        bouncer.url("one")  # a learner going back to a cell after the last one: one sentence, not a traceback


def test_a_leftover_of_a_killed_kernel_is_stopped_at_the_next_start():
    first = pgbouncer.start("test", {"one": pgbouncer.entry(urls.libpq_url("tiny"), 1)})
    leftover = first.process.pid
    first.process = None  # the kernel that started it is gone: nobody holds its handle
    second = pgbouncer.start("test", {"one": pgbouncer.entry(urls.libpq_url("tiny"), 1)})
    try:
        assert _pids("test") == [second.process.pid] and leftover != second.process.pid
    finally:
        second.stop()
        try:
            os.kill(leftover, signal.SIGKILL)  # only if the test failed: never leave it running
        except ProcessLookupError:
            pass


def test_the_config_masks_passwords_and_entry_reads_urls():
    line = pgbouncer.entry("postgresql+psycopg://app:s%40cret@db.example:6000/shop", 3)
    assert line == "host='db.example' port='6000' dbname='shop' user='app' password='s@cret' pool_size='3'"
    shown = pgbouncer.PgBouncer("127.0.0.1", 1)
    assert "started elsewhere" in shown.config_text()


def test_a_bad_setting_is_reported_in_one_line():
    with pytest.raises(WorkbookError, match="PgBouncer did not start"):
        pgbouncer.start("test", {"one": pgbouncer.entry(urls.libpq_url("tiny"), 1)}, pool_mode="nonsense")
    assert _pids("test") == []


def test_no_binary_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_PGBOUNCER", str(tmp_path / "missing"))
    assert pgbouncer.binary() is None
    with pytest.raises(WorkbookError, match="apt-get install pgbouncer"):
        pgbouncer.start("test", {})


def test_burst_and_watch_pools(bouncer):
    with pgbouncer.watch_pools(bouncer, "one", every=0.05) as samples:
        results = pgbouncer.burst(bouncer.url("one", "postgresql"), 20, "SELECT pg_backend_pid() FROM pg_sleep(0.01)",
                                  "workbook-test")
    assert [r["outcome"] for r in results] == ["ok"] * 20 and len({r["value"] for r in results}) == 1
    assert samples and max(s["sv_active"] for s in samples) <= 1
