"""The exercises API: first differences never reveal the answer; ____ and unchanged starter code are not attempted."""

from __future__ import annotations

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise, ____, first_difference, same_code


def test_first_difference_never_reveals_the_expected_value():
    assert first_difference(3, 3) is None
    assert first_difference(4, 3) == "your answer is too high"
    assert first_difference("3", 3) == "your answer should be a number, not str"
    assert first_difference([1, 2], [1, 2, 3]) == "your answer has 2 items; the expected result has 3"
    assert first_difference([(1, 5), (2, 4)], [(1, 5), (2, 9)]) == "item 1, item 1 is too low"
    assert "secret" not in first_difference("guess", "secret")


def test_first_difference_of_dicts_and_claims():
    assert first_difference({"fits": True}, {"fits": True}) is None
    assert first_difference({"fits": False}, {"fits": True}) == "“fits” does not hold"
    assert first_difference({"n": 3}, {"n": 2}) == "n is too high"
    assert first_difference([1], {"n": 2}) == "your answer should be a dict with the keys 'n'"
    nested = {"on a drawn dataset": {"fits": True, "n": 2}}
    assert first_difference({"on a drawn dataset": {"fits": False, "n": 2}}, nested) == \
        "“on a drawn dataset, fits” does not hold"


STARTER = """
def handle(n):
    # the buggy version: fix me
    return n + 1
"""


def test_unchanged_starter_code_is_not_attempted_and_a_changed_one_is_checked(tmp_path):
    import importlib.util

    def load(source: str):
        path = tmp_path / f"m{abs(hash(source))}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.handle

    unchanged = load("\n\n" + STARTER.replace("    # the buggy version: fix me\n", ""))  # comments do not count
    changed = load(STARTER.replace("n + 1", "n + 2"))
    assert same_code(unchanged, STARTER) and not same_code(changed, STARTER) and not same_code(len, STARTER)
    q = Exercise("q", "add two", reference=lambda: 5, hint_text="", solution_code="", evaluate=lambda f: f(3),
                 starter=STARTER)
    assert q.verdict(unchanged) == (NOT_ATTEMPTED, None)
    assert q.verdict(changed) == (CORRECT, None)
    assert q.verdict(lambda n: n)[0] == INCORRECT
    assert q.verdict(____) == (NOT_ATTEMPTED, None)


def test_an_answer_of_the_wrong_kind_is_told_what_is_asked_for():
    from workbook_utils.exercises import WrongKind

    def needs_text(answer):
        if not isinstance(answer, str):
            raise WrongKind("pass the SQL text of your query")
        return answer

    q = Exercise("q", "?", reference=lambda: "SELECT 1", hint_text="", solution_code="", evaluate=needs_text)
    assert q.verdict(42) == (INCORRECT, "pass the SQL text of your query")


# ── Questions, discussions, drawn conditions ────────────────────────────────────────────────────────────────────

def test_a_question_builds_its_exercise_and_the_discussion_comes_after_a_correct_answer(capsys):
    from workbook_utils.exercises import Question

    question = Question(name="q7", text="What is 6 × 7?", shape="a number, e.g. `12`", hint_text="multiply",
                        solution_code="q7.check(42)", discussion="Why: 6 × 7 is 42.")
    q = question.exercise(reference=lambda: 42)
    assert (q.name, q.question, q.shape) == ("q7", "What is 6 × 7?", "a number, e.g. `12`")
    q.check(41)
    assert "Why: 6 × 7 is 42." not in capsys.readouterr().out
    q.check(42)
    assert capsys.readouterr().out == "✅ q7: correct.\n\nWhy: 6 × 7 is 42.\n"


def test_a_draw_gives_each_name_one_value_and_its_seed_replays_them():
    from workbook_utils.exercises.draws import Draw

    draw = Draw()
    n = draw.integer("users", 15, 60)
    ids = draw.sample("ids", range(1, 100_000), n)
    assert draw.integer("users", 0, 1) == n and draw.sample("ids", range(3), 1) == ids  # asked again: the same
    again = Draw(draw.seed)
    assert again.integer("users", 15, 60) == n and again.sample("ids", range(1, 100_000), n) == ids
    shown = draw.describe()
    assert shown.startswith(f"users = {n}, ids = [") and f"… {n} in all]" in shown and shown.endswith(f"(seed {draw.seed})")
    seeds = {Draw().seed for _ in range(20)}
    assert len(seeds) > 15 and all(0 <= s < 1_000_000 for s in seeds)


