"""Races reproduced by order, not by luck (notebook 04; reused by notebook 07's tests).

A script is a list of steps, each `(session, action, expect)`: the harness runs them one after another,
each on its session's own thread and connection. A step that waits for a lock is *seen* waiting in
`pg_blocking_pids` (never guessed from a sleep), and the script moves on to the step that will release
it. A step for a session whose previous step still waits queues behind it ("waited for: step N") if
its `expect` allows BLOCKS; otherwise the harness first waits for that step to end on its own (a
lock_timeout, a deadlock).
Every wait is bounded: `lock_timeout` and `statement_timeout` on each session, deadlines on the harness.

    race = races.run(engine, [
        ("s1", "UPDATE products SET inventory = inventory - 1 WHERE id = 1"),
        ("s2", "UPDATE products SET inventory = inventory - 1 WHERE id = 1", "BLOCKS"),
        ("s1", "COMMIT"),
        ("s2", "COMMIT"),
    ])
    race.check()        # every step behaved as its `expect` said
    race.steps          # the result as data: one row per step
    races.draw({"atomic": race}, "two decrements")   # swim lanes, one per session, by step order

An action is SQL text (`COMMIT` and `ROLLBACK` end the session's transaction) or a function called with
the session, a SQLAlchemy ORM `Session` bound to one connection for the whole script. A step that fails
rolls its session's transaction back, as `with session.begin():` would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import locks
from .errors import WorkbookError, first_line

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

BLOCKS = "BLOCKS"
POLL, MAX_POLL = 0.005, 0.05  # seconds between two looks at pg_blocking_pids: the first, and at most


@dataclass(frozen=True)
class Step:
    """One line of a script: which session runs what, and what should happen ("ok", "BLOCKS", a SQLSTATE,
    an exception class name, or alternatives joined by "|"; None: anything)."""

    session: str
    action: str | Callable[[Session], Any]
    expect: str | None = None

    @property
    def label(self) -> str:
        """The SQL, or the first line of the function's docstring (else its name)."""
        if isinstance(self.action, str):
            return " ".join(self.action.split())
        doc = (self.action.__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.action.__name__


@dataclass
class _Done:
    outcome: str = "ok"  # "ok", a SQLSTATE, or an exception class name
    error: str = ""
    value: Any = None
    seconds: float = 0.0


@dataclass
class Race:
    """What a run saw: `steps` (one row per step), with `check()` for tests and `value(n)` for one step's result."""

    steps: pd.DataFrame
    lock_timeout: str = ""
    sessions: dict[str, int] = field(default_factory=dict)  # session name -> backend pid

    def value(self, step: int) -> Any:
        """What step `step` (numbered from 1) returned: the first column of its first row, or a function's result."""
        return self.steps.loc[step, "value"]

    def outcome(self, step: int) -> str:
        """"ok", a SQLSTATE ("40001") or an exception class name ("StaleDataError") for step `step`."""
        return self.steps.loc[step, "outcome"]

    def check(self) -> Race:
        """Raise AssertionError naming every step that did not behave as its `expect` said; returns self."""
        wrong = self.steps[~self.steps["as expected"]]
        if len(wrong):
            raise AssertionError("; ".join(f"step {n} ({r.session}: {r.statement[:60]}) expected {r.expected}, "
                                           f"got {r.outcome}{' after waiting' if r['waited for'] else ''}"
                                           for n, r in wrong.iterrows()))
        return self


def _as_expected(expect: str | None, waited: str, outcome: str) -> bool:
    """A step queued behind its own session's waiting step ("step N") is judged by its outcome alone."""
    if expect is None:
        return True
    queued = waited.startswith("step ")
    return any((alt == BLOCKS and bool(waited)) or (alt != BLOCKS and (queued or not waited) and alt == outcome)
               for alt in expect.split("|"))


def _outcome(exc: Exception) -> tuple[str, str]:
    """(SQLSTATE or class name, "Class: first line") of an exception a step raised."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    shown = orig if orig is not None else exc
    return sqlstate or type(exc).__name__, f"{type(shown).__name__}: {first_line(shown)}"


def _perform(session: Session, step: Step, t0: float) -> _Done:
    """Run one step on its session's thread; an error is recorded and the transaction rolled back."""
    from sqlalchemy import text

    done = _Done()
    try:
        if not isinstance(step.action, str):
            done.value = step.action(session)
        elif step.action.strip().upper() in ("COMMIT", "ROLLBACK"):
            getattr(session, step.action.strip().lower())()
        else:
            result = session.execute(text(step.action))
            done.value = result.first()[0] if result.returns_rows else result.rowcount
    except Exception as exc:  # the failure is the observation
        done.outcome, done.error = _outcome(exc)
        session.rollback()
    done.seconds = time.perf_counter() - t0
    return done


def _settle(future: Future, pid: int, observer: Any, deadline: float, look_first: bool = False) -> list[int]:
    """Wait until the step finished ([]) or its session waits for a lock (the pids it waits for).

    Waits on the step itself, so a step that ends is seen at once; between two looks at pg_blocking_pids the
    pause doubles from POLL up to MAX_POLL (a step that runs long without waiting is not asked 200 times a second).
    look_first: look at pg_blocking_pids before the first pause (a step that waited, and still waits, costs no POLL).
    """
    if look_first and not future.done() and (waiting_for := locks.blockers(observer, [pid]).get(pid)):
        return waiting_for
    pause = POLL
    while not wait([future], timeout=pause).done:
        if waiting_for := locks.blockers(observer, [pid]).get(pid):
            return waiting_for
        if time.monotonic() > deadline:
            raise WorkbookError(f"a step of session pid {pid} neither finished nor waited for a lock in time")
        pause = min(2 * pause, MAX_POLL)
    return []


def run(engine: Engine, script: Sequence[Step | tuple], isolation_level: str | None = None,
        lock_timeout: str = "5s", timeout: float = 15.0, quick_recheck: bool = False) -> Race:
    """Run `script` step by step, one session (ORM Session on its own connection) per name; never hangs.

    quick_recheck: after each step, look at once whether the steps still waiting still wait, instead of first
    giving each one POLL to end. Right when every step releases its locks before it returns (COMMIT, ROLLBACK, a
    failed step, a savepoint rolled back), not when a step makes another end later (pg_cancel_backend): a check
    that runs hundreds of races saves POLL per waiting step per step (notebook 04's exercises).
    """
    import pandas as pd
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    steps = [s if isinstance(s, Step) else Step(*s) for s in script]
    names = list(dict.fromkeys(s.session for s in steps))
    observer = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    conns, sessions, threads, pids = {}, {}, {}, {}
    pending: dict[int, Future] = {}  # step index -> future of a step still waiting for a lock
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    try:
        for name in names:
            conn = engine.connect()
            conn.execute(text("SELECT set_config('lock_timeout', :lt, false), "
                              "set_config('statement_timeout', :st, false)"),
                         {"lt": lock_timeout, "st": f"{int(timeout * 1000)}ms"})
            conn.commit()
            if isolation_level:
                conn = conn.execution_options(isolation_level=isolation_level)
            conns[name], pids[name] = conn, conn.connection.driver_connection.info.backend_pid
            sessions[name] = Session(bind=conn)
            threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"race-{name}")
        who = {pid: name for name, pid in pids.items()}
        raw = observer.connection.driver_connection

        def finish(i: int, future: Future, after: int) -> None:
            rows[i].update(vars(future.result(max(0.0, deadline - time.monotonic()))), **{"done after": after})

        for i, step in enumerate(steps):
            behind = [j for j in pending if steps[j].session == step.session]  # its session is still waiting
            if behind and BLOCKS not in (step.expect or "").split("|"):
                for j in behind:  # the earlier step must end on its own first (lock_timeout, deadlock)
                    finish(j, pending.pop(j), i)
                behind = []
            future = threads[step.session].submit(_perform, sessions[step.session], step, t0)
            rows.append({"session": step.session, "statement": step.label, "expected": step.expect or "",
                         "started": time.perf_counter() - t0})
            waiting_for = [] if behind else _settle(future, pids[step.session], raw, deadline)
            rows[i]["waited for"] = (f"step {behind[0] + 1}" if behind
                                     else ", ".join(who.get(p, str(p)) for p in waiting_for))
            if waiting_for or behind:
                pending[i] = future
            else:
                finish(i, future, i + 1)
            for j in list(pending):  # did this step release (or unblock into an error) an earlier one?
                if not _settle(pending[j], pids[steps[j].session], raw, deadline, quick_recheck):
                    finish(j, pending.pop(j), i + 1)
        for name in names:  # release what the script left open, so pending steps can end
            if all(steps[j].session != name for j in pending):
                threads[name].submit(sessions[name].rollback).result(timeout)
        for j in list(pending):
            finish(j, pending.pop(j), len(steps))
    finally:
        for name in names:
            threads[name].submit(sessions[name].close).result(timeout)
            threads[name].shutdown(wait=True)
            conns[name].execute(text("RESET lock_timeout; RESET statement_timeout"))  # not for the pool's next user
            conns[name].commit()
            conns[name].close()
        observer.close()
    table = pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="step"))
    table["value"] = pd.Series([r["value"] for r in rows], index=table.index, dtype=object)  # ints stay ints
    table["as expected"] = [_as_expected(e or None, w, o)
                            for e, w, o in zip(table["expected"], table["waited for"], table["outcome"], strict=True)]
    columns = ["session", "statement", "expected", "waited for", "outcome", "as expected", "value", "error",
               "started", "seconds", "done after"]
    return Race(table[columns], lock_timeout, pids)


