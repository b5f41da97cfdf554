"""bounded.run_bounded: a learner's function returns, raises, or is abandoned at its deadline (never waited for)."""

from __future__ import annotations

import threading
import time

import pytest

from workbook_utils.exercises import WrongKind
from workbook_utils.exercises.bounded import run_bounded


def test_a_call_that_returns_or_raises_is_passed_through():
    assert run_bounded(lambda: 42, 5, "f()") == 42
    with pytest.raises(ZeroDivisionError):
        run_bounded(lambda: 1 / 0, 5, "f()")


def test_a_call_still_running_at_the_deadline_is_abandoned_and_its_cleanup_runs():
    release, cleaned = threading.Event(), []
    started = time.monotonic()
    with pytest.raises(WrongKind, match=r"f\(\) was still running after 0.3 s"):
        run_bounded(lambda: release.wait(60), 0.3, "f()", on_timeout=lambda: cleaned.append(True))
    assert time.monotonic() - started < 5 and cleaned == [True]
    release.set()


def test_a_deadline_already_past_still_gives_a_verdict():
    with pytest.raises(WrongKind, match="still running"):
        run_bounded(lambda: time.sleep(5), -1, "f()")