def test_a_drawn_exercise_checks_under_fresh_conditions_and_prints_them_when_it_fails():
    def evaluate(answer, draw):
        return answer(draw.integer("n", 1, 10**6))

    q = Exercise("q", "double n", reference=lambda draw: 2 * draw.integer("n", 1, 10**6), hint_text="",
                 solution_code="", evaluate=evaluate, drawn=True)
    assert q.verdict(lambda n: 2 * n) == (CORRECT, None)
    seen = {q.last_draw.values["n"] for _ in range(5) if q.verdict(lambda n: n + n)[0] == CORRECT}
    assert len(seen) > 1  # a new n for each check
    status, diff = q.verdict(lambda n: 2 * n if n % 2 else 0)  # right for odd n only: fails on even ones
    while status == CORRECT:
        status, diff = q.verdict(lambda n: 2 * n if n % 2 else 0)
    seed, n = q.last_draw.seed, q.last_draw.values["n"]
    assert diff == f"your answer is too low [drawn: n = {n} (seed {seed}); q.check(answer, seed={seed}) draws the same]"
    assert q.verdict(lambda n: 2 * n if n % 2 else 0, seed=seed) == (status, diff)  # the printed seed replays it


# ── The learner's whole cell ────────────────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def shell():
    """An in-process IPython shell: it keeps cells in linecache as the notebook's kernel does."""
    from IPython.core.interactiveshell import InteractiveShell

    yield InteractiveShell.instance()
    InteractiveShell.clear_instance()  # a singleton: test_sql_magic makes a shell of another kind later


def _run(shell, cell: str) -> None:
    result = shell.run_cell(cell)
    assert result.success, result.error_in_exec or result.error_before_exec


def _standalone(shell, name: str, **kwargs) -> dict:
    """Run standalone_source's module on its own (a fresh namespace): what a revision or conftest file gets."""
    from workbook_utils.exercises.cells import standalone_source

    source = standalone_source(shell.user_ns[name], **kwargs)
    names: dict = {}
    exec(compile(source, "standalone", "exec"), names)
    return names


def test_a_function_written_to_a_file_of_its_own_keeps_its_cells_imports_and_helpers(shell):
    """The 05 q2 / 07 q1 case: `import time` at the top of the cell gave NameError with inspect.getsource."""
    import inspect

    _run(shell, "import math\nfrom sqlalchemy import text as sql\nSCALE = 2\n\ndef helper(x):\n    return math.sqrt(x)\n")
    _run(shell, "import time\nfrom time import sleep as nap\nBACKOFF = 0.0\n\n"
                "def upgrade(n):\n    nap(BACKOFF)\n    time.sleep(BACKOFF)\n    return helper(n) * SCALE, str(sql('x'))\n\n"
                "class Q:\n    def check(self, f):\n        print('checked')\n\n"
                "Q().check(upgrade)\nprint('a side effect')\n")  # copied, the check call would raise NameError
    names: dict = {}
    with pytest.raises(NameError):  # what a file holding only the def meets
        exec(inspect.getsource(shell.user_ns["upgrade"]), names)
        names["upgrade"](9)
    assert _standalone(shell, "upgrade")["upgrade"](9) == (6.0, "x")


def test_standalone_source_leaves_out_what_the_host_file_provides_and_refuses_what_it_cannot_carry(shell):
    from workbook_utils.exercises import WrongKind
    from workbook_utils.exercises.cells import standalone_source

    _run(shell, "def fixture_answer():\n    return op.run('x')\n")
    source = standalone_source(shell.user_ns["fixture_answer"], provided={"op"})
    assert "op" not in source.replace("op.run", "")  # nothing made up for a name the revision's header defines
    _run(shell, "import threading\nshared = threading.Lock()\n")
    _run(shell, "def uses_a_lock():\n    with shared:\n        return 1\n")
    with pytest.raises(WrongKind, match="'shared', a lock made in another cell"):
        standalone_source(shell.user_ns["uses_a_lock"])
    with pytest.raises(WrongKind, match="pass your function itself"):
        standalone_source(42)