PHASE_COLORS = {"ran": "#2980b9", "waited for a lock": "#f39c12", "failed": "#c0392b"}


def draw(runs: dict[str, Race], title: str, failing: Sequence[str] = (),
         notes: dict[str, str] | None = None) -> Figure:
    """Swim lanes side by side (shared axes), one lane per session, by step order: who ran, who waited, who failed.

    `failing` names the runs drawn as the broken form (title in the failing colour); `notes` adds a line under a
    run's title, e.g. its end state ("final stock 9"), which the bars alone cannot show.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .charts import FAILING, FIXED

    notes = notes or {}
    sessions = sorted({s for race in runs.values() for s in race.steps["session"]})
    most = max(len(race.steps) for race in runs.values())
    fig, axes = plt.subplots(1, len(runs), figsize=(min(4.2 * len(runs), 13), 1.6 + 0.55 * len(sessions)),
                             sharey=True, sharex=True, squeeze=False)
    for ax, (name, race) in zip(axes[0], runs.items(), strict=True):
        ends = [(r.session, r["done after"] if r["waited for"] else n) for n, r in race.steps.iterrows()]
        for (n, r), (session, end) in zip(race.steps.iterrows(), ends, strict=True):
            lane = sessions.index(r.session)
            if r["waited for"]:
                ax.barh(lane, r["done after"] - n + 0.5, left=n - 0.5, height=0.6, color=PHASE_COLORS["waited for a lock"])
            color = PHASE_COLORS["failed" if r.outcome != "ok" else "ran"]
            together = [i for i, e in enumerate(ends) if e == (session, end)]  # a queued step ends with the one before
            width = 0.8 / len(together)
            middle = end - 0.4 + width * (together.index(n - 1) + 0.5)
            ax.barh(lane, width * 0.95, left=middle - width / 2, height=0.6, color=color)
            ax.annotate(str(n), (middle, lane), ha="center", va="center", fontsize=7, color="white")
            if r.outcome != "ok":  # the outcome under its bar, so a long name never covers the next step
                ax.annotate(r.outcome, (middle, lane + 0.32), ha="center", va="top", fontsize=6, color=FAILING)
        bad = name in failing
        ax.set_title(name + (f"\n{notes[name]}" if name in notes else ""), loc="left", fontsize=10,
                     color=FAILING if bad else FIXED, fontweight="bold" if bad else "normal")
        ax.set_xlabel("step")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_yticks(range(len(sessions)), sessions)
    axes[0][0].set_xlim(0.3, most + 0.9)
    axes[0][0].set_ylim(len(sessions) - 0.3, -0.5)  # inverted, with room under the last lane for outcome labels
    fig.legend(handles=[Patch(color=c, label=p) for p, c in PHASE_COLORS.items()], frameon=False, fontsize=8,
               loc="lower right", ncols=3)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
