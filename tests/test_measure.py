"""capture_sql counts exactly the statements of one engine (or of all, given the Engine class), from any thread;
compare() races cases."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from workbook_utils import db
from workbook_utils.measure import BudgetExceeded, at_most, capture_sql, compare, error_of, raised


def test_counts_each_statement_of_its_engine_only():
    engine, other = db.make_engine(), db.make_engine()
    try:
        with capture_sql(engine) as captured:
            with engine.connect() as conn:
                for i in range(3):
                    conn.execute(text("SELECT :i"), {"i": i})
            with other.connect() as conn:
                conn.execute(text("SELECT 42"))  # another engine: not counted
        assert captured.count == 3
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # after the block: not counted
        assert captured.count == 3
    finally:
        engine.dispose()
        other.dispose()


def test_the_engine_class_counts_every_engine_of_the_process():
    from sqlalchemy.engine import Engine

    engine = db.make_engine()
    try:
        with capture_sql(Engine) as captured:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            other = db.make_engine()  # made inside the block: counted too
            with other.connect() as conn:
                conn.execute(text("SELECT 2"))
            other.dispose()
        with engine.connect() as conn:
            conn.execute(text("SELECT 3"))  # after the block: not counted
        assert captured.count == 2
    finally:
        engine.dispose()


def test_counts_from_many_threads():
    engine = db.make_engine(pool_size=4)
    try:
        def work():
            with engine.connect() as conn:
                for _ in range(25):
                    conn.execute(text("SELECT 1"))

        with capture_sql(engine) as captured:
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        assert captured.count == 100
    finally:
        engine.dispose()


def test_compare_reports_seconds_and_statements():
    engine = db.make_engine()
    try:
        def two():
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                conn.execute(text("SELECT 2"))

        result = compare({"two statements": two}, engine=engine, repeat=2)
        assert result.loc["two statements", "statements"] == 2
        assert result.loc["two statements", "seconds"] > 0
    finally:
        engine.dispose()


def test_rows_sums_what_the_server_returned():
    engine = db.make_engine()
    try:
        with capture_sql(engine) as captured, engine.connect() as conn:
            conn.execute(text("SELECT g FROM generate_series(1, 7) g")).all()
            conn.execute(text("SELECT 1")).all()
        assert captured.rowcounts == [7, 1] and captured.rows == 8
    finally:
        engine.dispose()


def test_at_most_passes_within_budget_and_fails_beyond_it():
    engine = db.make_engine()
    try:
        with at_most(engine, 2), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.execute(text("SELECT 2"))
        with pytest.raises(BudgetExceeded, match=r"3 statements, budget 2\. First: SELECT 1; SELECT 2; SELECT 3"):
            with at_most(engine, 2), engine.connect() as conn:
                for i in (1, 2, 3):
                    conn.execute(text(f"SELECT {i}"))
    finally:
        engine.dispose()


def test_error_of_returns_the_message_and_fails_when_nothing_is_raised():
    from sqlalchemy.exc import InvalidRequestError

    def raises():
        raise InvalidRequestError("'User.posts' is not available (Background on this error at: https://sqlalche.me)")

    assert error_of(raises, InvalidRequestError) == "'User.posts' is not available"
    with pytest.raises(AssertionError, match="expected InvalidRequestError, but nothing was raised"):
        error_of(lambda: None, InvalidRequestError)
    with pytest.raises(InvalidRequestError):  # another class than expected is not swallowed
        error_of(raises, AttributeError)


def test_bytes_sums_the_values_the_server_sent():
    engine = db.make_engine()
    try:
        with capture_sql(engine, with_bytes=True) as captured, engine.connect() as conn:
            conn.execute(text("SELECT repeat('x', 1000), NULL::text, 'abc' FROM generate_series(1, 3)")).all()
            conn.execute(text("SELECT '\\x0102'::bytea")).all()  # bytea arrives as hex text: \x0102
        assert captured.sizes == [3 * 1003, 6] and captured.bytes == 3015
        with capture_sql(engine) as unmeasured, engine.connect() as conn:
            conn.execute(text("SELECT repeat('x', 1000)")).all()
        assert unmeasured.sizes == [0]
    finally:
        engine.dispose()


def test_raised_returns_the_exception_itself():
    error = raised(lambda: 1 / 0, ZeroDivisionError)
    assert isinstance(error, ZeroDivisionError)
    with pytest.raises(AssertionError, match="expected KeyError, but nothing was raised"):
        raised(lambda: None, KeyError)