def test_free_names_are_what_code_reads_without_binding():
    from workbook_utils.exercises.cells import free_names

    source = "import os\nLIMIT = 3\ndef f(a):\n    b = a + LIMIT\n    return [os.sep, b, g(b), len([c for c in b])]\n"
    assert free_names(source) == ["g"]


# ── SQL read by PostgreSQL's parser ─────────────────────────────────────────────────────────────────────────────

def test_sql_is_read_as_the_server_reads_it_quoted_names_included():
    from workbook_utils.exercises import sqltree

    index = sqltree.index('/* by author */ CREATE INDEX CONCURRENTLY "q1--by_author" ON nb03.posts (user_id, lower(title)) '
                          "INCLUDE (title) WHERE published;")
    assert (index.name, index.schema, index.table, index.columns) == ("q1--by_author", "nb03", "posts",
                                                                       ("user_id", "lower(title)"))
    assert index.concurrently and index.where == "published" and index.include == ("title",) and not index.unique
    changes = sqltree.table_changes('ALTER TABLE posts ADD CONSTRAINT "posts user fk" FOREIGN KEY (user_id) '
                                    "REFERENCES users (id) NOT VALID; "
                                    'ALTER TABLE posts VALIDATE CONSTRAINT "posts user fk"; SELECT \'NOT VALID\'')
    assert [(c.action, c.name, c.kind, c.not_valid) for c in changes] == [
        ("AddConstraint", "posts user fk", "foreign", True), ("ValidateConstraint", "posts user fk", None, False)]
    keys = sqltree.order_by('SELECT region, count(*) FROM users GROUP BY 1 ORDER BY count(*) DESC NULLS LAST, "Region"')
    assert [(k.expression, k.descending, k.nulls) for k in keys] == [("count(*)", True, "last"), ('"Region"', False, None)]
    assert sqltree.split("SELECT ';'; -- a comment; with a semicolon\nSELECT 2") == ["SELECT ';'", "SELECT 2"]
    assert sqltree.tables("WITH x AS (SELECT 1) SELECT * FROM x, nb02.users JOIN posts USING (id)") == {"nb02.users",
                                                                                                       "posts"}


def test_sql_queries_and_writes_are_told_apart():
    from workbook_utils.exercises import sqltree

    assert sqltree.is_query("-- users without a profile\n(SELECT count(*) FROM users)")
    assert sqltree.is_query("WITH c AS (SELECT 1) SELECT * FROM c UNION SELECT 2")
    for writes in ["WITH gone AS (DELETE FROM profiles RETURNING 1) SELECT count(*) FROM gone",
                   "SELECT * INTO copy FROM users", "DELETE FROM users"]:
        assert not sqltree.is_query(writes), writes


def test_unreadable_sql_says_what_the_parser_says():
    from workbook_utils.exercises import WrongKind, sqltree

    for text, said in [("SELEC 1", 'syntax error at or near "SELEC"'), ("SELECT 1; SELECT 2", "holds 2"),
                       (42, "not a int"), ("SELECT 1", "give a CREATE INDEX statement, not a SELECT statement")]:
        with pytest.raises(WrongKind, match=said):
            sqltree.index(text)


# ── Interleavings ───────────────────────────────────────────────────────────────────────────────────────────────

