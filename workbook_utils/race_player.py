"""Notebook 04 §1's race, one step at a time: a player with a "Next step" button and a list of fixes.

The lost update of §1 is a script: both sessions read product 1, session 1 writes and commits, session 2 writes
what it computed from its stale read and commits. `Player` runs it against the real server one step per call, each
session on its own connection and thread, like `races.run` does all at once; after each step it knows the lanes so
far and the sessions' rows in `pg_locks`. `widget()` puts it behind ipywidgets controls.

    player = race_player.Player(engine, fix="SELECT … FOR UPDATE")
    while player.next(): pass          # or: race_player.widget(engine), and press "Next step"
    player.stock()                      # 8: no update lost

Every wait is bounded (`lock_timeout`, `statement_timeout` and `idle_in_transaction_session_timeout` on each
session, deadlines here), and the sessions are closed after the last step, when the fix changes, and before the
next notebook cell runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import locks
from .errors import WorkbookError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sqlalchemy.engine import Connection, Engine

START = 10  # product 1's stock before each race
POLL = 0.01  # seconds between two looks at pg_blocking_pids


def read(conn: Connection) -> int:
    """SELECT inventory"""
    conn.info["read"] = conn.exec_driver_sql("SELECT inventory FROM products WHERE id = 1").scalar_one()
    return conn.info["read"]


def read_for_update(conn: Connection) -> int:
    """SELECT inventory … FOR UPDATE"""
    conn.info["read"] = conn.exec_driver_sql("SELECT inventory FROM products WHERE id = 1 FOR UPDATE").scalar_one()
    return conn.info["read"]


def write(conn: Connection) -> int:
    """UPDATE … SET inventory = what I read − 1"""
    from sqlalchemy import text

    new = conn.info["read"] - 1
    conn.execute(text("UPDATE products SET inventory = :new WHERE id = 1"), {"new": new})
    return new


def write_atomic(conn: Connection) -> int:
    """UPDATE … SET inventory = inventory − 1"""
    return conn.exec_driver_sql("UPDATE products SET inventory = inventory - 1 WHERE id = 1 RETURNING inventory").scalar_one()


def commit(conn: Connection) -> None:
    """COMMIT"""
    conn.commit()


@dataclass(frozen=True)
class Step:
    """One step of the script: which session runs what, and what should happen ("ok", "BLOCKS", a SQLSTATE)."""

    session: str
    action: Callable[[Connection], Any]
    expect: str = "ok"

    @property
    def label(self) -> str:
        return (self.action.__doc__ or self.action.__name__).strip().splitlines()[0]


def two_sales(read_: Callable, write_: Callable, s2_read: str = "ok", s2_write: str = "ok") -> list[Step]:
    """§1's order: both read, s1 writes and commits, then s2 writes and commits."""
    return [Step("s1", read_), Step("s2", read_, s2_read), Step("s1", write_), Step("s1", commit),
            Step("s2", write_, s2_write), Step("s2", commit)]


NO_FIX = "none: read, compute, write"
FIXES: dict[str, tuple[list[Step], str | None]] = {  # name -> (script, isolation level)
    NO_FIX: (two_sales(read, write), None),
    "SELECT … FOR UPDATE": (two_sales(read_for_update, write, s2_read="BLOCKS"), None),
    "atomic UPDATE": (two_sales(read, write_atomic), None),
    "REPEATABLE READ + retry": (two_sales(read, write, s2_write="40001")
                                + [Step("s2", read), Step("s2", write), Step("s2", commit)], "REPEATABLE READ"),
}

# Only what the lesson reads: locks on tables (not their indexes), on transaction ids, on row versions (tuple).
LOCKS_SQL = """
    SELECT l.pid, l.locktype, l.relation::regclass::text AS relation, l.mode, l.granted
    FROM pg_locks l LEFT JOIN pg_database d ON d.oid = l.database LEFT JOIN pg_class c ON c.oid = l.relation
    WHERE l.pid = ANY(%s) AND (d.datname = current_database() OR l.database IS NULL)
      AND (l.locktype IN ('transactionid', 'tuple') OR (c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'pg\\_%%'))
    ORDER BY l.pid, l.granted DESC, l.locktype, l.mode"""
