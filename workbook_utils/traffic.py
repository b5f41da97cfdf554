"""A live application workload while a migration runs: every statement's latency, outcome, and lock waits.

Taught in notebook 05: readers and writers run on their own sessions, each statement bounded by
statement_timeout; a monitor session reads pg_blocking_pids for them, so "this statement waited on another
session's lock" is observed, not inferred from a slow time. The timeline chart puts failing and safe side by side.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import WorkbookError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd
    from matplotlib.axes import Axes


WAITS_SQL = """
    SELECT a.pid, pg_blocking_pids(a.pid),
           extract(epoch FROM clock_timestamp() - (SELECT min(l.waitstart) FROM pg_locks l
                                                   WHERE l.pid = a.pid AND NOT l.granted))
    FROM pg_stat_activity a WHERE a.pid = ANY(%s) AND a.datname = current_database() AND a.usename = current_user
      AND cardinality(pg_blocking_pids(a.pid)) > 0"""  # the workload's sessions only (a shared server has others')


@dataclass
class Traffic:
    """`readers` + `writers` sessions looping on their statement (`%(k)s` = the worker's own number, from 1)."""

    url: str
    app_name: str
    read: str
    write: str
    readers: int = 2
    writers: int = 2
    statement_timeout_ms: int = 1000
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    windows: list[tuple[float, float]] = field(default_factory=list, repr=False)
    waits: list[tuple[int, float, float, tuple[int, ...]]] = field(default_factory=list, repr=False)  # pid, seen between, by
    pids: list[int] = field(default_factory=list, repr=False)
    longest_wait: float = 0.0  # seconds the longest wait on an outside session has lasted so far (pg_locks.waitstart)

    def _connect(self) -> Any:
        from .db import connect

        return connect(self.url, autocommit=True, application_name=self.app_name)

    def _worker(self, k: int, kind: str, sql: str) -> None:
        with self._connect() as conn:
            conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            self.pids.append(conn.info.backend_pid)
            self._ready.release()
            while not self._stop.is_set():
                start, value = time.perf_counter(), None
                try:
                    cursor = conn.execute(sql, {"k": k})
                    outcome = "ok"
                    if cursor.description:  # a read: keep what it saw (its first column), e.g. a progress count
                        value = cursor.fetchone()[0]
                except Exception as exc:  # the failure is the observation (QueryCanceled = statement_timeout)
                    outcome = type(exc).__name__
                end = time.perf_counter()
                self.records.append({"worker": k, "kind": kind, "pid": conn.info.backend_pid, "start": start - self.t0,
                                     "end": end - self.t0, "outcome": outcome, "value": value})
                self._stop.wait(0.01)  # a request every ~10 ms per worker, not a busy loop

    def _monitor(self) -> None:
        with self._connect() as conn:
            while not self._stop.is_set():
                before = time.perf_counter() - self.t0
                rows = conn.execute(WAITS_SQL, [list(self.pids)]).fetchall()
                after = time.perf_counter() - self.t0
                for pid, by, lasted in rows:
                    if outside := tuple(b for b in by if b not in self.pids):  # waits among workers don't count
                        self.waits.append((pid, before, after, outside))
                        self.longest_wait = max(self.longest_wait, float(lasted or 0))
                self._stop.wait(0.01)

    def __enter__(self) -> Traffic:
        n = self.readers + self.writers
        self._stop, self._ready, self.t0 = threading.Event(), threading.Semaphore(0), time.perf_counter()
        specs = [(k, "read", self.read) for k in range(1, self.readers + 1)]
        specs += [(k, "write", self.write) for k in range(1, self.writers + 1)]
        self._threads = [threading.Thread(target=self._worker, args=spec, daemon=True) for spec in specs]
        for thread in self._threads:
            thread.start()
        for _ in range(n):
            if not self._ready.acquire(timeout=10):
                self.__exit__(None, None, None)
                raise WorkbookError("the workload's sessions did not connect within 10 s")
        self._threads.append(threading.Thread(target=self._monitor, daemon=True))
        self._threads[-1].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.statement_timeout_ms / 1000 + 10
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise WorkbookError("a workload session did not stop in time")

    @contextmanager
    def window(self) -> Iterator[None]:
        """Mark the migration's window (shaded on the timeline)."""
        start = time.perf_counter() - self.t0
        try:
            yield
        finally:
            self.windows.append((start, time.perf_counter() - self.t0))

    def wait_for(self, condition: Callable[[Traffic], bool], what: str, timeout: float = 10.0) -> None:
        """Poll until `condition(self)` holds (e.g. a statement waited); raises after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise WorkbookError(f"the workload did not reach “{what}” within {timeout} s")
            time.sleep(0.01)

    def finished(self, kind: str | None = None) -> int:
        """How many statements (of this kind) have finished so far."""
        return sum(1 for r in list(self.records) if kind in (None, r["kind"]))

    def result(self) -> pd.DataFrame:
        """One row per statement: kind, start, end, latency_ms, outcome, value (a read's first column), waited (on a
        session outside the workload)."""
        import pandas as pd

        df = pd.DataFrame(self.records)
        df["latency_ms"] = (df["end"] - df["start"]) * 1000
        df["waited"] = [any(p == r.pid and r.start <= after and before <= r.end for p, before, after, _ in self.waits)
                        for r in df.itertuples()]  # the statement was running when pg_blocking_pids was read
        return df


def summary(df: pd.DataFrame) -> dict[str, int]:
    """Counts a cell can assert on: statements, those that waited on a lock, and those that failed."""
    return {"statements": len(df), "waited on a lock": int(df["waited"].sum()),
            "failed": int((df["outcome"] != "ok").sum())}


def timeline(runs: dict[str, Traffic], title: str, failing: tuple[str, ...] = ()) -> Axes:
    """Latency of every statement over time, one panel per run on shared axes, the migration window shaded;
    statements that waited on the migration's lock are drawn as open circles, failed ones as black crosses."""
    import matplotlib.pyplot as plt

    from .charts import FAILING, FIXED, NEUTRAL, plain_numbers

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs) + 1.6, 3.2), sharex=True, sharey=True,
                             squeeze=False)
    handles: dict[str, Any] = {}
    for ax, (label, run) in zip(axes[0], runs.items(), strict=True):
        df, color = run.result(), FAILING if label in failing else FIXED
        for start, end in run.windows:
            ax.axvspan(start, end, color=NEUTRAL, alpha=0.15, lw=0)
        for kind, marker in (("read", "o"), ("write", "s")):
            ok = df[(df["kind"] == kind) & (df["outcome"] == "ok") & ~df["waited"]]
            handles[f"{kind}s"] = ax.scatter(ok["start"], ok["latency_ms"], s=10, marker=marker, color=NEUTRAL,
                                             alpha=0.5)
        waited = df[df["waited"] & (df["outcome"] == "ok")]
        handles["waited on the migration's lock"] = ax.scatter(waited["start"], waited["latency_ms"], s=36,
                                                               facecolors="none", edgecolors=color, linewidths=1.3)
        bad = df[df["outcome"] != "ok"]
        handles["failed (statement_timeout)"] = ax.scatter(bad["start"], bad["latency_ms"], s=40, marker="x",
                                                           color="black")
        ax.set(yscale="log", xlabel="seconds", title=label)
        ax.spines[["top", "right"]].set_visible(False)
        plain_numbers(ax)
    axes[0][0].set_ylabel("statement latency, ms (log)")
    from matplotlib.lines import Line2D

    handles["waited on the migration's lock"] = Line2D([], [], marker="o", ls="", mfc="none", mec="black")
    fig.legend(handles.values(), handles.keys(), frameon=False, fontsize=8, loc="center right")
    fig.suptitle(f"{title} (grey: the migration's window)", x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 1))
    return axes[0][0]
