"""Every reference solution passes its own check; known-wrong answers fail naming a difference; ____ is not attempted."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, first_difference, nb00, nb01, nb02
from workbook_utils.models import Post


@pytest.fixture(scope="module")
def wb():
    from workbook_utils import setup

    workbook = setup("00")
    yield workbook
    workbook.close()


def test_first_difference_never_reveals_the_expected_value():
    assert first_difference(3, 3) is None
    assert first_difference(4, 3) == "your answer is too high"
    assert first_difference("3", 3) == "your answer should be a number, not str"
    assert first_difference([1, 2], [1, 2, 3]) == "your answer has 2 items; the expected result has 3"
    assert first_difference([(1, 5), (2, 4)], [(1, 5), (2, 9)]) == "item 1, item 1 is too low"
    assert "secret" not in first_difference("guess", "secret")


def test_nb00_reference_solutions_pass(wb):
    q1, q2, q3 = nb00.load(wb)
    solution_q3 = (select(Post.user_id, func.count()).group_by(Post.user_id)
                   .order_by(func.count().desc(), Post.user_id).limit(5))
    assert q1.verdict(q1.expected) == (CORRECT, None)
    assert q2.verdict(q2.expected) == (CORRECT, None)
    assert q3.verdict(solution_q3) == (CORRECT, None)
    exec_globals: dict = {}
    exec(q3.solution_code, exec_globals)  # the printed solution is itself correct
    assert q3.verdict(exec_globals["answer"]) == (CORRECT, None)


def test_nb00_known_wrong_answers_fail(wb):
    q1, q2, q3 = nb00.load(wb)
    total_users = int(wb.query("SELECT count(*) AS n FROM users")["n"][0])
    least_common = wb.query("SELECT region FROM users GROUP BY region ORDER BY count(*), region LIMIT 1")["region"][0]
    ascending = (select(Post.user_id, func.count()).group_by(Post.user_id)
                 .order_by(func.count(), Post.user_id).limit(5))
    for exercise, wrong in [(q1, total_users), (q1, "10"), (q2, least_common), (q3, ascending), (q3, "SELECT 1")]:
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and diff, (exercise.name, wrong)


def test_placeholder_is_not_attempted(wb, capsys):
    q1, _, q3 = nb00.load(wb)
    assert q1.verdict(____) == (NOT_ATTEMPTED, None)
    assert q3.verdict([____]) == (NOT_ATTEMPTED, None)
    q1.check(____)
    assert "not attempted" in capsys.readouterr().out


def test_first_difference_of_dicts_and_claims():
    assert first_difference({"fits": True}, {"fits": True}) is None
    assert first_difference({"fits": False}, {"fits": True}) == "“fits” does not hold"
    assert first_difference({"n": 3}, {"n": 2}) == "n is too high"
    assert first_difference([1], {"n": 2}) == "your answer should be a dict with the keys 'n'"


@pytest.fixture(scope="module")
def wb01():
    from workbook_utils import setup

    workbook = setup("01")
    yield workbook
    workbook.close()


def test_nb01_reference_solutions_and_printed_solutions_pass(wb01, capsys):
    import time

    from sqlalchemy import text

    q1, q2, q3 = nb01.load(wb01)
    assert q1.verdict({"pool_size": 8, "max_overflow": 0}) == (CORRECT, None)
    assert q1.verdict({"pool_size": 5, "max_overflow": 5}) == (CORRECT, None)   # any choice that serves and fits
    assert q2.verdict(nb01.handle_fixed) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True}) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "text": text, "time": time}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb01_known_wrong_answers_fail(wb01):
    from sqlalchemy import text

    def holds_connection(engine, user_id):
        with engine.connect() as conn:
            name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
            time.sleep(0.5)
        return name

    def wrong_result(engine, user_id):
        return nb01.handle_fixed(engine, user_id).upper()

    import time

    q1, q2, q3 = nb01.load(wb01)
    cases = [(q1, {"pool_size": 5, "max_overflow": 0}, "every thread"), (q1, {"pool_size": 20, "max_overflow": 10}, "fit"),
             (q1, {"pool_size": -8, "max_overflow": 16}, "negative"), (q1, {"size": 8}, "raised KeyError"),
             (q2, holds_connection, "requests that failed is too high"), (q2, wrong_result, "results, item 0 ("),
             (q3, {}, "does not hold"), (q3, {"pool_recycle": 3600}, "does not hold")]
    for exercise, wrong, why in cases:
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and why in diff, (exercise.name, wrong, diff)
    assert q3.verdict({____: ____}) == (NOT_ATTEMPTED, None)


@pytest.fixture(scope="module")
def wb02():
    from workbook_utils import setup

    workbook = setup("02")
    engine = workbook.scratch_copy(["users", "profiles", "posts", "comments", "orders"],
                                   indexes=["posts(user_id)", "comments(post_id)", "orders(user_id)"])
    yield workbook, engine
    workbook.close()


def test_nb02_reference_solutions_and_printed_solutions_pass(wb02, capsys):
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload, raiseload, selectinload

    from workbook_utils.models import Post, User

    wb, engine = wb02
    q1, q2, q3 = nb02.load(wb, engine)
    assert q1.verdict(nb02.report_reference) == (CORRECT, None)
    assert q2.verdict({"profile": "joinedload", "posts": "selectinload", "orders": "selectinload"}) == (CORRECT, None)
    assert q3.verdict([raiseload(User.posts), joinedload(User.profile)]) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "select": select, "selectinload": selectinload,
                 "joinedload": joinedload, "raiseload": raiseload, "User": User, "Post": Post}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb02_known_wrong_answers_fail(wb02):
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload, lazyload, raiseload, selectinload

    from workbook_utils.models import User

    def lazy_report(session):
        users = session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()
        return [(u.name, len(u.posts), sum(len(p.comments) for p in u.posts)) for u in users]

    def fast_but_wrong(session):
        return [(name, n, c + 1) for name, n, c in nb02.report_reference(session)]

    wb, engine = wb02
    q1, q2, q3 = nb02.load(wb, engine)
    cases = [(q1, lazy_report, "at most 3 statements"), (q1, fast_but_wrong, "the report, item 0, item 2 is too high"),
             (q2, {"profile": joinedload, "posts": joinedload, "orders": joinedload}, "nothing multiplied"),
             (q2, {"profile": selectinload, "posts": selectinload, "orders": selectinload}, "at most 3"),
             (q2, {"profile": lazyload, "posts": selectinload, "orders": selectinload}, "at most 3"),
             (q3, [raiseload("*")], "profile was loaded"), (q3, [joinedload(User.profile)], "posts raised"),
             (q3, [], "profile was loaded")]
    for exercise, wrong, why in cases:
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and why in diff, (exercise.name, wrong, diff)
