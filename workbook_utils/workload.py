"""Start N workers at the same instant, bound every wait, and collect what each did and when (notebook 01)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import WorkbookError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Lane:
    """One worker's timeline: call `lane.phase("holding")` each time the worker moves to a new phase."""

    worker: int
    t0: float
    marks: list[tuple[str, float]] = field(default_factory=list)

    def phase(self, name: str) -> None:
        self.marks.append((name, time.perf_counter() - self.t0))


@dataclass
class Run:
    """What `run_together` saw: one row per worker (outcomes) and one row per phase of each worker (phases)."""

    outcomes: pd.DataFrame
    phases: pd.DataFrame

    def count(self, outcome: str) -> int:
        """How many workers ended with this outcome ("ok" or an exception class name)."""
        return int((self.outcomes["outcome"] == outcome).sum())


def run_together(work: Callable[[Lane], Any], n: int, first_phase: str = "start", timeout: float = 30.0) -> Run:
    """Run `work(lane)` in n threads released together; exceptions become outcomes; waits at most `timeout` s."""
    import pandas as pd

    barrier = threading.Barrier(n + 1)
    lanes = [Lane(i, 0.0) for i in range(n)]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]

    def body(lane: Lane) -> None:
        barrier.wait(timeout)
        lane.t0 = t0
        lane.phase(first_phase)
        try:
            rows[lane.worker] = {"outcome": "ok", "error": "", "result": work(lane)}
        except Exception as exc:  # the failure is the observation: record its class and first line
            first_line = (str(exc).splitlines() or [""])[0]
            rows[lane.worker] = {"outcome": type(exc).__name__, "error": first_line, "result": None}
        lane.phase("end")

    threads = [threading.Thread(target=body, args=(lane,), daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    barrier.wait(timeout)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise WorkbookError(f"{sum(t.is_alive() for t in threads)} of {n} workers were still running after {timeout} s")
    outcomes = pd.DataFrame([{"worker": lane.worker, **row, "seconds": lane.marks[-1][1]}
                             for lane, row in zip(lanes, rows, strict=True)]).set_index("worker")
    phases = pd.DataFrame([{"worker": lane.worker, "phase": name, "start": start, "end": end}
                           for lane in lanes
                           for (name, start), (_, end) in zip(lane.marks, lane.marks[1:], strict=False)])
    return Run(outcomes, phases)
