"""Notebook 05's harness against the real server: a known state by revision, a held revision that writers wait on."""

from __future__ import annotations

import pytest
from alembic import command

from workbook_utils import migrations
from workbook_utils.migration_lab import Lab, seen_while_held


@pytest.fixture(scope="module")
def lab():
    from workbook_utils import setup

    wb = setup("05")
    yield Lab(wb)
    wb.close()


def test_at_starts_over_from_fresh_copies_at_the_revision_asked(lab):
    lab.at("0002")
    assert migrations.current(lab.cfg) == "0002"
    lab.at("base")
    assert migrations.current(lab.cfg) is None
    assert lab.wb.query("SELECT count(*) AS n FROM nb05.users")["n"][0] == lab.users


def test_held_upgrade_holds_the_revision_until_a_writer_waited_and_readers_saw_it_held(lab):
    lab.at("base")
    with lab.workload() as run:
        held = lab.held_upgrade(run, "u01")  # a plain CREATE INDEX: ShareLock, writers wait
    result = run.result()
    assert held[0] < held[1] and result["waited"].any()
    assert set(result.loc[result["waited"], "kind"]) == {"write"}
    assert seen_while_held(run, held)  # readers went on while the index build was held open
    command.downgrade(lab.cfg, "base")