MODES = ("AccessShareLock: reads the table; RowShareLock: SELECT … FOR UPDATE on it; RowExclusiveLock: writes to it; "
         "transactionid ExclusiveLock: its own transaction (row locks last as long); ShareLock on a transactionid, "
         "not granted: waits for that transaction to end; tuple: first in line for a row")


class Player:
    """The script of one fix, run a step per `next()` against the real server."""

    def __init__(self, engine: Engine, fix: str = NO_FIX, lock_timeout: str = "5s", timeout: float = 15.0) -> None:
        if fix not in FIXES:
            raise WorkbookError(f"unknown fix {fix!r}: one of {', '.join(FIXES)}")
        self.engine, self.fix, self.lock_timeout, self.timeout = engine, fix, lock_timeout, timeout
        self.steps, self.isolation_level = FIXES[fix]
        self.rows: list[dict[str, Any]] = []
        self.conns: dict[str, Connection] = {}
        self.pids: dict[str, int] = {}
        self.threads: dict[str, ThreadPoolExecutor] = {}
        self.pending: dict[int, Future] = {}
        self.locks_now: pd.DataFrame | None = None

    @property
    def finished(self) -> bool:
        return len(self.rows) == len(self.steps)

    def _open(self, name: str) -> None:
        """Session `name`'s connection (bounded waits) and thread; the first session also resets the stock."""
        from sqlalchemy import text

        if not self.conns:
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE products SET inventory = :n WHERE id = 1"), {"n": START})
        conn = self.engine.connect()
        conn.execute(text("SELECT set_config('lock_timeout', :lt, false), set_config('statement_timeout', :st, false), "
                          "set_config('idle_in_transaction_session_timeout', '10min', false)"),
                     {"lt": self.lock_timeout, "st": f"{int(self.timeout * 1000)}ms"})
        conn.commit()
        if self.isolation_level:
            conn = conn.execution_options(isolation_level=self.isolation_level)
        self.conns[name], self.pids[name] = conn, conn.connection.driver_connection.info.backend_pid
        self.threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"player-{name}")

    def _perform(self, step: Step) -> dict[str, Any]:
        """Run one step on its session's thread; an error is the outcome, and rolls the transaction back."""
        conn, done, t0 = self.conns[step.session], {"outcome": "ok", "error": "", "value": None}, time.perf_counter()
        try:
            done["value"] = step.action(conn)
        except Exception as exc:  # the failure is the observation
            orig = getattr(exc, "orig", None)
            done["outcome"] = getattr(orig, "sqlstate", None) or type(exc).__name__
            done["error"] = f"{type(orig or exc).__name__}: {str(orig or exc).splitlines()[0]}"
            conn.rollback()
        done["seconds"] = time.perf_counter() - t0
        return done

    def _waiting_for(self, future: Future, session: str, deadline: float) -> list[int]:
        """Wait until the step ends ([]) or the server shows its session waiting for a lock (the pids it waits for)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as observer:
            raw = observer.connection.driver_connection
            while not wait([future], timeout=POLL).done:
                if waiting := locks.blockers(raw, [self.pids[session]]).get(self.pids[session]):
                    return waiting
                if time.monotonic() > deadline:
                    raise WorkbookError(f"step of {session} neither finished nor waited for a lock in time")
        return []

    def next(self) -> bool:
        """Run the next step (the first one starts the race); whether any step is left."""
        if self.finished:
            return False
        n, step = len(self.rows) + 1, self.steps[len(self.rows)]
        deadline = time.monotonic() + self.timeout
        if step.session not in self.conns:
            self._open(step.session)
        for j in [j for j in self.pending if self.rows[j - 1]["session"] == step.session]:
            self._finish(j, self.pending.pop(j).result(self.timeout), n)  # its session's earlier step ends first
        future = self.threads[step.session].submit(self._perform, step)
        row = {"session": step.session, "statement": step.label, "expected": step.expect, "waited for": ""}
        self.rows.append(row)
        who = {pid: name for name, pid in self.pids.items()}
        if waiting := self._waiting_for(future, step.session, deadline):
            row["waited for"] = ", ".join(who.get(p, str(p)) for p in waiting)
            row.update({"outcome": "waiting", "done after": n})
            self.pending[n] = future
        else:
            self._finish(n, future.result(), n)
        for j in list(self.pending):  # did this step release an earlier one?
            if j != n and not self._waiting_for(self.pending[j], self.rows[j - 1]["session"], deadline):
                self._finish(j, self.pending.pop(j).result(), n)
        self.locks_now = self.locks()
        if self.finished:
            self.close()
        return not self.finished

    def _finish(self, n: int, done: dict[str, Any], after: int) -> None:
        """Record step `n`'s result; it ended once step `after` had run."""
        row = self.rows[n - 1]
        row.update(done, **{"done after": after})
        expected = row["expected"].split("|")
        row["as expected"] = row["outcome"] in expected or ("BLOCKS" in expected and bool(row["waited for"]))

    def locks(self) -> pd.DataFrame:
        """The sessions' rows in pg_locks now: this database's tables (no index, no catalog), transaction ids, tuples."""
        import pandas as pd

        who = {pid: name for name, pid in self.pids.items()}
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as observer:
            rows = observer.connection.driver_connection.execute(LOCKS_SQL, [list(self.pids.values())]).fetchall()
        table = pd.DataFrame(rows, columns=["pid", "locktype", "relation", "mode", "granted"])
        table["relation"] = table["relation"].fillna("")  # a transaction id lock is on no relation
        table.insert(0, "session", [who[p] for p in table["pid"]])
        return table

    def table(self) -> pd.DataFrame:
        """The steps so far, one row each, and the ones still to come (outcome empty)."""
        import pandas as pd

        rows = [{k: "" if r.get(k) is None else r.get(k, "")
                 for k in ("session", "statement", "expected", "waited for", "outcome", "value")} for r in self.rows]
        rows += [{"session": s.session, "statement": s.label, "expected": s.expect, "waited for": "", "outcome": "",
                  "value": ""} for s in self.steps[len(self.rows):]]
        return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="step"), dtype=object)  # 10, not 10.0

    def lanes(self) -> Figure | None:
        """The swim lanes of the steps run so far (None before the first step)."""
        import pandas as pd

        from . import races

        if not self.rows:
            return None
        now = len(self.rows)
        steps = pd.DataFrame([{**r, "outcome": "ok", "done after": now} if r["outcome"] == "waiting" else r
                              for r in self.rows], index=pd.RangeIndex(1, now + 1, name="step"))
        note = f"stock now {self.stock()}" if self.finished else f"step {len(self.rows)} of {len(self.steps)}"
        figure = races.draw({self.fix: races.Race(steps)}, "The lost-update race, step by step",
                            failing=(NO_FIX,), notes={self.fix: note})
        _unfinish(figure.axes[0], steps, [n for n, r in enumerate(self.rows, 1) if r["outcome"] == "waiting"])
        return figure

    def stock(self) -> int:
        """Product 1's committed stock."""
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT inventory FROM products WHERE id = 1").scalar_one()

    def close(self) -> None:
        """Roll back and close every session (a step still waiting ends with its lock released); idempotent."""
        for name, conn in self.conns.items():
            self.threads[name].submit(conn.rollback)  # queued behind a waiting step, which the others' rollback frees
        for j, future in list(self.pending.items()):
            self._finish(j, future.result(self.timeout), len(self.rows))
        self.pending.clear()
        for name, conn in self.conns.items():
            self.threads[name].submit(_release, conn).result(self.timeout)
            self.threads[name].shutdown(wait=True)
        self.conns.clear()


