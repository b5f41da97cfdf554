"""Notebook 00's exercises: reference solutions pass, known-wrong answers fail, ____ is not attempted.

The known-wrong answers are the ones a learner writes: a number copied from an earlier output, a rule read off
the seed script, the right count of the wrong rows, a tie broken the other way (or not at all), a filter that
only holds at one scale, and SQL text where a select() is asked for.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, literal_column, select, table, text

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb00
from workbook_utils.models import Post, Profile, User


@pytest.fixture(scope="module")
def wb():
    from workbook_utils import setup

    workbook = setup("00")
    yield workbook
    workbook.close()


@pytest.fixture(scope="module")
def questions(wb):
    return nb00.load(wb)


def seeded(wb, sql: str):
    """A value read off the seeded data, as a learner would copy it from an output."""
    return wb.query(sql).iloc[0].tolist()


def test_nb00_reference_solutions_pass(questions):
    q1, q2, q3 = questions
    for exercise in (q1, q2):  # the printed solution is itself a correct check call
        answers = []
        exec(exercise.solution_code, {exercise.name: type("Capture", (), {"check": staticmethod(answers.append)})})
        assert exercise.verdict(answers[0]) == (CORRECT, None), exercise.name
    exec_globals: dict = {}
    exec(q3.solution_code, exec_globals)
    assert q3.verdict(exec_globals["answer"]) == (CORRECT, None)


@pytest.mark.parametrize("made_up", [nb00.MadeUp(1), nb00.MadeUp(3, [13, 16, 18]), nb00.MadeUp(10, list(range(13, 33)))],
                         ids=["1 pair, all with a profile", "3 pairs, 3 without", "10 pairs, none with a profile"])
def test_nb00_made_up_dataset_is_what_its_comment_says(wb, made_up):
    """Independent of the references: the answers worked out by hand from the made-up rows."""
    q1, q2, q3 = nb00.load(wb, made_up)
    n = len(made_up.without_profile)
    assert q1.expected[nb00.MADE_UP] == 4 + n                    # users 2, 5, 7, 11 (not user 10), and the drawn ones
    assert q2.expected[nb00.MADE_UP] == [("apac", 4 + made_up.pairs)]  # apac and us tie, each gets one of a pair
    assert q3.expected[nb00.MADE_UP] == [(9, 6), (4, 5), (3, 3), (8, 3), (11, 3)]  # user 12 is cut by the tie


def test_nb00_the_made_up_dataset_is_drawn_at_random():
    draws = {(d.pairs, tuple(d.without_profile)) for d in (nb00.MadeUp.draw() for _ in range(50))}
    assert len(draws) > 10 and all(1 <= pairs <= 10 and all(13 <= i < 13 + 2 * pairs for i in ids)
                                   for pairs, ids in draws)
    assert len({4 + len(ids) for _, ids in draws}) > 5  # q1's answer on it is not one number a query could hard-code
    avoided = [nb00.MadeUp.draw(seeded=(10, 7)) for _ in range(200)]  # never the seeded answers: a copy never passes
    assert all(d.q1 != 10 and d.q2 != 7 for d in avoided) and len({d.q1 for d in avoided}) > 5


def test_nb00_the_made_up_answers_never_equal_the_seeded_ones(wb):
    """Drawn for this database: q1's and q2's counts on the made-up data differ from those on the seeded data."""
    seeded_q1 = seeded(wb, nb00.Q1_SQL)[0]
    seeded_q2 = seeded(wb, nb00.Q2_SQL)[1]
    for _ in range(20):
        q1, q2, _ = nb00.load(wb)
        assert q1.expected[nb00.MADE_UP] != seeded_q1 and q2.expected[nb00.MADE_UP][0][1] != seeded_q2


@pytest.mark.parametrize("answer", [
    "SELECT region, count(*) AS n FROM users GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    "WITH c AS (SELECT region, count(*) AS n FROM users GROUP BY region) "
    "SELECT region, n FROM c ORDER BY n DESC, region FETCH FIRST 1 ROW ONLY",
])
def test_nb00_q2_other_correct_answers_pass(questions, answer):
    assert questions[1].verdict(answer) == (CORRECT, None)


@pytest.mark.parametrize("answer", [
    "SELECT count(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE p.user_id IS NULL",
    "SELECT count(*) FROM users WHERE id NOT IN (SELECT user_id FROM profiles)",
    "  select count(*) from users where not exists (select from profiles where user_id = users.id);",
    "-- users without a profile\n(SELECT count(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE p IS NULL)",
    select(func.count()).select_from(User).where(~select(Profile.user_id).where(Profile.user_id == User.id).exists()),
])
def test_nb00_q1_other_correct_answers_pass(questions, answer):
    assert questions[0].verdict(answer) == (CORRECT, None)


def test_nb00_q1_known_wrong_answers_fail(wb, questions):
    q1 = questions[0]
    copied = seeded(wb, "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)")[0]
    for wrong in [copied, str(copied),                                            # the number, not the query
                  f"SELECT {copied}",                                             # the number, dressed as a query
                  "SELECT count(*) FROM users WHERE id % 10 = 0",                 # the seed's rule, not the data
                  "SELECT count(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.id "
                  "WHERE p.website IS NULL",                                      # right shape, wrong rows
                  "SELECT count(*) FROM profiles",                                # the users that have one
                  "SELECT u.id FROM users u LEFT JOIN profiles p ON p.user_id = u.id "
                  "WHERE p.user_id IS NULL",                                      # the rows, not their count
                  f"SELECT CASE WHEN (SELECT count(*) FROM users) = 12 THEN 4 ELSE {copied} END"]:  # spots the made-up
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and diff, wrong


@pytest.mark.parametrize("answer", [
    "SELECT count(*)::numeric FROM users u WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)",
    "SELECT sum(CASE WHEN p.user_id IS NULL THEN 1 ELSE 0 END) FROM users u LEFT JOIN profiles p ON p.user_id = u.id",
])
def test_nb00_q1_a_decimal_count_is_a_number(questions, answer):
    assert questions[0].verdict(answer) == (CORRECT, None)


def test_nb00_q1_hard_coding_the_made_up_answer_fails(wb):
    """Even knowing how the made-up dataset is drawn, a query that spots it cannot know its answer."""
    copied = seeded(wb, "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)")[0]
    cheat = f"SELECT CASE WHEN (SELECT count(*) FROM users) < 40 THEN 4 ELSE {copied} END"
    verdicts = [nb00.load(wb, made_up)[0].verdict(cheat)[0]
                for made_up in (nb00.MadeUp(2), nb00.MadeUp(2, [14]), nb00.MadeUp(5, [13, 20]))]
    assert verdicts == ["correct", INCORRECT, INCORRECT]  # right only when no drawn user lacks a profile


def test_nb00_q2_known_wrong_answers_fail(wb, questions):
    q2 = questions[1]
    region, n = seeded(wb, "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC, region LIMIT 1")
    by_count = "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) {} LIMIT 1"
    for wrong in [region,                                                          # the answer, not the query
                  f"SELECT '{region}', {n}",                                       # copied from an output
                  by_count.format("DESC"),                                         # a tie left to chance
                  by_count.format("DESC, region DESC"),                            # a tie broken the other way
                  by_count.format(", region"),                                     # the fewest users
                  "SELECT region FROM users GROUP BY region ORDER BY count(*) DESC, region LIMIT 1",  # no count
                  "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC, region"]:  # every region
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and diff, wrong


def test_nb00_q3_known_wrong_answers_fail(wb, questions):
    q3 = questions[2]
    top = [r[0] for r in wb.query("SELECT user_id FROM posts GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 5")
           .itertuples(index=False)]
    per_user = select(Post.user_id, func.count()).group_by(Post.user_id)
    for wrong in [
        "SELECT user_id, count(*) FROM posts GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 5",  # a string
        per_user.order_by(func.count().desc()).limit(5),                       # a tie left to chance
        per_user.order_by(func.count().desc(), Post.user_id.desc()).limit(5),  # a tie broken the other way
        per_user.order_by(func.count(), Post.user_id).limit(5),                # the fewest posts
        per_user.order_by(Post.user_id).limit(5),                              # the smallest ids: busiest at the seed
        per_user.where(Post.user_id.in_(top)).order_by(func.count().desc(), Post.user_id),  # ids copied from an output
        select(User.id, func.count(Post.id)).join(Post).join(Profile, Profile.user_id == User.id)  # users with a profile
        .group_by(User.id).order_by(func.count(Post.id).desc(), User.id).limit(5),
    ]:
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and diff, wrong


def test_nb00_q3_rejects_sql_text_inside_select(questions):
    q3 = questions[2]
    raw = (select(text("user_id, count(*)")).select_from(text("posts")).group_by(text("user_id"))
           .order_by(text("count(*) desc, user_id")).limit(5))
    for wrong in [raw,
                  select(Post.user_id, func.count()).select_from(text("posts")).group_by(Post.user_id)
                  .order_by(func.count().desc(), Post.user_id).limit(5),
                  select(literal_column("user_id"), literal_column("count(*)")).select_from(table("posts"))
                  .group_by(literal_column("user_id")).order_by(literal_column("count(*) desc, user_id")).limit(5),
                  ]:
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and diff.startswith("build the query from the models"), diff


def test_nb00_q3_accepts_a_join_through_users(questions):
    answer = (select(User.id, func.count(Post.id)).join(Post).group_by(User.id)
              .order_by(func.count(Post.id).desc(), User.id).limit(5))
    assert questions[2].verdict(answer) == (CORRECT, None)


def test_nb00_answers_leave_nothing_behind(wb, questions):
    """The made-up dataset lives in temporary tables of a session that ends; a query that writes is rolled back."""
    q1 = questions[0]
    before = seeded(wb, "SELECT count(*) FROM profiles")
    assert q1.verdict("WITH gone AS (DELETE FROM profiles RETURNING 1) SELECT count(*) FROM gone")[0] == INCORRECT
    assert seeded(wb, "SELECT count(*) FROM profiles") == before
    assert seeded(wb, "SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
                             "AND relname IN ('users', 'profiles', 'posts')") == [0]


def test_placeholder_is_not_attempted(questions, capsys):
    q1, _, q3 = questions
    assert q1.verdict(____) == (NOT_ATTEMPTED, None)
    assert q3.verdict([____]) == (NOT_ATTEMPTED, None)
    q1.check(____)
    assert "not attempted" in capsys.readouterr().out


def test_nb00_checkers_still_judge_after_wb_close(wb, questions):
    """A learner who goes back after the last cell (wb.close()): the checkers still run and still judge."""
    q1, _, q3 = questions
    wb.close()
    assert q1.verdict("SELECT count(*) FROM users WHERE id % 10 = 0")[0] == INCORRECT
    assert q1.verdict(nb00.Q1_SQL) == (CORRECT, None)
    assert q3.verdict(select(Post.user_id, func.count()).group_by(Post.user_id).order_by(Post.user_id).limit(5))[0] \
        == INCORRECT
