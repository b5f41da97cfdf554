"""The file lock that serializes starting and seeding across processes: waiters wait, and say who holds it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from workbook_utils import state_lock
from workbook_utils.errors import WorkbookError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path))
    return tmp_path


def _holder(home, seconds: float) -> subprocess.Popen:
    """Another process that holds the 'demo' lock for `seconds`."""
    code = ("import time; from workbook_utils import state_lock\n"
            "with state_lock.hold('demo', 'demonstrating'):\n"
            f"    print('held', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "WORKBOOK_HOME": str(home)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_waiter_that_gives_up_names_the_holder(home):
    holder = _holder(home, 30)
    try:
        with pytest.raises(WorkbookError) as info, state_lock.hold("demo", "waiting", wait=0.3):
            pass
        assert f"held by process {holder.pid}" in str(info.value) and "demonstrating since" in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_waiter_gets_the_lock_when_the_holder_finishes_or_dies(home):
    holder = _holder(home, 0.5)
    started = time.perf_counter()
    with state_lock.hold("demo", "waiting", wait=10):
        assert time.perf_counter() - started > 0.2  # it waited for the holder
    holder.wait()
    killed = _holder(home, 60)
    killed.kill()  # a killed holder releases the lock with its process
    killed.wait()
    with state_lock.hold("demo", "waiting", wait=1):
        pass


def test_taking_a_held_lock_again_in_the_same_process_does_not_wait(home):
    with state_lock.hold("demo", "outer", wait=0.1), state_lock.hold("demo", "inner", wait=0.1):
        pass

