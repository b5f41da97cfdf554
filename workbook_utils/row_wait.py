"""A row lock held by one session while another waits for it, on a thread (notebook 04, "Who blocks whom").

The lesson cell asks the server itself (`pg_blocking_pids`, `pg_locks`); this module only stages the scene. The
waiter waits minutes (a learner reads and runs other cells meanwhile), never unbounded: a re-run ends the previous
scene first, and `wb.close()` ends every session of the notebook:

    scene = row_wait.hold_and_wait(engine, "UPDATE products SET inventory = inventory - 1 WHERE id = 1")
    scene.holder_pid, scene.waiter_pid      # ask the server about these
    scene.release()                         # the holder commits; the waiter goes on and commits
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import locks

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_current: list[Scene] = []  # the scene a previous run of the cell left open


@dataclass
class Scene:
    """Two connections: `holder` changed a row and has not committed; `waiter` tries the same on `thread`."""

    holder: Connection
    waiter: Connection
    thread: threading.Thread
    holder_pid: int
    waiter_pid: int

    def waiting(self) -> bool:
        """True while the waiter's statement has not ended."""
        return self.thread.is_alive()

    def release(self, timeout: float = 5.0) -> None:
        """The holder commits; the waiter's statement goes on, and its transaction commits."""
        self.holder.commit()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"the waiter did not go on within {timeout} s of the holder's commit")
        self.waiter.commit()
        self.end()

    def end(self) -> None:
        """Close both connections (closing rolls back; the waiter then goes on)."""
        self.holder.close()
        self.thread.join(10)
        self.waiter.close()
        if self in _current:
            _current.remove(self)


def hold_and_wait(engine: Engine, sql: str, lock_timeout: str = "5min", timeout: float = 5.0) -> Scene:
    """`holder` runs `sql` without committing; `waiter` runs it on a thread (its transaction waits ≤ `lock_timeout`);
    returns once the server shows the waiter waiting."""
    from sqlalchemy import text

    while _current:
        _current[0].end()
    holder, waiter = engine.connect(), engine.connect()
    holder.execute(text(sql))
    waiter.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": lock_timeout})

    def run() -> Any:
        try:
            return waiter.execute(text(sql))
        except Exception:  # noqa: BLE001 - a lock timeout ends the wait; the lesson cell sees it in the thread's end
            return None

    thread = threading.Thread(target=run, daemon=True, name="row-wait-waiter")
    scene = Scene(holder, waiter, thread, holder.connection.driver_connection.info.backend_pid,
                  waiter.connection.driver_connection.info.backend_pid)
    _current.append(scene)
    thread.start()
    with engine.connect() as observer:
        raw = observer.connection.driver_connection
        deadline = time.monotonic() + timeout
        while not locks.blockers(raw, [scene.waiter_pid]) and time.monotonic() < deadline:
            time.sleep(0.01)  # poll the server's state; the loop ends as soon as the wait is seen
    return scene
