"""The shop notebook 04 stands up in each Part, and the row-wait scene of its "Who blocks whom", on the real server."""

from __future__ import annotations

import time

from sqlalchemy import text

from workbook_utils import race_shop, row_wait, setup


def test_the_shop_stands_up_twice_resets_and_a_waiter_is_seen_waiting_then_goes_on():
    wb = setup("04")
    try:
        shop = race_shop.stand_up(wb)
        shop = race_shop.stand_up(wb)   # again, as a Part after a restart does: nothing left over breaks it
        assert shop.stock(1) == shop.stock(2) == 10
        with shop.engine.begin() as conn:
            conn.execute(text("UPDATE products SET inventory = 3 WHERE id = 1"))
            conn.execute(text("INSERT INTO tags (name) VALUES ('x')"))
        shop.reset(7)
        assert shop.stock(1) == 7
        assert wb.query("SELECT count(*) AS n FROM nb04.tags").n[0] == 0
        sql = "UPDATE products SET inventory = inventory - 1 WHERE id = 1"
        first = row_wait.hold_and_wait(shop.engine, sql)
        scene = row_wait.hold_and_wait(shop.engine, sql)   # a re-run ends the first scene before staging its own
        assert not first.waiting() and scene.waiting()
        blocked = wb.query("SELECT pg_blocking_pids(:pid) AS p", pid=scene.waiter_pid).p[0]
        assert blocked == [scene.holder_pid]
        scene.release()
        assert not scene.waiting() and shop.stock(1) == 5
    finally:
        wb.close()


def test_the_waiter_still_waits_after_a_learner_reads_for_6_s_and_a_given_up_scene_can_be_set_again():
    wb = setup("04")
    try:
        shop = race_shop.stand_up(wb)
        sql = "UPDATE products SET inventory = inventory - 1 WHERE id = 1"
        scene = row_wait.hold_and_wait(shop.engine, sql)
        time.sleep(6)   # cells 14-16 read and run; the default wait outlasts the shop's own 5 s lock_timeout
        assert scene.waiting()
        assert wb.query("SELECT pg_blocking_pids(:pid) AS p", pid=scene.waiter_pid).p[0] == [scene.holder_pid]
        scene.end()
        short = row_wait.hold_and_wait(shop.engine, sql, lock_timeout="50ms")
        short.thread.join(10)
        assert not short.waiting()   # the waiter gave up; its holder still holds product 1's row
        short.end()                   # cell 17 ends it before reset(), which would otherwise wait behind that row lock
        shop.reset()
        scene = row_wait.hold_and_wait(shop.engine, sql)
        assert scene.waiting()
        scene.release()
        assert shop.stock(1) == 8
    finally:
        wb.close()
