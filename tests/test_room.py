"""The facilitator's view: a learner runs notebook 00 through their URL, and `workbook room` shows what they did.

On the second server (the distribution's PostgreSQL, tests/second_server.py) where it is installed, as on a shared
server: the facilitator's DATABASE_URL names its admin. Without it, on the embedded server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import psycopg
import pytest

from workbook_utils import config, db, learners, outcomes, room, urls
from workbook_utils.exercises import Exercise, Unmet, WrongKind
from workbook_utils.exercises.claims import claim_of
from workbook_utils.exercises.nb00 import Q1_SQL
from workbook_utils.notebook_files import execute, notebook_paths

PREFIX = "roomnb"
ANSWERS = {"q1.check(____)": f"q1.check({Q1_SQL!r})",  # solved
           "q2.check(____)": 'q2.check("SELECT region, count(*) FROM users GROUP BY region LIMIT 1")'}  # tried


@pytest.fixture(scope="module")
def learner_urls(room_server, tmp_path_factory) -> dict[str, str]:
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
        made = learners.provision(3, prefix=PREFIX, out=tmp_path_factory.mktemp("room") / "learners.csv", scale="tiny",
                                  force=room_server.cluster is None, say=lambda _: None)  # the embedded one is small
    yield {lr.name: lr.url for lr in made}
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)


def workbook_room(room_server) -> str:
    result = subprocess.run([sys.executable, "-m", "workbook_utils.cli", "room", "--prefix", PREFIX],
                            capture_output=True, text=True, timeout=60, env=room_server.admin_env())  # the facilitator
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_learner_runs_notebook_00_and_the_room_shows_their_outcomes(learner_urls, room_server, tmp_path):
    assert "not started: roomnb01, roomnb02, roomnb03" in workbook_room(room_server)
    path = next(p for p in notebook_paths() if p.name.startswith("00_"))
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for blank, answer in ANSWERS.items():
            cell.source = cell.source.replace(blank, answer)
    answered = tmp_path / path.name
    nbformat.write(nb, answered)
    env = {**os.environ, "DATABASE_URL": learner_urls[f"{PREFIX}01"]}  # the learner's own role, an ordinary one
    executed = execute(answered, timeout=300, env=env)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "✅ q1: correct." in printed and "❌ q2: not yet" in printed
    shown = workbook_room(room_server)
    row = next(line for line in shown.splitlines() if line.startswith(f"{PREFIX}01"))
    header = shown.splitlines()[0].split()
    assert header == ["00/q1", "00/q2"] and row.split()[1:] == [room.MARKS[room.SOLVED], room.MARKS[room.TRIED]]
    assert "stuck on: 00/q2 (1 learner)" in shown and "not started: roomnb02, roomnb03" in shown
    with db.connect(room_server.admin_url()) as admin:
        left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [f"{PREFIX}01"]).fetchone()[0]
    assert left == 0, "the learner's notebook left sessions behind"


def test_records_count_attempts_and_stay_solved(learner_urls):
    with psycopg.connect(learner_urls[f"{PREFIX}02"], autocommit=True) as conn:
        for solved in (False, True, False):
            outcomes.record(conn, "04", "q9", solved)
        row = conn.execute("SELECT status, attempts, first_attempt < last_attempt, solved_at IS NOT NULL "
                           "FROM _workbook.outcomes WHERE notebook = '04' AND exercise = 'q9'").fetchone()
    assert row == ("solved", 3, True, True)
    with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):  # nobody else's records to read
        psycopg.connect(urls.with_database(learner_urls[f"{PREFIX}02"], f"{PREFIX}03"), connect_timeout=5)


def test_recording_never_fails_the_learners_check(scratch_db, monkeypatch, capsys):
    q = Exercise(name="q1", question="1 + 1?", reference=lambda: 2, hint_text="", solution_code="")
    monkeypatch.setenv("DATABASE_URL", scratch_db)  # no marker schema there: nothing to record into
    q.check(2)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # no server at all
    q.check(3)
    assert capsys.readouterr().out.splitlines() == ["✅ q1: correct.", "❌ q1: not yet — your answer is too high. "
                                                                      "Try q1.hint()."]
    with db.connect(scratch_db) as conn:
        assert conn.execute("SELECT to_regnamespace('_workbook')").fetchone()[0] is None


def test_the_facilitator_notebook_draws_the_room(learner_urls, room_server):
    with psycopg.connect(learner_urls[f"{PREFIX}03"], autocommit=True) as conn:
        outcomes.record(conn, "00", "q3", solved=True)
    path = config.project_root() / "facilitator" / "room.ipynb"
    assert not any(c.get("outputs") for c in nbformat.read(path, as_version=4).cells), "committed without outputs"
    executed = execute(path, timeout=120, env={**room_server.admin_env(), "WORKBOOK_ROOM_PREFIX": PREFIX})
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the heatmap and solved over time
    printed = "".join(o.get("text", "") for o in outputs)
    assert f"{PREFIX}03" in printed and "00/q3" in printed


def test_a_lock_on_the_outcomes_table_does_not_hold_the_learners_check(learner_urls, monkeypatch, capsys):
    """Another session (a second kernel, psql) holding the table must not hang the learner's cell: bounded, dropped."""
    url = learner_urls[f"{PREFIX}03"]
    q = Exercise(name="q7", question="1 + 1?", reference=lambda: 2, hint_text="", solution_code="")
    monkeypatch.setenv("DATABASE_URL", url)
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE _workbook.outcomes IN ACCESS EXCLUSIVE MODE")
        started = time.perf_counter()
        q.check(2)
        waited = time.perf_counter() - started
    assert capsys.readouterr().out == "✅ q7: correct.\n"
    assert waited < 10, f"the check waited {waited:.1f} s for the lock"  # bound: lock_timeout, statement_timeout
    with psycopg.connect(url) as conn:  # the attempt was dropped, not queued for later
        assert conn.execute("SELECT count(*) FROM _workbook.outcomes WHERE exercise = 'q7'").fetchone()[0] == 0