def test_schedules_cover_every_prefix_and_order_and_a_draw_keeps_the_full_ring():
    from workbook_utils.exercises.draws import Draw
    from workbook_utils.exercises.interleavings import cycle, every_schedule, schedules

    assert cycle([1, 2, 3, 4], 3) == [(1, 2), (2, 3), (3, 1)]
    scripts = {"s1": ["a1", "a2"], "s2": ["b1", "b2"], "s3": ["c1", "c2"]}
    every = list(every_schedule(scripts))
    assert len({tuple(s) for s in every}) == len(every) == 42  # 8 prefixes × 6 orders, less 6 repeats when all is held
    assert every[0] == [("s1", "a1"), ("s2", "b1"), ("s3", "c1"), ("s1", "a2"), ("s2", "b2"), ("s3", "c2")]
    for steps in every:  # each session's steps stay in its own order
        assert all([step for s, step in steps if s == name] == scripts[name] for name in scripts)
    draw = Draw()
    drawn = schedules(scripts, draw, limit=5)
    assert len(drawn) == 5 and drawn[0] == every[0] and "schedules = 5 of 42" in draw.describe()
    assert schedules(scripts, Draw(draw.seed), limit=5) == drawn


@pytest.fixture(scope="module")
def wb98():
    """A workbook of its own (scratch schema nb98) for the building blocks that need the server."""
    from workbook_utils import setup
    from workbook_utils.exercises import faults

    workbook = setup("98")
    faults.prepare(workbook.url, workbook.schema)
    yield workbook
    workbook.close()
    _sql(workbook, "DROP SCHEMA IF EXISTS nb98 CASCADE")


def _sql(workbook, sql: str) -> None:
    from sqlalchemy import text

    with workbook.engine.begin() as conn:
        conn.execute(text(sql))


TRANSFER = "UPDATE {s}.accounts SET balance = balance + {d} WHERE id = {i}"


def _transfer(schema: str, a: int, b: int, ordered: bool) -> list[str]:
    """Two statements moving 10 from a to b; `ordered` takes the rows' locks lowest id first, as the lesson says."""
    first, second = sorted([(a, -10), (b, 10)]) if ordered else [(a, -10), (b, 10)]
    return [TRANSFER.format(s=schema, i=i, d=d) for i, d in (first, second)]


def test_a_ring_of_three_transfers_deadlocks_where_every_pair_of_them_does_not(wb98):
    from workbook_utils import races
    from workbook_utils.exercises.draws import Draw
    from workbook_utils.exercises.interleavings import cycle, schedules

    _sql(wb98, "DROP TABLE IF EXISTS nb98.accounts; CREATE TABLE nb98.accounts (id int PRIMARY KEY, balance int); "
               "INSERT INTO nb98.accounts SELECT generate_series(1, 3), 100")
    moves = cycle([1, 2, 3], 3)

    def outcomes(scripts: dict[str, list[str]], limit: int) -> set[str]:
        seen: set[str] = set()
        for steps in schedules(scripts, Draw(), limit=limit):
            commits = [(s, "COMMIT", "BLOCKS|ok|40P01") for s in scripts]
            race = races.run(wb98.engine, [(s, sql, "BLOCKS|ok|40P01") for s, sql in steps] + commits, lock_timeout="3s")
            seen |= set(race.steps.outcome)
        return seen

    naive = {f"s{i}": _transfer("nb98", a, b, ordered=False) for i, (a, b) in enumerate(moves, 1)}
    assert "40P01" in outcomes(naive, limit=1)  # the full ring comes first in every draw
    assert "40P01" not in outcomes({"s1": naive["s1"], "s2": naive["s2"]}, limit=3)  # a pair of the ring: no cycle
    ordered = {f"s{i}": _transfer("nb98", a, b, ordered=True) for i, (a, b) in enumerate(moves, 1)}
    assert outcomes(ordered, limit=3) == {"ok"}


def _first_error(engine, isolation: str | None, before: bool):
    """The error a connection meets on its statement `target` (a first statement of its transaction, or not)."""
    from sqlalchemy import exc, text

    engine = engine.execution_options(isolation_level=isolation) if isolation else engine
    try:
        with engine.connect() as conn:
            if before:
                conn.execute(text("SELECT 1"))
            conn.execute(text("SELECT :x AS target"), {"x": 1})
            conn.commit()
    except exc.DBAPIError as error:
        return error
    return None


@pytest.mark.parametrize("sqlstate, sqlalchemy_class, psycopg_class", [
    ("40001", "OperationalError", "SerializationFailure"), ("40P01", "OperationalError", "DeadlockDetected"),
    ("57014", "OperationalError", "QueryCanceled"), ("23505", "IntegrityError", "UniqueViolation")])
