"""Tests run against the real embedded PostgreSQL at scale tiny (started and seeded here if needed), and the room
tests and the notebooks' lockstep run on a second server, the distribution's PostgreSQL (tests/second_server.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

os.environ["WORKBOOK_SCALE"] = "tiny"  # before anything reads it: the test suite always uses tiny

import pytest

import workbook_utils.cli  # noqa: E402, F401 - before nbformat: its IRI grammar is skipped, ~2 s (see cli.py)
from workbook_utils import db, learners, seed, urls

from . import second_server

TABLES = ("users", "profiles", "products", "posts", "comments", "orders")
ROOM = 4  # learners the second server holds without --force: test_learners provisions up to 4


def pytest_report_header(config: pytest.Config) -> str:
    """One line: which server the room tests and the notebooks' lockstep run use."""
    bindir = second_server.find_bindir()
    if bindir is None:
        return ("second server: none installed (no /usr/lib/postgresql/*/bin, no pg_config): the room tests and the "
                "notebooks' lockstep run use the embedded server")
    return f"second server: PostgreSQL {second_server.major(bindir)} from {bindir}, a throwaway cluster for the room " \
           "tests and the notebooks' lockstep run"


@pytest.fixture(scope="session", autouse=True)
def seeded() -> str:
    """The tiny dataset, seeded once (the server is started if it is not running)."""
    seed.seed_if_needed("tiny", progress=lambda _: None)
    return urls.libpq_url("tiny")


def fingerprint(url: str) -> dict[str, str]:
    """md5 of every dataset table's rows in id order: equal fingerprints mean identical data."""
    with db.connect(url) as conn:
        return {t: conn.execute(f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {t} t").fetchone()[0]
                for t in TABLES}


@pytest.fixture
def scratch_db() -> Iterator[str]:
    """A new, empty database owned by the workbook role on the embedded server; dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    with db.connect(urls.admin_url()) as admin:
        admin.execute(f'CREATE DATABASE "{name}" OWNER {urls.APP_ROLE}')
    yield urls.with_database(urls.libpq_url("tiny"), name)
    with db.connect(urls.admin_url()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}_template" WITH (FORCE)')


@pytest.fixture(scope="session")
def room_server(seeded) -> Iterator[second_server.RoomServer]:
    """The second server for the session (stopped at its end, also on failure or Ctrl-C), or the embedded one."""
    bindir = second_server.find_bindir()
    # sized by what provision checks (room_problems): ROOM learners, the reserved slots, the facilitator's share
    room = second_server.open_room(bindir, ROOM * learners.CONNECTION_LIMIT + 3 + learners.FACILITATOR)
    if room.cluster is None:
        yield room
        return
    undo = second_server.stop_on_exit(room.cluster)
    try:
        yield room
    finally:
        second_server.stop(room.cluster)
        undo()
