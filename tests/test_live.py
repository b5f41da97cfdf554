"""The live controls of notebooks 01, 02 and 05 against the real server: a value moved in code changes what the
control shows, as the lesson says (workbook_utils/live.py)."""

from __future__ import annotations

import pytest

from workbook_utils import live


@pytest.fixture(scope="module")
def wb():
    from workbook_utils import setup

    wb = setup("live")  # its own scratch schema, nblive: never a notebook's
    wb.scratch_copy(["users", "posts", "comments"], indexes=["posts(user_id)", "comments(post_id)"])
    yield wb
    wb.close()
    left = wb.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'workbook-nblive%' "
                    "AND pid <> pg_backend_pid()")["n"][0]
    assert left == 0, f"{left} sessions of the live controls left open"


def throughput_gain(control: live.Live) -> float:
    """How much more a pool of 8 served than a pool of 2 in the control's last sweep."""
    rate = control.result["sweep"]["queries/s"]
    return rate[8] / rate[2]


def test_pool_sweep_knee_moves_right_as_the_io_share_grows(wb):
    control = live.pool_sweep(wb, cores=2, io_share=0.0)
    gains = []
    for _ in range(2):  # a busy machine (other programs on the cores) may blur one measurement: once more
        control.controls["io_share"].value = 0.0
        cpu_bound = throughput_gain(control)
        control.controls["io_share"].value = 0.9
        gains.append((round(cpu_bound, 2), round(throughput_gain(control), 2)))
        if gains[-1][1] >= 1.5 * gains[-1][0]:
            break
    assert gains[-1][1] >= 1.5 * gains[-1][0], gains  # past the cores, only waiting requests gain from a bigger pool
    assert control.result["knee"] >= 4 and "90% of each request" in control.output.outputs[0]["data"]["text/plain"]
    assert list(control.result["sweep"].index) == [1, 2, 4, 8] and (control.result["sweep"]["failed"] == 0).all()


def test_n_plus_one_counts_n_plus_one_statements_lazy_and_two_with_selectinload(wb):
    control = live.n_plus_one(wb, wb.engine.execution_options(schema_translate_map={None: wb.schema}))
    counts = {}
    for n in (1, 20):
        control.controls["n"].value = n
        for loader in ("lazy", "selectinload", "joinedload"):
            control.controls["loader"].value = loader
            counts[n, loader] = len(control.result["statements"])
            assert control.output.outputs[0]["text"].startswith(f"{loader}, N = {n}: {counts[n, loader]} statements")
    assert counts == {(1, "lazy"): 2, (1, "selectinload"): 2, (1, "joinedload"): 1,
                      (20, "lazy"): 21, (20, "selectinload"): 2, (20, "joinedload"): 1}
    assert "nblive.posts" in control.output.outputs[0]["text"]  # the SQL sent is shown


def test_lock_queue_the_alter_waits_at_most_lock_timeout_and_without_it_as_long_as_the_blocker(wb):
    control = live.lock_queue(wb, lock_timeout="none", hold=0.5)
    unbounded = control.result
    control.controls["lock_timeout"].value = "50 ms"
    bounded = control.result
    assert [a["outcome"] for a in unbounded["attempts"]] == ["ok"] and unbounded["attempts"][0]["waited_ms"] >= 450
    failed = [a for a in bounded["attempts"] if a["outcome"] == "LockNotAvailable"]
    assert len(failed) >= 2 and bounded["attempts"][-1]["outcome"] == "ok"
    assert all(50 <= a["waited_ms"] < 500 for a in failed), failed  # each attempt gave up at its lock_timeout
    slowest = {name: r["traffic"].result()["latency_ms"].max() for name, r in (("none", unbounded), ("50", bounded))}
    assert slowest["50"] < slowest["none"] / 2, slowest  # the workload queued behind the ALTER only briefly
    assert control.output.outputs[-1]["text"].startswith(f"ALTER TABLE: {len(bounded['attempts'])} attempt(s)")