def _unfinish(ax: Any, steps: pd.DataFrame, waiting: list[int]) -> None:
    """A step still waiting has no "ran" bar yet: take away the one `races.draw` gives every step, and its number."""
    from matplotlib.colors import to_rgba

    from .races import PHASE_COLORS

    sessions = sorted(set(steps["session"]))
    for n in waiting:
        lane, now = sessions.index(steps.loc[n, "session"]), steps.loc[n, "done after"]
        for patch in list(ax.patches):
            middle = patch.get_y() + patch.get_height() / 2
            if (patch.get_facecolor() == to_rgba(PHASE_COLORS["ran"]) and abs(middle - lane) < 0.01
                    and patch.get_x() <= now <= patch.get_x() + patch.get_width()):
                patch.remove()
        for label in list(ax.texts):
            if label.get_text() == str(n):
                label.remove()


def _release(conn: Connection) -> None:
    """Roll back, put the session's settings back (not for the pool's next user), and close."""
    conn.rollback()
    conn.exec_driver_sql("RESET lock_timeout; RESET statement_timeout; RESET idle_in_transaction_session_timeout")
    conn.commit()
    conn.close()


def widget(engine: Engine, fix: str = NO_FIX) -> Any:
    """The player behind controls: a list of fixes, "Next step" and "Start over"; the script, lanes and pg_locks below.

    Nothing runs until "Next step" is pressed (a notebook run headless only draws the script). The returned box has
    `.player` (the current `Player`), `.fix`, `.next_step`, `.start_over` and `.output`, for tests.
    """
    import ipywidgets as widgets

    fixes = widgets.Dropdown(options=list(FIXES), value=fix, description="fix")
    next_step = widgets.Button(description="Next step", button_style="primary", icon="step-forward")
    start_over = widgets.Button(description="Start over", icon="undo")
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([fixes, next_step, start_over]), output])
    box.player, box.fix, box.next_step, box.start_over, box.output = Player(engine, fix), fixes, next_step, start_over, output

    def redraw() -> None:
        _draw(box.player, output)
        next_step.disabled = box.player.finished

    def on_next(_: Any) -> None:
        box.player.next()
        redraw()

    def on_start_over(_: Any = None) -> None:
        box.player.close()
        box.player = Player(engine, fixes.value)
        redraw()

    next_step.on_click(on_next)
    start_over.on_click(on_start_over)
    fixes.observe(lambda change: on_start_over(), names="value")
    _close_before_next_cell(box)
    redraw()
    return box


