"""The facilitator's live view of a workshop room (issue 17): exercise outcomes recorded per learner, read across them.

Each `check()` records its outcome in the learner's own database (`_workbook.outcomes`); only the admin role,
which may enter every learner's database, reads them all (`workbook room`, facilitator/room.ipynb).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import db, urls
from .learners import enter, marked_roles, names
from .outcomes import SOLVED, TRIED

NOT_YET = "not yet"
READERS = 8  # learners' databases read at once by `workbook room`


@dataclass
class Outcome:
    """One learner's record of one exercise."""

    learner: str
    notebook: str
    exercise: str
    status: str
    attempts: int
    first_attempt: dt.datetime
    last_attempt: dt.datetime
    solved_at: dt.datetime | None

    @property
    def key(self) -> str:
        return f"{self.notebook}/{self.exercise}"


@dataclass
class Claim:
    """How often one learner's checks of one exercise said that this part of its claim failed."""

    learner: str
    key: str  # notebook/exercise
    claim: str
    attempts: int


@dataclass
class Room:
    """Everyone's outcomes, as the admin role read them."""

    learners: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    @property
    def exercises(self) -> list[str]:
        return sorted({o.key for o in self.outcomes})

    def status(self, learner: str, exercise: str) -> str:
        return next((o.status for o in self.outcomes if o.learner == learner and o.key == exercise), NOT_YET)

    def stuck(self) -> list[tuple[str, int]]:
        """Exercises tried but not solved, by how many learners, most first."""
        counts = Counter(o.key for o in self.outcomes if o.status == TRIED)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def why(self, exercise: str) -> list[tuple[str, int]]:
        """Why learners are stuck on an exercise: each part of its claim their failed checks broke, by how many of the
        learners not done with it, most first."""
        stuck = {o.learner for o in self.outcomes if o.key == exercise and o.status == TRIED}
        counts = Counter(c.claim for c in self.claims if c.key == exercise and c.learner in stuck)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def not_started(self) -> list[str]:
        started = {o.learner for o in self.outcomes}
        return [n for n in self.learners if n not in started and n not in self.unreachable]


def _read_one(admin_url: str, learner: str) -> tuple[list[Outcome], list[Claim]]:
    with enter(admin_url, learner, application_name="workbook-room") as conn:
        conn.execute("SET statement_timeout = '5s'")
        if conn.execute("SELECT to_regclass('_workbook.outcomes')").fetchone()[0] is None:
            return [], []
        rows = conn.execute("SELECT notebook, exercise, status, attempts, first_attempt, last_attempt, solved_at "
                            "FROM _workbook.outcomes ORDER BY 1, 2").fetchall()
        claims = [] if conn.execute("SELECT to_regclass('_workbook.claims')").fetchone()[0] is None else \
            conn.execute("SELECT notebook || '/' || exercise, claim, attempts FROM _workbook.claims ORDER BY 1, 2").fetchall()
    return [Outcome(learner, *row) for row in rows], [Claim(learner, key, _printable(claim), n) for key, claim, n in claims]


def _printable(text: str) -> str:
    """A claim as the facilitator's terminal may show it: a learner owns the table, so no control characters."""
    return "".join(c for c in text if c.isprintable())[:80]


def read_room(prefix: str = "learner") -> Room:
    """Every learner's outcomes, read by the admin role from each learner's database (a few at a time)."""
    names(prefix, 0)  # validates the prefix
    admin_url = urls.admin_url()
    with db.connect(admin_url, application_name="workbook-room") as conn:
        learners = [n for n in marked_roles(conn, prefix)
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [n]).fetchone()]
    room = Room(learners)
    with ThreadPoolExecutor(READERS) as pool:
        futures = {name: pool.submit(_read_one, admin_url, name) for name in learners}
        for name, future in futures.items():
            try:
                outcomes, claims = future.result()
                room.outcomes.extend(outcomes)
                room.claims.extend(claims)
            except Exception as exc:  # one broken database must not hide the room
                room.unreachable[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return room


MARKS = {SOLVED: "✔", TRIED: "✗", NOT_YET: "·"}


def render(room: Room) -> str:
    """The room as text: a learner × exercise grid, the exercises most learners are stuck on, who has not started."""
    if not room.learners:
        return "No learners yet: `workbook provision --learners N` creates them."
    exercises = room.exercises
    width = max(len(n) for n in room.learners) + 2
    lines = [" " * width + "  ".join(f"{e:>6}" for e in exercises)]
    for name in room.learners:
        cells = "  ".join(f"{MARKS[room.status(name, e)]:>6}" for e in exercises)
        lines.append(f"{name:<{width}}{cells}" + (f"  unreachable: {room.unreachable[name]}"
                                                   if name in room.unreachable else ""))
    lines.append(f"\n{MARKS[SOLVED]} solved · {MARKS[TRIED]} tried, not solved yet · {MARKS[NOT_YET]} not yet")
    stuck = room.stuck()
    lines.append("stuck on: " + (", ".join(f"{e} ({n} learner{'s' * (n > 1)})" for e, n in stuck[:5]) if stuck
                                 else "nothing"))
    for exercise, _ in stuck[:5]:
        lines.extend(f"  {exercise}: {claim}: {n} learner{'s' * (n > 1)}" for claim, n in room.why(exercise)[:3])
    idle = room.not_started()
    lines.append("not started: " + (", ".join(idle) if idle else "everyone has started"))
    return "\n".join(lines)