def test_injected_errors_are_the_servers_own(wb98, sqlstate, sqlalchemy_class, psycopg_class):
    from workbook_utils.exercises import faults

    for isolation, before in [(None, False), ("REPEATABLE READ", True), ("AUTOCOMMIT", False)]:
        with faults.inject(wb98.engine, wb98.url, "nb98", [sqlstate], match=lambda sql: "target" in sql) as seen:
            error = _first_error(wb98.engine, isolation, before)
        assert (type(error).__name__, type(error.orig).__name__, error.orig.sqlstate) == (
            sqlalchemy_class, psycopg_class, sqlstate), (isolation, before)
        assert seen.errors == [error] and [d.sqlstate for d in seen.done] == [sqlstate]
        real = sqlstate != "40001" or isolation == "REPEATABLE READ" or not before and isolation is None
        assert seen.done[0].genuine is real, (isolation, before, str(error.orig))


def test_a_read_committed_transaction_mid_way_gets_40001_raised_and_is_told_so(wb98):
    from workbook_utils.exercises import faults

    with faults.inject(wb98.engine, wb98.url, "nb98", ["40001"], match=lambda sql: "target" in sql) as seen:
        error = _first_error(wb98.engine, None, before=True)
    assert error.orig.sqlstate == "40001" and "raised by the checker" in str(error.orig) and not seen.done[0].genuine


def test_a_retry_loop_meets_each_injected_error_and_its_sleeps_are_read_not_waited(wb98):
    import time

    from sqlalchemy import exc, text

    from workbook_utils.exercises import faults

    def run_with_retry(engine, attempts=6, backoff=0.5):
        for attempt in range(attempts):
            try:
                with engine.begin() as conn:
                    return conn.execute(text("SELECT 'done' AS target")).scalar_one()
            except (exc.OperationalError, exc.IntegrityError):
                if attempt == attempts - 1:
                    raise
            time.sleep(backoff * 2 ** attempt)
        return None

    plan = ["40001", "40P01", "57014", "23505", None]
    started = time.monotonic()
    with faults.observed_sleep(run_with_retry) as sleeps, \
            faults.inject(wb98.engine, wb98.url, "nb98", plan, match=lambda sql: "target" in sql) as seen:
        assert run_with_retry(wb98.engine) == "done"
    assert [e.orig.sqlstate for e in seen.errors] == plan[:4] and seen.matched == 5
    assert [s.seconds for s in sleeps] == [0.5, 1.0, 2.0, 4.0]
    assert time.monotonic() - started < 3  # 7.5 s of backoff read, not waited (the deadlock costs its timeout)
    assert time.sleep is faults.time.sleep and time.sleep.__module__ == "time"  # restored


def test_observed_sleep_sees_a_sleep_imported_by_name_and_only_the_threads_it_watches():
    import threading
    import time as real_time

    from workbook_utils.exercises import faults

    namespace: dict = {}
    exec("from time import sleep\ndef pause():\n    sleep(30)\n", namespace)
    with faults.observed_sleep(namespace["pause"], note=lambda: "noted",
                               watched=lambda: threading.current_thread().name != "other") as sleeps:
        namespace["pause"]()
        other = threading.Thread(target=real_time.sleep, args=(0.01,), name="other")
        other.start()
        other.join()
    assert [(s.seconds, s.note) for s in sleeps] == [(30, "noted")]
    assert namespace["sleep"] is real_time.sleep


def test_a_reference_run_that_fails_a_claim_is_not_kept():
    """rvh (stop 31): 03 q3's reference, run once on a busy server, failed a claim, and every later check of a right
    answer failed with it. A claim dict is kept only when every claim held; a constant value is kept at once."""
    runs = iter([{"holds": False}, {"holds": True}])
    q = Exercise("q", "?", reference=lambda: next(runs), hint_text="", solution_code="", evaluate=lambda a: a)
    assert q.verdict({"holds": True})[0] == INCORRECT    # judged against the disturbed run, once
    assert q.verdict({"holds": True}) == (CORRECT, None)
    assert q.verdict({"holds": True}) == (CORRECT, None)  # kept: the iterator is spent, and no third run happens
