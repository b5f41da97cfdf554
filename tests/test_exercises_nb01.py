"""Notebook 01's exercises: reference solutions pass, known-wrong answers fail, ____ is not attempted."""

from __future__ import annotations

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb01


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
