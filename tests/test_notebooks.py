"""Every notebook, executed for real at scale tiny: two runs prove everything the notebook tests promise.

1. On the embedded server, top to bottom on a fresh kernel with nothing skipped, then every lesson cell run
   again in the same kernel (a learner going back); no session is left behind; the HTML report carries the charts.
2. A room in lockstep on the second server (the distribution's PostgreSQL; the embedded one where it is not
   installed): two learners' kernels run it through their DATABASE_URL, each cell starting together. One is an
   ordinary role owning a database that starts empty, as on a managed server; the other a learner made by
   `workbook provision`. Both pass, only demos needing more rights than a role has skip, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbformat import NotebookNode

from workbook_utils import config, db, learners, pgbouncer, urls
from workbook_utils.notebook_files import execute, notebook_paths, reason, to_html

SKIPPED = "Skipped:"  # how a demo that needs more rights than the role has says it did not run


def _open_sessions(app_name: str) -> int:
    with db.connect(urls.admin_url()) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                            [f"{app_name}%"]).fetchone()[0]  # also "workbook-nb01 sessions" and the like


def _outputs(nb) -> str:
    return "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)


def test_there_are_notebooks():
    assert notebook_paths(), "notebooks/ holds no NN_*.ipynb"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_reruns_its_lessons_and_cleans_up(path, tmp_path):
    executed = execute(path, timeout=600, rerun=True)
    assert SKIPPED not in _outputs(executed), "on the embedded server every demo runs"
    app_name = f"workbook-nb{path.name[:2]}"
    deadline = time.time() + 5
    while _open_sessions(app_name) and time.time() < deadline:
        time.sleep(0.1)
    assert _open_sessions(app_name) == 0, f"{path.name} left sessions in pg_stat_activity"
    html = to_html(executed, tmp_path / f"{path.stem}.html").read_text()  # what `workbook run` writes
    assert "data:image/png;base64" in html, "the report carries the notebook's charts"
    assert not re.search(r'href="\d\d_\w+\.ipynb"', html), "links between rendered pages point to .html"


@dataclass
class Learner:
    """A learner of the room: their role and database (same name), URL, home folder and what their role may do."""

    name: str
    url: str
    home: Path
    rights: dict[str, bool | int]

    def env(self) -> dict[str, str]:
        """Their kernel's environment, as on their own laptop: their DATABASE_URL and a WORKBOOK_HOME of their own."""
        return {**os.environ, "DATABASE_URL": self.url, "WORKBOOK_HOME": str(self.home)}

    def may_skip(self, line: str) -> bool:
        """True if a demo's `Skipped:` line gives a reason this role or server really has."""
        return any((found := re.search(pattern, line)) and applies(self.rights, found) for pattern, applies in SKIPS)


# Why a demo may skip on a DATABASE_URL, each with the test that the reason holds for the learner.
SKIPS = [
    (r"may not create roles|lacks CREATEROLE", lambda r, _: not r["createrole"]),
    (r"needs the CREATEDB right", lambda r, _: not r["createdb"]),
    (r"pg_stat_statements is not installed", lambda r, _: not r["pg_stat_statements"]),
    (r"the trigram index", lambda r, _: not r["pg_trgm"]),
    (r"on your own server .* log", lambda r, _: True),  # the notebook reads only the embedded server's log file
    (r"needs PostgreSQL (\d+)", lambda r, m: r["version"] < int(m[1]) * 10000),
    (r"PgBouncer is not installed", lambda r, _: not r["pgbouncer"]),
]
RIGHTS = """SELECT rolcreaterole AS createrole, rolcreatedb AS createdb, current_setting('server_version_num')::int AS version,
                   EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements') AS pg_stat_statements,
                   EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') AS pg_trgm
            FROM pg_roles WHERE rolname = current_user"""
PLAIN, PREFIX = "nb_plain", "nbroom"


def _learner(name: str, url: str, home: Path) -> Learner:
    """A learner whose home sees the checkout's notebooks/ and data/ (like a clone of their own)."""
    home.mkdir(parents=True, exist_ok=True)
    for folder in ("notebooks", "data"):
        (home / folder).symlink_to(config.project_root() / folder, target_is_directory=True)
    with db.connect(url) as conn:
        rights = dict(zip(("createrole", "createdb", "version", "pg_stat_statements", "pg_trgm"),
                          conn.execute(RIGHTS).fetchone(), strict=True))
    return Learner(name, url, home, {**rights, "pgbouncer": pgbouncer.binary() is not None})


