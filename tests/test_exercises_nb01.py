"""Notebook 01's exercises: reference solutions pass; obvious wrong answers and answers that meet the letter of a
question while breaking its lesson fail; ____ and the unchanged starter code are not attempted."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool, QueuePool, SingletonThreadPool, StaticPool

from workbook_utils.config import project_root
from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb01, same_code


@pytest.fixture(scope="module")
def wb01():
    from workbook_utils import setup

    workbook = setup("01")
    yield workbook
    workbook.close()


@pytest.fixture(scope="module")
def exercises(wb01):
    return nb01.load(wb01)


def test_reference_solutions_and_printed_solutions_pass(exercises, capsys):
    q1, q2, q3 = exercises
    assert q1.verdict({"pool_size": 8, "max_overflow": 0}) == (CORRECT, None)
    assert q1.verdict({"pool_size": 10, "max_overflow": 11}) == (CORRECT, None)  # any choice that serves and fits
    assert q2.verdict(nb01.handle_fixed) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True}) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True, "pool_recycle": 3600}) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "text": text, "time": time}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


KEYS = "answer with a dict of the keys 'pool_size' and 'max_overflow' only"   # WrongKind: said as it is


def test_reference_verdicts_are_the_constants(wb01):
    """The expected verdicts are constants; the references meet them (q2's reference also gives the results)."""
    burst = nb01.burst_verdict(wb01, nb01.handle_fixed)
    assert {key: burst[key] for key in nb01.BURST_EXPECTED} == nb01.BURST_EXPECTED
    assert burst["results"] == wb01.query("SELECT name FROM nb01.users WHERE id <= 6 ORDER BY id")["name"].tolist()
    assert nb01.kill_verdict(wb01, {"pool_pre_ping": True}) == nb01.KILL_EXPECTED


@pytest.mark.parametrize(("answer", "why"), [
    ({"pool_size": 5, "max_overflow": 0}, "every thread of a process gets a connection at once"),
    ({"pool_size": 20, "max_overflow": 10}, "its share of the server"),
    # SQLAlchemy reads pool_size=0 as "no limit": the deployment no longer fits the server at all
    ({"pool_size": 0, "max_overflow": 8}, "its share of the server"),
    ({"pool_size": 8, "max_overflow": -1}, "not negative"),   # -1: no overflow limit
    ({"pool_size": -8, "max_overflow": 16}, "not negative"),
    # 8 connections at once and 4 × 8 fit, but 7 of them are overflow: closed on return, reopened per request
    ({"pool_size": 1, "max_overflow": 7}, "connections stay open between requests"),
    ({"pool_size": 5, "max_overflow": 5}, "connections stay open between requests"),
    ({"pool_size": 8.5, "max_overflow": 0}, "whole numbers"),
    ({"pool_size": True, "max_overflow": 7}, "whole numbers"),
    ({"pool_size": "8", "max_overflow": "0"}, "whole numbers"),
    ({"pool_size": 8, "max_overflow": 0, "poolclass": NullPool}, KEYS),   # no pool at all
    ({"size": 8}, KEYS),
    ({"pool_size": 8}, KEYS),
    ([8, 0], KEYS),
])
def test_q1_wrong_answers_fail(exercises, answer, why):
    status, diff = exercises[0].verdict(answer)
    assert status == INCORRECT and why in diff, (answer, diff)


def _holds_connection(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.5)
    return name


def _retries_until_it_gets_one(engine, user_id):
    from sqlalchemy import exc

    while True:   # right results for every request, but each still holds its connection across the slow work
        try:
            return _holds_connection(engine, user_id)
        except exc.TimeoutError:
            continue


def _own_engine(engine, user_id):
    own = create_engine(engine.url, poolclass=NullPool)   # avoids the pool it was given
    try:
        return _holds_connection(own, user_id)
    finally:
        own.dispose()


def _bigger_pool(engine, user_id):
    if engine.pool.size() == 2:
        engine.pool = QueuePool(engine.pool._creator, pool_size=6, max_overflow=0, timeout=0.3)
    return _holds_connection(engine, user_id)


def _more_overflow(engine, user_id):
    engine.pool._max_overflow = 10
    return _holds_connection(engine, user_id)


def _second_connection(engine, user_id):
    name = nb01.handle_fixed(engine, user_id)
    with engine.connect() as conn:   # a second checkout: e.g. an audit row written on another connection
        conn.execute(text("SELECT 1"))
    return name


def _no_slow_work(engine, user_id):
    with engine.connect() as conn:
        return conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()


def _shorter_slow_work(engine, user_id):
    with engine.connect() as conn:   # still holds the connection, but sleeps little enough to squeeze through
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.12)   # three waves of 0.12 s fit in pool_timeout=0.3
    time.sleep(0.38)
    return name


def _holds_through_part_of_the_work(engine, user_id):
    with engine.connect() as conn:   # holds 0.09 s of the 0.5 s: squeezes through, but a query takes a millisecond
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.09)
    time.sleep(0.41)
    return name


def _wrong_result(engine, user_id):
    return nb01.handle_fixed(engine, user_id).upper()


