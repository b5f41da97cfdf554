"""Count the SQL a piece of code sends, time it, and race alternatives into one DataFrame."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine


@dataclass
class Captured:
    """Statements one engine sent while a `capture_sql` block ran (thread-safe)."""

    statements: list[str] = field(default_factory=list)
    rowcounts: list[int] = field(default_factory=list)  # rows each completed statement returned or changed
    sizes: list[int] = field(default_factory=list)  # bytes of the values each statement returned (with_bytes=True)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def count(self) -> int:
        return len(self.statements)

    @property
    def rows(self) -> int:
        """Rows the server sent back (or changed), summed over the statements."""
        return sum(n for n in self.rowcounts if n > 0)

    @property
    def bytes(self) -> int:
        """Bytes of the values the server sent back, summed over the statements (needs `with_bytes=True`)."""
        return sum(self.sizes)

    def show(self, limit: int = 10, width: int = 300) -> None:
        """Print the first `limit` statements on one line each (cut at `width` characters), as echo would."""
        for sql in self.statements[:limit]:
            line = " ".join(sql.split())
            print(line if len(line) <= width else line[:width] + " …")
        if self.count > limit:
            print(f"… and {self.count - limit} more")


def result_bytes(cursor: Any) -> int:
    """Bytes of the values in a psycopg cursor's result, as the server sent them (NULLs count 0)."""
    result = getattr(cursor, "pgresult", None)
    if result is None:
        return 0
    return sum(len(result.get_value(row, col) or b"") for row in range(result.ntuples) for col in range(result.nfields))


@contextmanager
def capture_sql(engine: Engine | type[Engine], with_bytes: bool = False) -> Iterator[Captured]:
    """Record every statement `engine` executes inside the block (executemany counts once).

    A `before_cursor_execute` listener on one engine: notebook 02 (§1) writes it out and explains why one engine.
    Given the `Engine` class instead, it records every engine of the process (what an exercise checker wants: an
    answer that opens an engine of its own is still counted).
    `with_bytes` also sums the bytes of the values each result carried (psycopg 3 only).
    """
    captured = Captured()

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        with captured._lock:
            captured.statements.append(statement)

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        size = result_bytes(cursor) if with_bytes else 0
        with captured._lock:
            captured.rowcounts.append(cursor.rowcount)
            captured.sizes.append(size)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def raised(action: Callable[[], Any], expected: type[Exception] = Exception) -> Exception:
    """The exception `action()` raises (of class `expected`); fails if nothing is raised."""
    try:
        action()
    except expected as error:
        return error
    raise AssertionError(f"expected {expected.__name__}, but nothing was raised")


def error_of(action: Callable[[], Any], expected: type[Exception] = Exception) -> str:
    """The message `action()` raises (SQLAlchemy's "Background on this error" link cut); fails if nothing is raised."""
    return str(raised(action, expected)).split(" (Background on this error")[0]


class BudgetExceeded(AssertionError):
    """A block sent more statements than its budget allows."""


@contextmanager
def at_most(engine: Engine, budget: int) -> Iterator[Captured]:
    """Fail the block if `engine` sent more than `budget` statements: an N+1 guard for tests (notebook 02, §6)."""
    with capture_sql(engine) as captured:
        yield captured
    if captured.count > budget:
        first = "; ".join(" ".join(s.split())[:80] for s in captured.statements[:3])
        raise BudgetExceeded(f"{captured.count} statements, budget {budget}. First: {first} …")


@dataclass
class Timer:
    """Wall-clock seconds of a `with` block (perf_counter)."""

    seconds: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def compare(cases: dict[str, Callable[[], Any]], engine: Engine | None = None, repeat: int = 1) -> pd.DataFrame:
    """Run each case `repeat` times (slowest-first order is the caller's); best time and statements per case."""
    import pandas as pd

    rows = []
    for label, case in cases.items():
        best, statements = float("inf"), None
        for _ in range(repeat):
            with (capture_sql(engine) if engine is not None else _nothing()) as cap, Timer() as t:
                case()
            best = min(best, t.seconds)
            statements = cap.count if cap is not None else None
        rows.append({"case": label, "seconds": best, "statements": statements})
    return pd.DataFrame(rows).set_index("case")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
