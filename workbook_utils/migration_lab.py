"""The harness of notebook 05's sections: a known starting state, a live workload, a revision held open.

Notebook 05 shows each mechanism in a cell first (an Alembic Config, a revision's `upgrade()`, `pg_locks`); the
bookkeeping around it lives here, so that a lesson cell reads like the code a reader would write, and so that each
Part of the notebook stands up after a kernel restart with one cell:

    lab = Lab(wb)                          # wb = setup("05")
    lab.at("0001")                         # fresh copies of users and posts, then the revisions up to 0001
    with lab.workload() as run:            # 2 readers + 2 writers, a monitor of who waits on whom
        lab.held_upgrade(run, "u01")       # the revision's transaction held open until a writer waited 300 ms
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import db, migrations, traffic

if TYPE_CHECKING:
    import pandas as pd
    from alembic.config import Config

    from .workbook import Workbook

READ = "SELECT count(*) FROM nb05.posts WHERE user_id = %(k)s"
WRITE = "UPDATE nb05.posts SET published = NOT published WHERE id = %(k)s"


class Lab:
    """Notebook 05's copies of users and posts (schema nb05), its Alembic Config and its workload."""

    def __init__(self, wb: Workbook) -> None:
        self.wb = wb
        self.libpq = wb.url.replace("+psycopg", "")  # the same database, for plain psycopg sessions
        self.migration = f"{wb.app_name}-migration"  # the migration's session in pg_stat_activity
        self.users = int(wb.query("SELECT count(*) AS n FROM public.users")["n"][0])
        self.batch = max(self.users // 10, 1)  # 0007's batch: a tenth of the rows
        self.cfg = self.config()

    def config(self, **attributes: Any) -> Config:
        """The project's revisions plus their failing forms (data/migrations/unsafe/), against schema nb05."""
        attributes.setdefault("application_name", self.migration)
        return migrations.config(self.wb.url, self.wb.schema, [migrations.SAFE, migrations.UNSAFE],
                                 backfill_batch=self.batch, **attributes)

    def at(self, revision: str) -> None:
        """Start over: fresh copies of users and posts, then Alembic's revisions up to `revision`."""
        from alembic import command

        with db.connect(self.libpq, application_name=self.wb.app_name) as conn:
            conn.execute("DROP TABLE IF EXISTS nb05.posts, nb05.users, nb05.alembic_version, nb05.grow CASCADE")
        self.wb.scratch_copy(["users", "posts"])  # nb05.users, nb05.posts: ours to change
        if revision != "base":
            command.upgrade(self.cfg, revision)

    def workload(self, read: str = READ, write: str = WRITE) -> traffic.Traffic:
        """2 readers + 2 writers on nb05, each statement bounded by statement_timeout (1 s)."""
        return traffic.Traffic(self.libpq, self.wb.app_name, read, write)

    def held_upgrade(self, run: traffic.Traffic, revision: str, until: str | int = "a wait",
                     **attributes: Any) -> tuple[float, float]:
        """Upgrade with the revision's transaction held open at its end until a statement has waited on it for
        300 ms (until="a wait") or `until` more writes went through; returns when the hold began and ended
        (seconds on the run's clock)."""
        from alembic import command

        hold = migrations.Hold()
        with run.window():
            upgrade = migrations.in_background(command.upgrade, self.config(on_version_apply=[hold], **attributes),
                                               revision)
            try:
                run.wait_for(lambda r: hold.reached.is_set() or upgrade.done(), "the revision's end", timeout=20)
                if upgrade.done():
                    upgrade.result()  # it failed before its end: show that error, not a timeout
                held_from = time.perf_counter() - run.t0
                if until == "a wait":
                    run.wait_for(lambda r: r.longest_wait >= 0.3, "a statement waited 300 ms on the migration")
                else:
                    n = run.finished("write")
                    run.wait_for(lambda r: r.finished("write") >= n + until, f"{until} writes during the hold")
            finally:
                held_to = time.perf_counter() - run.t0
                hold.release()
            upgrade.result(timeout=30)
        return held_from, held_to


def seen(run: traffic.Traffic) -> pd.Series:
    """What the readers saw of a backfill: rows filled, by when their read ended (s since the migration began)."""
    reads = run.result().query("kind == 'read' and outcome == 'ok'")
    return reads.set_index(reads.end - run.windows[-1][0])["value"].groupby(level=0).max()


def seen_while_held(run: traffic.Traffic, hold: tuple[float, float]) -> set[Any]:
    """The values readers saw in reads that began and ended while the revision's transaction was held open."""
    reads = run.result().query("kind == 'read' and outcome == 'ok'")
    return set(reads.loc[(reads.start >= hold[0]) & (reads.end <= hold[1]), "value"])
