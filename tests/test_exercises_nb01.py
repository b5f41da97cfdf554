"""Notebook 01's exercises: reference solutions pass; obvious wrong answers and answers that meet the letter of a
question while breaking its lesson fail; ____ and the unchanged starter code are not attempted."""

from __future__ import annotations

import threading
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
    assert q1.verdict(nb01.pool_settings_reference) == (CORRECT, None)
    assert q2.verdict(nb01.handle_fixed) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True}) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "text": text, "time": time}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_other_correct_answers_pass(exercises):
    """Other rules (numpy integers too), and handle() written other ways (§3's session.get among them)."""
    import numpy as np

    q1, q2, q3 = exercises
    for rule in [lambda p, t, m, k: {"pool_size": t, "max_overflow": (m - k) // p - t},    # the whole share
                 lambda p, t, m, k: {"pool_size": (m - k) // p, "max_overflow": 0},        # a pool as big as it
                 lambda p, t, m, k: {"pool_size": np.int64(t), "max_overflow": np.int64(0)}]:  # numbers.Integral
        assert q1.verdict(rule) == (CORRECT, None)
    assert q2.verdict(_with_a_session) == (CORRECT, None)
    assert q2.verdict(_orm_get) == (CORRECT, None)   # selects every column of User: the scratch table has them all
    assert q2.verdict(_define("from time import sleep\n\ndef render(name):\n    sleep(0.5)\n    return name\n\n"
                              "def handle(engine, user_id):\n    with engine.connect() as conn:\n"
                              "        name = conn.execute(text('SELECT name FROM users WHERE id = :id'), "
                              "{'id': user_id}).scalar_one()\n    return render(name)\n")) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True, "pool_recycle": 3600}) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": True, "pool_size": 2, "max_overflow": 3}) == (CORRECT, None)
    assert q3.verdict({"pool_pre_ping": 1}) == (CORRECT, None)   # SQLAlchemy reads 1 as True


def _with_a_session(engine, user_id):
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        name = session.scalar(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})
    time.sleep(0.5)
    return name


def _orm_get(engine, user_id):
    """§3's request(), then the render: what the notebook teaches."""
    from sqlalchemy.orm import Session

    from workbook_utils.models import User

    with Session(engine) as session, session.begin():
        name = session.get(User, user_id).name
    time.sleep(0.5)
    return name


def _define(source: str):
    """handle() from `source` run as a cell of its own (its globals: its own imports, as in a notebook)."""
    names = {"text": text}
    exec(compile(source, f"<cell-{abs(hash(source))}>", "exec"), names)
    return names["handle"]


KEYS = "answer with a dict of the keys 'pool_size' and 'max_overflow' only"   # WrongKind: said as it is


def test_the_expected_verdicts_are_what_the_references_get(wb01):
    """The references meet the fixed claims under drawn conditions (q2's also returns the drawn users' names)."""
    from workbook_utils.exercises.draws import Draw

    draw = Draw()
    burst = nb01.draw_burst(draw, nb01.user_ids(wb01))
    assert nb01.burst_verdict(wb01, nb01.handle_fixed, burst) == nb01.burst_expected(wb01, burst)
    names = wb01.query("SELECT id, name FROM nb01.users").set_index("id")["name"]
    assert nb01.burst_expected(wb01, burst)["results"] == [names[i] for i in burst.user_ids]
    assert 1 <= burst.pool_size <= 3 and len(burst.user_ids) >= burst.pool_size + 2
    assert nb01.kill_verdict(wb01, {"pool_pre_ping": True}, draw) == nb01.KILL_EXPECTED


def test_q1_draws_deployments_over_a_wide_range_the_first_with_no_room_to_spare():
    import random

    rng = random.Random()
    drawn = [d for _ in range(30) for d in nb01.draw_deployments(rng)]
    assert all(d.share >= d.threads for d in drawn)
    assert {d.processes for d in drawn} >= {1, 16} and {d.threads for d in drawn} >= {1, 32}
    firsts = [nb01.draw_deployments(rng)[0] for _ in range(10)]
    assert all(d.share == d.threads for d in firsts)  # the exact fit: max_overflow must be 0 there


def _twice(exercise, answer) -> str:
    """q1 (no server, fast): two checks under two fresh draws, the answer fails both; others: one fresh draw."""
    diffs = []
    for _ in range(2 if exercise.name == "q1" else 1):
        status, diff = exercise.verdict(answer)
        assert status == INCORRECT and diff, (answer, exercise.last_draw.describe())
        diffs.append(diff)
    return diffs[0]


