"""Notebook 02's exercises: reference solutions pass, known-wrong answers fail."""

from __future__ import annotations

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, nb02


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
