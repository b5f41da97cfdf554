"""workbook_utils.forking (notebook 09's fork harness) against the real server."""

from __future__ import annotations

import pytest

from workbook_utils import forking


@pytest.fixture
def engine():
    from workbook_utils import setup

    wb = setup("09")
    made = wb.make_engine(pool_size=1, max_overflow=0)
    yield made
    made.dispose()
    wb.close()


@pytest.mark.skipif(not forking.CAN_FORK, reason="fork needs a POSIX system")
def test_a_child_shares_the_pooled_connection_unless_it_forgets_it(engine):
    parent = forking.backend_pid(engine)
    assert forking.in_a_forked_child(engine) == parent
    own = forking.in_a_forked_child(engine, worker_init=lambda e: e.dispose(close=False))
    assert own not in (None, parent)
    assert forking.backend_pid(engine) == parent


@pytest.mark.skipif(not forking.CAN_FORK, reason="fork needs a POSIX system")
def test_a_child_that_fails_reports_none(engine):
    def fail(_engine):
        raise RuntimeError("boom")

    assert forking.in_a_forked_child(engine, worker_init=fail, timeout=5) is None