@pytest.mark.parametrize(("rule", "why"), [
    (lambda p, t, m, k: {"pool_size": t, "max_overflow": t}, "its share of the server"),     # overflow past the share
    (lambda p, t, m, k: {"pool_size": 1, "max_overflow": t - 1}, "stay open between requests"),  # a connection per request
    (lambda p, t, m, k: {"pool_size": 0, "max_overflow": t}, "its share of the server"),     # 0: "no limit"
    (lambda p, t, m, k: {"pool_size": t, "max_overflow": -1}, "not negative"),               # -1: "no overflow limit"
    (lambda p, t, m, k: {"pool_size": (m - k) // t, "max_overflow": 0}, "for "),             # divided by the threads
    (lambda p, t, m, k: {"pool_size": m - k, "max_overflow": 0}, "its share of the server"),  # the server for one process
    (lambda p, t, m, k: {"pool_size": 8, "max_overflow": 0}, "for "),                         # §4's answer, hard-coded
    (lambda p, t, m, k: {"pool_size": 8, "max_overflow": 13}, "for "),                        # fits §4's only
    (lambda p, t, m, k: {"pool_size": t / 1, "max_overflow": 0}, "whole numbers"),
    (lambda p, t, m, k: {"pool_size": True, "max_overflow": t - 1}, "whole numbers"),
    (lambda p, t, m, k: {"pool_size": str(t), "max_overflow": "0"}, "whole numbers"),
    (lambda p, t, m, k: {"pool_size": t}, KEYS),
    (lambda p, t, m, k: {"pool_size": t, "max_overflow": 0, "poolclass": NullPool}, KEYS),   # no pool at all
])
def test_q1_wrong_rules_fail_for_a_drawn_deployment(exercises, rule, why):
    diff = _twice(exercises[0], rule)
    assert why in diff and (why == KEYS or diff.startswith("for ")) and "[drawn: deployments = 12 drawn" in diff, diff


@pytest.mark.parametrize("answer", [
    {"pool_size": 8, "max_overflow": 13},   # right for §4's deployment alone: numbers could be right by chance
    {"pool_size": 8, "max_overflow": 0},
    nb01.pool_settings_reference(4, 8, 100, 13),   # the function called, not passed
    [8, 0],
])
def test_q1_numbers_alone_are_refused_the_function_is_asked_for(exercises, answer):
    status, diff = exercises[0].verdict(answer)
    assert status == INCORRECT and "pass your function pool_settings itself" in diff, (answer, diff)


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
        return nb01.handle_fixed(own, user_id)
    finally:
        own.dispose()


def _bigger_pool(engine, user_id):
    if not isinstance(engine.pool, _Bigger):
        engine.pool = _Bigger(engine.pool._creator, pool_size=10, max_overflow=0, timeout=0.3)
    return _holds_connection(engine, user_id)


class _Bigger(QueuePool):
    pass


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


def _holds_through_part_of_the_work(engine, user_id):
    with engine.connect() as conn:   # holds 0.09 s of the 0.5 s: squeezes through, but a query takes a millisecond
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.09)
    time.sleep(0.41)
    return name


def _holds_while_waiting_otherwise(engine, user_id):
    with engine.connect() as conn:   # slow work that is not time.sleep (a wait on another service), connection held
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        threading.Event().wait(0.5)
    time.sleep(0.5)
    return name


def _wrong_result(engine, user_id):
    return nb01.handle_fixed(engine, user_id).upper()


def _typo(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM user WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(0.5)
    return name


HOLDS = ("requests that failed is too high", "no request did its slow work while it held a connection")


@pytest.mark.parametrize(("handle", "why"), [
    (_holds_connection, HOLDS),
    (_retries_until_it_gets_one, HOLDS),
    (_own_engine, ("took one connection from the pool it was given",)),
    (_bigger_pool, ("the pool is the one given",)),
    (_more_overflow, ("the pool is the one given",)),
    (_second_connection, ("took one connection from the pool it was given",)),
    (_no_slow_work, ("rendered its invoice",)),
    (_holds_through_part_of_the_work, HOLDS),
    (_holds_while_waiting_otherwise, HOLDS),   # times out, or squeezes through and is seen holding
    (_wrong_result, ("results, item 0 (",)),
    (_typo, ("handle() raised ProgrammingError",)),   # the learner is told what their code raised
    (_define("from time import sleep\n\ndef handle(engine, user_id):\n    with engine.connect() as conn:\n"
             "        name = conn.execute(text('SELECT name FROM users WHERE id = :id'), {'id': user_id}).scalar()\n"
             "        sleep(0.5)\n    return name\n"), HOLDS),   # the sleep imported by name is seen too
])
def test_q2_wrong_answers_fail(exercises, handle, why):
    diff = _twice(exercises[1], handle)
    assert any(w in diff for w in why) and "[drawn: pool size = " in diff, (handle, diff)


def test_q2_a_hard_coded_result_fails(exercises, wb01):
    """Names fetched up front and a query that is not the one asked for: only a real query returns the names."""
    names = wb01.query("SELECT id, name FROM users").set_index("id")["name"].to_dict()

    def handle(engine, user_id):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        time.sleep(0.5)
        return names[user_id]

    assert "results, item 0 (" in _twice(exercises[1], handle)


@pytest.mark.parametrize(("options", "why"), [
    ({}, "the requests after the kill succeeded"),
    ({"pool_recycle": 3600}, "the requests after the kill succeeded"),
    ({"pool_size": 0}, "the requests after the kill succeeded"),
    ({"poolclass": NullPool}, "the default QueuePool"),                 # passes the kill by not pooling at all
    ({"poolclass": StaticPool, "pool_pre_ping": True}, "the default QueuePool"),
    ({"pool_recycle": 0}, "reused from one request to the next"),      # renews the connection at every checkout
    ({"pool_recycle": 0.05}, "reused from one request to the next"),   # young enough to happen to reconnect
    ({"pool_pre_ping": True, "pool_recycle": 0.05}, "reused from one request to the next"),
    ({"pool_timeout": 1}, "the requests after the kill succeeded"),
    # pool_pre_ping, but a pool SQLAlchemy reads as "no limit"
    ({"pool_pre_ping": True, "pool_size": 0}, "bounded QueuePool"),
    ({"pool_pre_ping": True, "max_overflow": -1}, "bounded QueuePool"),
    ({"pool_pre_ping": "no"}, "pool_pre_ping takes True or False, not 'no'"),   # truthy, not True
    ({"pool_pre_ping": "True"}, "pool_pre_ping takes True or False"),
    ({"pool_pre_ping": True, "poolclass": SingletonThreadPool}, "the default QueuePool; these options give it a "
                                                                "SingletonThreadPool"),
    ("pool_pre_ping=True", "answer with a dict of create_engine options"),
])
def test_q3_wrong_answers_fail(exercises, options, why):
    status, diff = exercises[2].verdict(options)
    assert status == INCORRECT and why in diff, (options, diff)


def test_q3_the_drawn_fill_is_what_the_pool_can_hold(exercises):
    """A pool of 1 holds one connection at the kill: the failure message says 1, not a drawn number it cannot hold."""
    for _ in range(3):
        status, diff = exercises[2].verdict({"pool_size": 1, "max_overflow": 0})
        assert status == INCORRECT and "connections open at the kill = 1" in diff, diff


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
    assert q1.verdict(____) == (NOT_ATTEMPTED, None)
    assert q3.verdict({____: ____}) == (NOT_ATTEMPTED, None)
    assert q2.verdict(_load_handle(tmp_path, nb01.HANDLE_STARTER)) == (NOT_ATTEMPTED, None)
    changed = nb01.HANDLE_STARTER.replace("time.sleep(0.5)", "time.sleep(0.4)")
    assert q2.verdict(_load_handle(tmp_path, changed))[0] == INCORRECT


def test_the_notebook_cell_defines_the_starter_exactly(tmp_path):
    """The q2 answer cell's handle() is HANDLE_STARTER, so it reads as not attempted until the learner changes it."""
    import nbformat

    from workbook_utils.questions import answer_cell

    nb = nbformat.read(project_root() / "notebooks" / "01_connection_pooling.ipynb", as_version=4)
    assert same_code(_load_handle(tmp_path, nb.cells[answer_cell(nb, "q2")].source), nb01.HANDLE_STARTER)
    assert nb.cells[answer_cell(nb, "q1")].source.strip() == nb01.POOL_SETTINGS_STARTER.strip()


def test_each_part_loads_its_own_exercises(wb01, exercises):
    """Part 1 loads q1 and q2, Part 2 (after a kernel restart) q3 alone; all three by default."""
    q1, q2 = nb01.load(wb01, "q1", "q2")
    q3 = nb01.load(wb01, "q3")
    assert (q1.name, q2.name, q3.name) == ("q1", "q2", "q3") and [q.name for q in exercises] == ["q1", "q2", "q3"]
    assert q3.verdict({"pool_pre_ping": True}) == (CORRECT, None)
    with pytest.raises(ValueError, match="not q4"):
        nb01.load(wb01, "q4")


def test_q1_the_notebooks_starter_is_not_attempted(exercises):
    import linecache

    names: dict = {"____": ____}
    linecache.cache["<q1 starter>"] = (0, None, nb01.POOL_SETTINGS_STARTER.splitlines(True), "<q1 starter>")  # as IPython
    exec(compile(nb01.POOL_SETTINGS_STARTER, "<q1 starter>", "exec"), names)
    assert exercises[0].verdict(names["pool_settings"])[0] == NOT_ATTEMPTED
