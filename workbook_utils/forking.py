"""Notebook 09's fork harness: fork a child from a process whose engine may have pooled connections, run an
optional worker_init(engine) in it, and report the server process (backend pid) the child's query ran on."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

CAN_FORK = "fork" in multiprocessing.get_all_start_methods()  # POSIX only: Windows has no fork
SKIPPED = "Skipped: this demo forks processes, which needs a POSIX system (Linux, macOS); read it, then go on."


def backend_pid(engine: Any) -> int:
    """The backend pid of a connection checked out of `engine`'s pool."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def in_a_forked_child(engine: Any, worker_init: Callable[[Any], Any] | None = None, timeout: float = 10) -> int | None:
    """Fork, run worker_init(engine) then one query in the child; the child's backend pid (None: it failed or hung,
    killed after `timeout` seconds)."""
    fork = multiprocessing.get_context("fork")
    answer = fork.SimpleQueue()

    def child() -> None:
        if worker_init:
            worker_init(engine)
        answer.put(backend_pid(engine))

    worker = fork.Process(target=child)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        worker.kill()
        worker.join(5)
    return answer.get() if not answer.empty() else None