def _typo(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM user WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(0.5)
    return name


@pytest.mark.parametrize(("handle", "why"), [
    (_holds_connection, "requests that failed is too high"),
    (_retries_until_it_gets_one, "no request kept its connection during the slow work"),
    (_own_engine, "took one connection from the pool it was given"),
    (_bigger_pool, "the pool is the one given"),
    (_more_overflow, "the pool is the one given"),
    (_second_connection, "took one connection from the pool it was given"),
    (_no_slow_work, "rendered its invoice"),
    (_holds_through_part_of_the_work, "no request kept its connection during the slow work"),
    (_wrong_result, "results, item 0 ("),
    (_typo, "handle() raised ProgrammingError"),   # the learner is told what their code raised
])
def test_q2_wrong_answers_fail(exercises, handle, why):
    status, diff = exercises[1].verdict(handle)
    assert status == INCORRECT and why in diff, (handle.__name__, diff)


def test_q2_a_hard_coded_result_fails(exercises, wb01):
    """Names fetched up front and a query that is not the one asked for: only a real query returns the names."""
    names = wb01.query("SELECT id, name FROM users").set_index("id")["name"].to_dict()

    def handle(engine, user_id):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        time.sleep(0.5)
        return names[user_id]

    status, diff = exercises[1].verdict(handle)
    assert status == INCORRECT and "results, item 0 (" in diff, diff


def test_q2_a_connection_held_through_part_of_the_slow_work_fails(exercises):
    """Holding 0.12 s of the slow work squeezes six requests through a pool of 2, but not past the hold check."""
    status, diff = exercises[1].verdict(_shorter_slow_work)
    assert status == INCORRECT, diff


@pytest.mark.parametrize(("options", "why"), [
    ({}, "the first request after the kill succeeded"),
    ({"pool_recycle": 3600}, "the first request after the kill succeeded"),
    ({"pool_size": 0}, "the first request after the kill succeeded"),
    ({"poolclass": NullPool}, "the default QueuePool"),                 # passes the kill by not pooling at all
    ({"poolclass": StaticPool, "pool_pre_ping": True}, "the default QueuePool"),
    ({"pool_recycle": 0}, "reused from one request to the next"),      # renews the connection at every checkout
    ({"pool_recycle": 0.05}, "reused from one request to the next"),   # young enough to happen to reconnect
    ({"pool_pre_ping": True, "pool_recycle": 0.05}, "reused from one request to the next"),
    ({"pool_timeout": 1}, "the first request after the kill succeeded"),
    # pool_pre_ping, but a pool SQLAlchemy reads as "no limit"
    ({"pool_pre_ping": True, "pool_size": 0}, "bounded QueuePool"),
    ({"pool_pre_ping": True, "max_overflow": -1}, "bounded QueuePool"),
    ({"pool_pre_ping": "no"}, "pool_pre_ping takes True or False, not 'no'"),   # truthy, not True
    ({"pool_pre_ping": 1}, "pool_pre_ping takes True or False"),
    ({"pool_pre_ping": True, "poolclass": SingletonThreadPool}, "the default QueuePool; these options give it a "
                                                                "SingletonThreadPool"),
    ("pool_pre_ping=True", "answer with a dict of create_engine options"),
])
def test_q3_wrong_answers_fail(exercises, options, why):
    status, diff = exercises[2].verdict(options)
    assert status == INCORRECT and why in diff, (options, diff)


def _load_handle(tmp_path, source: str):
    """Define handle() from `source` in a real module, as a notebook cell does (inspect can read its source)."""
    import importlib.util

    module = tmp_path / f"cell_{abs(hash(source))}.py"
    module.write_text("import time\n\nfrom sqlalchemy import text\n" + source)
    spec = importlib.util.spec_from_file_location(module.stem, module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded.handle


def test_blanks_and_the_unchanged_starter_are_not_attempted(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert q1.verdict({"pool_size": ____, "max_overflow": ____}) == (NOT_ATTEMPTED, None)
    assert q3.verdict({____: ____}) == (NOT_ATTEMPTED, None)
    assert q2.verdict(_load_handle(tmp_path, nb01.HANDLE_STARTER)) == (NOT_ATTEMPTED, None)
    changed = nb01.HANDLE_STARTER.replace("time.sleep(0.5)", "time.sleep(0.4)")
    assert q2.verdict(_load_handle(tmp_path, changed))[0] == INCORRECT


def test_the_notebook_cell_defines_the_starter_exactly(tmp_path):
    """The q2 cell's handle() is HANDLE_STARTER, so it reads as not attempted until the learner changes it."""
    nb = json.loads((project_root() / "notebooks" / "01_connection_pooling.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"]
                if c["cell_type"] == "code" and "q2.check(handle)" in "".join(c["source"]))
    definition = cell.split("q2.check(handle)")[0].replace("print(q2.question)", "")
    assert same_code(_load_handle(tmp_path, definition), nb01.HANDLE_STARTER)


def test_part_2_runs_on_a_fresh_kernel_after_only_the_setup_cell(wb01):
    """A workshop that stops after Part 1: the learner restarts the kernel, runs the setup cell, then Part 2."""
    import nbformat

    from workbook_utils.notebook_files import execute

    wb01.close()  # this module's sessions end, as the restarted kernel's did: setup drops the scratch schema
    path = project_root() / "notebooks" / "01_connection_pooling.ipynb"
    nb = nbformat.read(path, as_version=4)
    start = next(i for i, cell in enumerate(nb.cells) if cell.get("id") == "01-part2-title")
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    started = time.perf_counter()
    execute(path, cells=[code[0]] + [i for i in code if i > start])  # raises on the first failing cell
    assert time.perf_counter() - started < 60, "a cleanup did not cancel the runaway query"