SECRET = "postgresql://roomnb01:hunter2@db.example:5432/x"  # what an answer might hold and nothing may record


def test_the_room_says_which_part_of_the_claim_failed_and_records_none_of_the_answer(learner_urls, room_server,
                                                                                    monkeypatch, capsys):
    """Two learners break the same part of a claim, one another part; the room groups them, and no byte of the answers'
    code (nor a URL or password in it) is in the learners' databases."""

    def evaluate(answer):
        if "deadlock" in answer.__doc__:
            raise Unmet(f"for 3 transactions {answer.__doc__!r}: “no deadlock in any interleaving” does not hold")
        raise WrongKind(f"your code ({answer.__doc__!r}) sleeps", claim="no time.sleep in a retry")

    def cycle():
        """deadlock: UPDATE accounts SET x = 1 -- postgresql://roomnb01:hunter2@db.example:5432/x"""

    def sleepy():
        """time.sleep(1) -- postgresql://roomnb01:hunter2@db.example:5432/x"""

    q = Exercise(name="q8", question="?", reference=lambda: None, hint_text="", solution_code="", evaluate=evaluate)
    for learner, answers in {"01": [cycle, cycle], "03": [cycle, sleepy]}.items():
        monkeypatch.setenv("DATABASE_URL", learner_urls[f"{PREFIX}{learner}"])
        for answer in answers:
            q.check(answer)
    assert "hunter2" in capsys.readouterr().out  # the learner is shown their own answer's words …
    shown = workbook_room(room_server)
    assert "  test_room/q8: no deadlock in any interleaving: 2 learners" in shown
    assert "  test_room/q8: no time.sleep in a retry: 1 learner" in shown
    for learner in ("01", "03"):  # … and nothing of them is kept
        with psycopg.connect(learner_urls[f"{PREFIX}{learner}"]) as conn:
            kept = conn.execute("SELECT string_agg(c::text, ' ') FROM _workbook.claims c").fetchone()[0] + \
                conn.execute("SELECT string_agg(o::text, ' ') FROM _workbook.outcomes o").fetchone()[0]
        assert "deadlock in any" in kept and not any(word in kept for word in ("hunter2", "UPDATE", "example", "sleep(1)"))


@pytest.mark.parametrize(("message", "claim"), [
    ("for 4 clients, pool 3: “the pool never waits” does not hold [drawn: size=7; q1.check(answer, seed=5) draws "
     "the same]", "the pool never waits"),
    ("running your answer raised UndefinedColumn: column \"secret\" does not exist", "running the answer raised "
     "UndefinedColumn"),
    ("your answer ('SELECT password FROM t') is not the expected value", "your answer is not the expected value"),
    ("your answer has 12 items; the expected result has 10", "your answer has N items"),
    ("for 'posts', pass a loader such as joinedload or selectinload (got: 'lazy')",
     "for, pass a loader such as joinedload or selectinload"),
    ("rows, item 3 is too high", "rows, item N is too high"),
    ("pass your function f itself (without calling it), not a int", "pass your function f itself"),
])
def test_a_claim_label_keeps_the_checkers_words_only(message, claim):
    assert claim_of(message) == claim


PLANT = """
CREATE TABLE public.planted (who text, via text);
CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted VALUES (current_user, 'search_path'); RETURN pg_catalog.to_regclass($1); END $$;
CREATE FUNCTION public.spy() RETURNS SETOF _workbook.outcomes LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted VALUES (current_user, 'view'); RETURN; END $$;
ALTER TABLE _workbook.outcomes RENAME TO outcomes_real;
CREATE VIEW _workbook.outcomes AS SELECT * FROM public.spy();
ALTER DATABASE {db} SET search_path = public, pg_catalog"""
UPROOT = """ALTER DATABASE {db} RESET search_path; DROP VIEW _workbook.outcomes;
ALTER TABLE _workbook.outcomes_real RENAME TO outcomes; DROP FUNCTION public.spy(), public.to_regclass(text);
DROP TABLE public.planted"""


def test_the_admin_runs_none_of_the_code_a_learner_plants_in_their_database(learner_urls, room_server):
    """A learner owns their database: a search_path or a view set there must not run as the admin who reads it."""
    name = f"{PREFIX}02"
    with psycopg.connect(learner_urls[name], autocommit=True) as conn:
        conn.execute(PLANT.format(db=name))
    try:
        row = next(line for line in workbook_room(room_server).splitlines() if line.startswith(name))
        owner = learners._database_owner(room_server.admin_url(), name)  # what provision and --drop ask first
        with psycopg.connect(learner_urls[name]) as conn:
            ran = conn.execute("SELECT who, via FROM public.planted WHERE who <> current_user").fetchall()
        assert ran == [], f"the learner's code ran as {ran}"
        assert "unreachable:" in row and "outcomes" in row  # the facilitator is told, nothing is read
        assert owner is None  # tampered with: provision refuses it, --drop leaves it (and says so, once)
        said: list[str] = []
        with room_server.as_admin():
            learners.drop(PREFIX, say=said.append)  # this module's last test: the others go, the fixture drops the rest
        assert [line for line in said if name in line] == [
            f"  left alone: database {name} and role {name} (no readable marker of the workbook's for {name})"]
        assert said[-1] == "dropped 2 databases and 2 roles"
    finally:
        with psycopg.connect(learner_urls[name], autocommit=True) as conn:
            conn.execute(UPROOT.format(db=name))