def _draw(player: Player, output: Any) -> None:
    """The script with the next step marked, the lanes so far, the sessions' rows in pg_locks, the stock."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    table = player.table()
    table.insert(0, "", ["→" if n == len(player.rows) + 1 else "" for n in table.index])
    with output:
        output.clear_output(wait=True)
        display(table)
        if (figure := player.lanes()) is not None:
            display(figure)
            plt.close(figure)
        if player.locks_now is not None:
            print("pg_locks after this step:" if len(player.locks_now) else "pg_locks after this step: none held")
            if len(player.locks_now):
                display(player.locks_now)
                print(MODES)
        if player.finished:
            print(f"stock after two sales: {player.stock()} (started at {START})")


_HOOKED: list[Callable[..., None]] = []


def _close_before_next_cell(box: Any) -> None:
    """Close the player's sessions when another cell runs, so no half-run race holds a lock over the notebook."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if (shell := get_ipython()) is None:
        return
    for hook in _HOOKED:  # this cell ran again: the old player's hook goes
        shell.events.unregister("pre_run_cell", hook)
    _HOOKED.clear()

    def hook(*_: Any) -> None:
        if box.player.conns:  # half run: its sessions go, and the next click starts the race over
            box.player.close()
            box.player = Player(box.player.engine, box.player.fix)

    shell.events.register("pre_run_cell", hook)
    _HOOKED.append(hook)
