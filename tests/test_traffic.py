"""The live workload: statements recorded with their outcome, and lock waits observed in pg_blocking_pids."""

from __future__ import annotations

import matplotlib

from workbook_utils import db, traffic

from .elsewhere import another_role, waiting

matplotlib.use("Agg")
READ, WRITE = "SELECT count(*) FROM products WHERE id = %(k)s", "UPDATE products SET inventory = inventory WHERE id = %(k)s"


def _traffic(seeded):
    return traffic.Traffic(seeded, "t05-traffic", READ, WRITE, statement_timeout_ms=300)


def test_without_a_lock_holder_nothing_waits_or_fails(seeded):
    with _traffic(seeded) as quiet:
        quiet.wait_for(lambda t: t.finished("write") >= 10, "10 writes")
    counts = traffic.summary(quiet.result())
    assert counts["statements"] >= 10 and counts["waited on a lock"] == 0 and counts["failed"] == 0
    df = quiet.result()
    assert set(df.loc[df["kind"] == "read", "value"]) == {1} and df.loc[df["kind"] == "write", "value"].isna().all()


def test_writers_behind_a_lock_wait_then_time_out_and_the_timeline_shows_both_runs(seeded):
    with db.connect(seeded, autocommit=False) as holder, _traffic(seeded) as run:
        with run.window():
            holder.execute("LOCK TABLE products IN SHARE MODE")  # blocks writers, not readers
            run.wait_for(lambda t: any(r["outcome"] == "QueryCanceled" for r in t.records), "a timeout")
            holder.rollback()
        run.wait_for(lambda t: t.records[-1]["start"] > t.windows[-1][1], "a statement after the window")
    df = run.result()
    waited = df[df["waited"]]
    assert len(waited) and set(waited["kind"]) == {"write"}  # readers never waited on SHARE
    assert set(df.loc[df["outcome"] != "ok", "outcome"]) == {"QueryCanceled"}
    assert (df[df["kind"] == "read"]["outcome"] == "ok").all()
    ax = traffic.timeline({"held": run, "again": run}, "test", failing=("held",))
    assert len(ax.figure.axes) == 2 and ax.figure.axes[0].get_shared_y_axes().joined(*ax.figure.axes)


def test_the_monitor_reads_the_waits_of_this_databases_sessions_of_this_role_only(seeded, scratch_db):
    """The monitor asks about the workload's pids: a pid of another learner's session (reused) says nothing."""
    with another_role(seeded) as stranger, db.connect(seeded) as monitor, \
            waiting(scratch_db, "t05-traffic", key=1) as (elsewhere, _), waiting(stranger, "t05-traffic", key=2) as (theirs, _), \
            waiting(seeded, "t05-traffic", key=3) as (ours, holder):
        rows = monitor.execute(traffic.WAITS_SQL, [[elsewhere, theirs, ours]]).fetchall()
    assert [(pid, by) for pid, by, _ in rows] == [(ours, [holder])]
