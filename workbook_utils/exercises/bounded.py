"""A learner's function run with a deadline: a `time.sleep(600)` or a loop that never ends fails the check, never
hangs it (notebook 06's q1 and q3).

The call runs on a daemon thread and the checker waits in `join(seconds)`, so an interrupt always reaches the
notebook. A call still running at the deadline is abandoned: `on_timeout` (e.g. invalidating the connection it
holds) runs, and `WrongKind` names the deadline. Whatever the call raises is raised again in the checker's thread.

    rows = run_bounded(lambda: find(conn, email), 5, "find_customer(conn, email)", on_timeout=conn.invalidate)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import WrongKind


def run_bounded(call: Callable[[], Any], seconds: float, what: str, on_timeout: Callable[[], Any] | None = None) -> Any:
    """`call()`'s value, or its exception raised again; WrongKind if it is still running after `seconds`."""
    seconds = max(seconds, 0.0)  # a deadline already past still gives the call its start, and a verdict
    outcome: list[tuple[bool, Any]] = []

    def body() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # noqa: BLE001 - handed to the checker's thread below
            outcome.append((False, error))

    thread = threading.Thread(target=body, daemon=True, name="workbook-bounded-answer")
    thread.start()
    thread.join(seconds)
    if not outcome:
        if on_timeout is not None:
            try:
                on_timeout()
            except Exception:  # noqa: BLE001 - best effort: the verdict is already decided
                pass
        raise WrongKind(f"{what} was still running after {seconds:.3g} s (a sleep, or a loop that does not end?): "
                        "the check stopped waiting for it")
    returned, value = outcome[0]
    if returned:
        return value
    raise value