def _reset_plain(admin_url: str, password: str | None) -> None:
    """Drop the ordinary role and its database; with a password, make them again, the database empty."""
    from psycopg import sql

    with db.connect(admin_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PLAIN} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {PLAIN}")
        if password:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(PLAIN), password))
            admin.execute(f"CREATE DATABASE {PLAIN} OWNER {PLAIN}")


@pytest.fixture(scope="module")
def room(room_server, tmp_path_factory) -> list[Learner]:
    """Two learners, each on a laptop of their own: an ordinary role that owns an empty database (a managed server's
    app role: the first notebook seeds it), and a learner `workbook provision` made (the facilitator's DATABASE_URL)."""
    admin_url, homes = room_server.admin_url(), tmp_path_factory.mktemp("homes")
    password = secrets.token_urlsafe(18)
    _reset_plain(admin_url, password)
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
        made = learners.provision(1, prefix=PREFIX, out=homes / "learners.csv", scale="tiny",
                                  force=room_server.cluster is None, say=lambda _: None)  # embedded: too small
    plain_url = learners.learner_url(admin_url, PLAIN, password)
    yield [_learner(PLAIN, plain_url, homes / PLAIN), _learner(made[0].name, made[0].url, homes / made[0].name)]
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
    _reset_plain(admin_url, None)


def in_lockstep(path: Path, room: list[Learner], timeout: int = 600) -> list[NotebookNode | Exception]:
    """Every learner's kernel runs the notebook, each cell starting together; per learner, the notebook or its error."""
    barrier = threading.Barrier(len(room))

    def step(_: int) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # broken: the other learner stopped, go on alone
            barrier.wait(timeout)

    def run(learner: Learner) -> NotebookNode | Exception:
        try:
            return execute(learner.home / "notebooks" / path.name, timeout=timeout, env=learner.env(), step=step)
        except Exception as exc:  # reported for both learners by the test
            return exc
        finally:
            barrier.abort()  # a learner who failed holds nobody up

    with ThreadPoolExecutor(len(room)) as pool:
        return list(pool.map(run, room))


def _left_behind(admin_url: str, room: list[Learner]) -> list[str]:
    """Sessions of the learners (and of roles they made, <name>_…) and processes started in their homes."""
    import psutil

    names = [lr.name for lr in room]
    with db.connect(admin_url) as conn:
        sessions = conn.execute("SELECT usename || ': ' || coalesce(application_name, '') FROM pg_stat_activity "
                                "WHERE usename = ANY(%s) OR usename LIKE ANY(%s)",
                                [names, [f"{n}\\_%" for n in names]]).fetchall()
    processes = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
                 if any(str(lr.home) in " ".join(p.info["cmdline"] or []) for lr in room)]
    return [f"session {s[0]}" for s in sessions] + [f"process {p[:120]}" for p in processes]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_two_learners_run_it_in_lockstep_on_the_room_server(path, room, room_server):
    """Two learners' kernels, cell by cell together on the second server (or the embedded one): both pass, demos
    skip only for a reason their role or server has, and neither leaves a session or a process behind."""
    outcomes = in_lockstep(path, room)
    failed = [f"{lr.name}: {reason(out)}" for lr, out in zip(room, outcomes, strict=True) if isinstance(out, Exception)]
    assert not failed, f"{path.name} on {room_server.name}: " + "; ".join(failed)
    for learner, executed in zip(room, outcomes, strict=True):
        skipped = [line[line.index(SKIPPED):] for line in _outputs(executed).splitlines() if SKIPPED in line]
        wrong = [line for line in skipped if not learner.may_skip(line)]
        assert not wrong, f"{learner.name} skipped for a reason their role does not have: {wrong}"
    deadline = time.time() + 5
    while (left := _left_behind(room_server.admin_url(), room)) and time.time() < deadline:
        time.sleep(0.1)
    assert not left, f"{path.name} left behind: {left}"
