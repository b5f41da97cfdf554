"""Tests run against the real embedded PostgreSQL at scale tiny (started and seeded here if needed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

os.environ["WORKBOOK_SCALE"] = "tiny"  # before anything reads it: the test suite always uses tiny

import pytest

from workbook_utils import db, seed, urls

TABLES = ("users", "profiles", "products", "posts", "comments", "orders")


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
