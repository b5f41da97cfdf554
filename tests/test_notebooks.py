"""Every notebook, executed for real at scale tiny: two runs, at the same time, prove what the notebook tests promise.

1. On the embedded server, top to bottom on a fresh kernel with nothing skipped, then the lesson cells run
   again in the same kernel (a learner going back); no session is left behind; the HTML report carries the charts.
   Part 1's lesson cells run again there; the later Parts' run again in whichever kernel is free first, this one
   or the room's first learner's after the room's run: every lesson cell runs twice in one kernel, and the two
   runs end nearer together.
2. A room in lockstep on the second server (the distribution's PostgreSQL; the embedded one where it is not
   installed): two learners' kernels run it through their DATABASE_URL, each cell starting together. One is an
   ordinary role owning a database that starts empty, as on a managed server; the other a learner made by
   `workbook provision`, who restarts the kernel at each Part (as a class that stopped after Part 1 does) and
   carries on from the Part's restart cell. Both pass, only demos needing more rights than a role has skip, and
   nothing is left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from workbook_utils import anatomy, config, db, learners, pgbouncer, urls
from workbook_utils.notebook_files import execute, lesson_cells, notebook_paths, reason, to_html

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


@dataclass
class Learner:
    """A learner of the room: their role and database (same name), URL, home folder and what their role may do."""

    name: str
    url: str
    home: Path
    rights: dict[str, bool | int]
    restarts: bool = False  # Kernel → Restart before each Part's restart cell

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
    provisioned = _learner(made[0].name, made[0].url, homes / made[0].name)
    yield [_learner(PLAIN, plain_url, homes / PLAIN), dataclasses.replace(provisioned, restarts=True)]
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
    _reset_plain(admin_url, None)


@dataclass
class LaterParts:
    """Who runs the lesson cells of Part 2 on again: the first kernel to ask (see the module docstring)."""

    by: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def cells(nb: NotebookNode) -> tuple[list[int], list[int]]:
        """The lesson cells of Part 1, and those of the later Parts (from Part 2's restart cell on)."""
        start = min(anatomy.restart_cells(nb), default=len(nb.cells))
        lessons = lesson_cells(nb)
        return [i for i in lessons if i < start], [i for i in lessons if i >= start]

    def claim(self, who: str) -> bool:
        """True for the first kernel that asks (and for it again): it runs the later Parts again."""
        with self.lock:
            self.by = self.by or who
            return self.by == who

    def again(self, who: str, part_one: bool) -> Callable[[NotebookNode], Iterator[int]]:
        """`execute`'s `rerun` for one kernel: Part 1's lesson cells if asked, then the later Parts' if it claims them."""
        def cells(nb: NotebookNode) -> Iterator[int]:
            first, later = self.cells(nb)
            yield from first if part_one else []
            if later and self.claim(who):  # asked only now, when this kernel is free
                yield from later
        return cells


def in_lockstep(path: Path, room: list[Learner], stop: threading.Event, later: LaterParts,
                timeout: int = 600) -> list[NotebookNode | Exception]:
    """Every learner's kernel runs the notebook, each cell starting together; per learner, the notebook or its error.

    The first learner may then run the later Parts again (`later`). Once `stop` is set (the session was interrupted),
    each kernel stops before its next cell.
    """
    barrier = threading.Barrier(len(room))

    def step(_: int) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # broken: the other learner stopped, go on alone
            barrier.wait(timeout)
        if stop.is_set():
            raise RuntimeError("stopped: the test session was interrupted")

    restarts = anatomy.restart_cells(nbformat.read(path, as_version=4))

    def run(learner: Learner) -> NotebookNode | Exception:
        try:
            return execute(learner.home / "notebooks" / path.name, timeout=timeout, env=learner.env(), step=step,
                           restart_at=restarts if learner.restarts else (),
                           rerun=later.again(learner.name, part_one=False) if learner is room[0] else False)
        except Exception as exc:  # reported for both learners by the test
            return exc
        finally:
            barrier.abort()  # a learner who failed holds nobody up

    pool = ThreadPoolExecutor(len(room))
    try:
        return list(pool.map(run, room))
    finally:
        pool.shutdown(wait=False)  # on Ctrl-C: not waiting here for the kernels, which `stop` ends


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


def on_the_embedded_server(path: Path, html: Path, later: LaterParts) -> list[str]:
    """Run 1: what went wrong (nothing skips, lessons re-run in the same kernel, no session left, charts in HTML)."""
    try:
        executed = execute(path, timeout=600, rerun=later.again("the embedded server", part_one=True))
    except Exception as exc:
        print(f"embedded server: {exc}")  # the whole traceback, shown with the failure
        return [f"embedded server: {reason(exc)}"]
    problems = [f"embedded server: every demo runs there, but {line.strip()[:200]}"
                for line in _outputs(executed).splitlines() if SKIPPED in line]
    app_name = f"workbook-nb{path.name[:2]}"
    deadline = time.time() + 5
    while _open_sessions(app_name) and time.time() < deadline:
        time.sleep(0.1)
    if left := _open_sessions(app_name):
        problems.append(f"embedded server: {left} sessions of {app_name} left in pg_stat_activity")
    page = to_html(executed, html).read_text()  # what `workbook run` writes
    if "data:image/png;base64" not in page:
        problems.append("embedded server: the report carries no chart")
    if re.search(r'href="\d\d_\w+\.ipynb"', page):
        problems.append("embedded server: a link between rendered pages points to an .ipynb, not its .html")
    return problems


def in_a_room(path: Path, room: list[Learner], admin_url: str, stop: threading.Event, later: LaterParts) -> list[str]:
    """Run 2: what went wrong (both pass, skip only for their role's reasons, leave nothing behind)."""
    problems = []
    for learner, executed in zip(room, in_lockstep(path, room, stop, later), strict=True):
        if isinstance(executed, Exception):
            print(f"{learner.name}: {executed}")
            problems.append(f"{learner.name}: {reason(executed)}")
            continue
        skipped = [line[line.index(SKIPPED):] for line in _outputs(executed).splitlines() if SKIPPED in line]
        problems += [f"{learner.name} skipped for a reason their role does not have: {line[:200]}"
                     for line in skipped if not learner.may_skip(line)]
    deadline = time.time() + 5
    while (left := _left_behind(admin_url, room)) and time.time() < deadline:
        time.sleep(0.1)
    return problems + [f"left behind: {thing}" for thing in left]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_on_the_embedded_server_and_in_a_room_in_lockstep(path, room, room_server, tmp_path):
    """Both runs of the module docstring; on two servers at the same time (the embedded one alone: one after the
    other, which also keeps three kernels' sessions below its max_connections)."""
    admin_url, stop, pool, later = room_server.admin_url(), threading.Event(), ThreadPoolExecutor(1), LaterParts()
    try:
        room_run = pool.submit(in_a_room, path, room, admin_url, stop, later) if room_server.cluster else None
        problems = on_the_embedded_server(path, tmp_path / f"{path.stem}.html", later)
        problems += room_run.result() if room_run else in_a_room(path, room, admin_url, stop, later)
    finally:
        stop.set()  # interrupted (Ctrl-C, SIGTERM): the learners' kernels end at their next cell, nobody waits here
        pool.shutdown(wait=False)
    where = f", later Parts run again by {later.by}" if later.by else ""
    assert not problems, f"{path.name} (room on {room_server.name}{where}):\n" + "\n".join(problems)


@pytest.mark.parametrize("first", ["the embedded server", "nb_plain"])
def test_every_lesson_cell_runs_again_once_whichever_kernel_asks_first(first):
    later, second = LaterParts(), ({"the embedded server", "nb_plain"} - {first}).pop()
    for path in notebook_paths():
        nb, later.by = nbformat.read(path, as_version=4), ""
        part_one, rest = LaterParts.cells(nb)
        assert part_one + rest == lesson_cells(nb) and (not rest or rest[0] == min(anatomy.restart_cells(nb)))
        runs = {who: later.again(who, part_one=who == "the embedded server")(nb) for who in (first, second)}
        again = [*runs[first], *runs[second]]  # the generators are read in the order the kernels finish
        assert sorted(again) == lesson_cells(nb), path.name
        assert later.by == (first if rest else "")


def test_a_reply_whose_wakeup_the_poll_missed_is_read_within_a_slice():
    """jupyter/nbclient#312 (seen in 04's race player cell): the reply came, the poll waiting for it did not wake, and
    the cell waited out its 600 s timeout. In slices, a reply is read at the next slice; no reply still times out."""
    import asyncio
    from queue import Empty

    from workbook_utils.notebook_files import poll_in_slices

    class MissesWakeups:
        """A channel whose reply arrives after `delay` s, seen only by a poll that starts, or times out, after it."""

        def __init__(self, delay: float) -> None:
            self.arrives = time.monotonic() + delay

        async def get_msg(self, timeout: float | None = None) -> str:
            if time.monotonic() < self.arrives:
                await asyncio.sleep(3600 if timeout is None else timeout)
            if time.monotonic() < self.arrives:
                raise Empty
            return "reply"

    for timeout in (30.0, None):
        channel = MissesWakeups(0.1)
        poll_in_slices(channel, every=0.2)
        started = time.monotonic()
        assert asyncio.run(channel.get_msg(timeout=timeout)) == "reply" and time.monotonic() - started < 2, timeout
    never = MissesWakeups(3600)
    poll_in_slices(never, every=0.2)
    started = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(never.get_msg(timeout=0.5))
    assert 0.5 <= time.monotonic() - started < 2
