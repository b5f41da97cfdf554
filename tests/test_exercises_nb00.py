"""Notebook 00's exercises: reference solutions pass, known-wrong answers fail, ____ is not attempted."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb00
from workbook_utils.models import Post


@pytest.fixture(scope="module")
def wb():
    from workbook_utils import setup

    workbook = setup("00")
    yield workbook
    workbook.close()


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
