"""Requests that arrive at one engine at the same instant, each one's timeline read from the pool's own events
(notebook 01 §2): the request functions stay the code a reader would write, `handle(engine, user_id)`.

Each request's lane: "waiting for a connection" from its start until the pool hands it a connection (`checkout`),
"holding a connection" until it gives it back (`checkin`), then "slow work, no connection" until it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from .workload import Lane, Run, run_together

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

WAITING, HOLDING, AFTER = "waiting for a connection", "holding a connection", "slow work, no connection"


def requests_at_once(handle: Callable[[Engine, Any], Any], engine: Engine, args: Iterable[Any],
                     timeout: float = 30.0) -> Run:
    """Call `handle(engine, arg)` for every arg, each in a thread of its own, all released together (waits at most
    `timeout` s). Outcomes: one row per request (its result, or the class and first line of what it raised);
    phases: its lane, from the pool's checkout and checkin events on that thread."""
    args = list(args)
    lanes: dict[int, Lane] = {}
    lock = threading.Lock()

    def mark(phase: str) -> None:
        with lock:
            lane = lanes.get(threading.get_ident())
        if lane is not None:
            lane.phase(phase)

    def on_checkout(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        mark(HOLDING)

    def on_checkin(dbapi_connection: Any, connection_record: Any) -> None:
        mark(AFTER)

    def work(lane: Lane) -> Any:
        with lock:
            lanes[threading.get_ident()] = lane
        return handle(engine, args[lane.worker])

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        return run_together(work, len(args), first_phase=WAITING, timeout=timeout)
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)
