"""Notebook 02's exercises, run on the notebook's copies of the seeded tables and on a dataset drawn afresh at every
check: reference and printed solutions pass, starters read as not attempted, and answers that meet the letter of a
question but break its lesson (loaders that load nothing, wrong rows, wrong order, ids read off this database,
another session, joined collections, inner joins that drop users) fail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb02

pytestmark = pytest.mark.filterwarnings("ignore:The noload:DeprecationWarning")  # a known-wrong answer
NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "02_n_plus_one_and_eager_loading.ipynb"


@pytest.fixture(scope="module")
def wb02():
    from workbook_utils import setup

    workbook = setup("02")
    engine = workbook.scratch_copy(["users", "profiles", "posts", "comments", "orders"],
                                   indexes=["posts(user_id)", "comments(post_id)", "orders(user_id)"])
    yield workbook, engine
    workbook.close()


@pytest.fixture(scope="module")
def exercises(wb02):
    return nb02.load(*wb02)


def _namespace(**extra):
    from sqlalchemy import select
    from sqlalchemy.orm import Session, joinedload, lazyload, noload, raiseload, selectinload, subqueryload

    from workbook_utils.models import Comment, Post, User

    return {"select": select, "Session": Session, "joinedload": joinedload,
            "lazyload": lazyload, "noload": noload, "raiseload": raiseload, "selectinload": selectinload,
            "subqueryload": subqueryload, "User": User, "Post": Post, "Comment": Comment} | extra


def _define(source: str, **extra):
    """The function `report` that `source` defines (exec'd in a file of its own, so inspect.getsource works)."""
    import linecache

    filename = f"<q1-answer-{abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = _namespace(**extra)
    exec(compile(source, filename, "exec"), namespace)
    return namespace["report"]


def test_nb02_reference_solutions_and_printed_solutions_pass(exercises, capsys):
    from sqlalchemy.orm import joinedload, raiseload

    from workbook_utils.models import User

    q1, q2, q3 = exercises
    assert q1.verdict(nb02.report_reference) == (CORRECT, None)
    assert q2.verdict({"profile": "joinedload", "posts": "selectinload", "orders": "selectinload"}) == (CORRECT, None)
    assert q3.verdict([raiseload("*"), joinedload(User.profile)]) == (CORRECT, None)
    namespace = _namespace(q1=q1, q2=q2, q3=q3)
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb02_other_right_answers_pass(exercises):
    from sqlalchemy.orm import joinedload, raiseload, selectinload, subqueryload

    from workbook_utils.models import User

    q1, q2, q3 = exercises
    for body in ("joinedload(User.posts).joinedload(Post.comments)",       # one statement, unique() needed
                 "subqueryload(User.posts).subqueryload(Post.comments)",
                 "selectinload(User.posts).joinedload(Post.comments)"):
        report = _define("def report(session):\n"
                         "    return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                         f"                           .options({body})).unique().all()\n")
        assert q1.verdict(report) == (CORRECT, None), body
    assert q2.verdict({"profile": joinedload, "posts": subqueryload, "orders": selectinload}) == (CORRECT, None)
    assert q3.verdict([joinedload(User.profile), raiseload(User.posts), raiseload(User.orders),
                       raiseload(User.comments)]) == (CORRECT, None)
    assert q3.verdict([joinedload(User.profile), raiseload("*", sql_only=True)]) == (CORRECT, None)
    assert q3.verdict([selectinload(User.posts), joinedload(User.profile), raiseload("*")])[0] == INCORRECT


def test_nb02_the_starter_reads_as_not_attempted_and_the_notebook_holds_it(exercises):
    """The notebook's q1 answer cell is the starter, right above the cell that checks it."""
    import nbformat

    from workbook_utils import questions

    q1 = exercises[0]
    assert q1.verdict(_define(nb02.Q1_STARTER)) == (NOT_ATTEMPTED, None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    answer, (check, passed) = questions.answer_cell(nb, "q1"), questions.check_cell(nb, "q1")
    assert nb.cells[answer].source.strip() == nb02.Q1_STARTER.strip() and (check, passed) == (answer + 1, {"report"})


Q1_WRONG = {
    # lazy loads inside report: the page works, but 1 + 20 + one per post statements
    "lazy, touched in report": ("users = session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()\n"
                                "    [len(p.comments) for u in users for p in u.posts]\n    return users",
                                "at most 3 statements"),
    "only the first level": ("return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                             "        .options(selectinload(User.posts))).all()", "were loaded by report"),
    "noload fills empty collections": ("return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                                       "        .options(noload(User.posts))).all()", "the posts' comments, item"),
    "comments noloaded": ("return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                          "        .options(selectinload(User.posts).noload(Post.comments))).all()",
                          "the posts' comments, item"),
    "raiseload loads nothing": ("return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                                "        .options(raiseload('*'))).all()", "were loaded by report"),
    "only published posts": ("return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                             "        .options(selectinload(User.posts.and_(Post.published))"
                             ".selectinload(Post.comments))).all()", "the posts' comments, item"),
    "newest by created_at": ("return session.scalars(select(User).order_by(User.created_at.desc()).limit(20)\n"
                             "        .options(selectinload(User.posts).selectinload(Post.comments))).all()",
                             "the posts' comments, item 0"),
    # right on this database (its ids run 1..100), wrong wherever ids are scattered
    "ids read off this database": ("return session.scalars(select(User).where(User.id > 80).order_by(User.id.desc())\n"
                                   "        .options(selectinload(User.posts).selectinload(Post.comments))).all()",
                                   "on a drawn dataset, the users, their posts and the posts' comments"),
    "right users, wrong order": ("return list(reversed(session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                        "        .options(selectinload(User.posts).selectinload(Post.comments))).all()))",
                        "the posts' comments, item 0"),
    # bypassing the ORM: one GROUP BY gives the page's numbers, but no objects
    "a GROUP BY instead of objects": ("from sqlalchemy import func\n"
                                      "    return session.execute(select(User.name, func.count(Post.id))\n"
                                      "        .outerjoin(User.posts).group_by(User.id).order_by(User.id.desc())"
                                      ".limit(20)).all()", "User objects of the session"),
    # a session of its own escapes the statement count and stays open for lazy loads
    "another session": ("other = Session(session.get_bind())\n"
                        "    return other.scalars(select(User).order_by(User.id.desc()).limit(20)).all()",
                        "User objects of the session"),
}


@pytest.mark.parametrize("name", list(Q1_WRONG))
def test_nb02_q1_rejects(exercises, name):
    body, why = Q1_WRONG[name]
    report = _define(f"def report(session):\n    {body}\n")
    status, diff = exercises[0].verdict(report)  # under a fresh draw
    assert status == INCORRECT and why in diff, (name, diff)


def test_nb02_drawn_datasets_are_shaped_as_the_docstring_says():
    import random

    rng = random.Random()
    for _ in range(100):
        shape = nb02.draw_shape(rng)
        ids = shape.users
        newest, busy = ids[-20:], [i for i in ids if i > len(ids) / 20][:20]
        posts = {u: sum(1 for _, owner in shape.posts if owner == u) for u in ids}
        orders = {u: sum(1 for _, owner in shape.orders if owner == u) for u in ids}
        comments = {p: sum(1 for _, post in shape.comments if post == p) for p, _ in shape.posts}
        for group in (newest, busy):
            assert any(u not in shape.profiles for u in group) and any(u in shape.profiles for u in group)
            assert any(posts[u] == 0 for u in group) and any(posts[u] >= 2 and orders[u] >= 2 for u in group)
        assert any(u not in shape.profiles for u in newest[-5:]) and any(u in shape.profiles for u in newest[-5:])
        assert any(n >= 2 for p, n in comments.items() if dict(shape.posts)[p] in newest)
        assert 0 in comments.values() and max(ids) - min(ids) > 100_000
        assert sum(posts[u] for u in newest) < 500  # one IN statement per level: the budget holds for selectinload


def test_nb02_q2_and_q3_reject_answers_that_break_the_lesson(exercises):
    from sqlalchemy.orm import joinedload, lazyload, noload, raiseload, selectinload

    from workbook_utils.models import User

    def inner(attribute):
        return joinedload(attribute, innerjoin=True)

    _, q2, q3 = exercises
    cases = [
        (q2, {"profile": joinedload, "posts": joinedload, "orders": joinedload}, "one row per user"),
        (q2, {"profile": joinedload, "posts": joinedload, "orders": selectinload}, "one row per user"),  # 2 statements
        (q2, {"profile": selectinload, "posts": joinedload, "orders": selectinload}, "one row per user"),
        (q2, {"profile": selectinload, "posts": selectinload, "orders": selectinload}, "at most 3"),
        (q2, {"profile": lazyload, "posts": selectinload, "orders": selectinload}, "at most 3"),
        (q2, {"profile": noload, "posts": selectinload, "orders": selectinload}, "profiles, posts and orders, item"),
        (q2, {"profile": joinedload, "posts": selectinload, "orders": noload}, "profiles, posts and orders, item"),
        (q2, {"profile": inner, "posts": selectinload, "orders": selectinload},  # 20 users, but not 10 and 20
         "profiles, posts and orders, item"),
        (q2, {"profile": raiseload, "posts": selectinload, "orders": selectinload}, "raised InvalidRequestError"),
        (q3, [raiseload("*")], "one statement"),
        (q3, [], "one statement"),
        (q3, [joinedload(User.profile)], "user.posts raised"),
        (q3, [selectinload(User.profile), raiseload("*")], "one statement"),
        (q3, [noload(User.profile), raiseload("*")], "the users and their profiles, item"),
        (q3, [inner(User.profile), raiseload("*")], "profiles, item 0"),     # 5 users, but not 100 (no profile)
        (q3, [joinedload(User.profile), raiseload(User.posts)], "user.orders raised"),
        (q3, [joinedload(User.profile), noload("*")], "user.posts raised"),           # empty, not raising
    ]
    for exercise, wrong, why in cases:
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and why in diff, (exercise.name, wrong, diff)


def test_nb02_q2_says_to_pass_the_loader_not_an_option(exercises):
    from sqlalchemy.orm import joinedload, selectinload

    from workbook_utils.models import User

    q2 = exercises[1]
    status, diff = q2.verdict({"profile": joinedload(User.profile), "posts": selectinload(User.posts),
                               "orders": selectinload(User.orders)})
    assert status == INCORRECT and diff.startswith("for 'profile', pass the loader itself (such as lazyload)"), diff
    assert "running your answer raised" not in diff
    for wrong, why in [({"profile": "joinedload", "posts": "selectin", "orders": "selectinload"}, "for 'posts'"),
                       ({"profile": "joinedload", "posts": "selectinload"}, "keys 'profile', 'posts'"),
                       ([joinedload, selectinload, selectinload], "keys 'profile', 'posts'")]:
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and why in diff and "running your answer raised" not in diff, (wrong, diff)


def test_nb02_failure_messages_name_the_field_not_its_position(exercises):
    """A wrong profile, a missing collection: the message says which field of which user, not "item 0, item 1"."""
    from sqlalchemy.orm import noload, raiseload, selectinload

    from workbook_utils.models import User

    q1, q2, q3 = exercises
    for exercise, wrong, field in [
        (q2, {"profile": noload, "posts": selectinload, "orders": selectinload}, "profile ('none') is not the expected"),
        (q2, {"profile": "joinedload", "posts": selectinload, "orders": noload}, "orders has 0 items"),
        (q3, [noload(User.profile), raiseload("*")], "profile ('none') is not the expected"),
        (q1, _define(f"def report(session):\n    {Q1_WRONG['comments noloaded'][0]}\n"), "comments on the posts has 0 items"),
    ]:
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and re.search(r"item \d+, " + re.escape(field), diff), (exercise.name, diff)


def test_nb02_q3_says_to_pass_a_list_of_options(exercises):
    """A single option, a string, or a loader function in the list: one line saying what is asked, not a traceback."""
    from sqlalchemy.orm import joinedload, raiseload

    from workbook_utils.models import User

    q3 = exercises[2]
    for wrong, why in [(joinedload(User.profile), "pass a list of loader options, e.g. [option, option]"),
                       ("raiseload('*')", "pass a list of loader options, e.g. [option, option]"),
                       ([joinedload(User.profile), raiseload], "item 1 of your list"),
                       ([joinedload(User.profile), "raiseload('*')"], "item 1 of your list")]:
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and diff.startswith(why) and "running your answer raised" not in diff, (wrong, diff)
    assert q3.verdict((joinedload(User.profile), raiseload("*"))) == (CORRECT, None)   # a tuple is a list too


def test_nb02_q1_counts_statements_sent_through_another_engine(wb02, exercises):
    """An N+1 that loads through an engine of its own and fills the collections with set_committed_value."""
    from sqlalchemy.orm.attributes import set_committed_value

    workbook, _ = wb02
    other_engine = workbook.make_engine().execution_options(schema_translate_map={None: workbook.schema})
    report = _define(
        "def report(session):\n"
        "    users = session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()\n"
        "    with Session(other_engine) as other:\n"
        "        for u in users:\n"
        "            posts = other.scalars(select(Post).where(Post.user_id == u.id)"
        ".options(selectinload(Post.comments))).all()\n"
        "            set_committed_value(u, 'posts', posts)\n"
        "    return users\n",
        other_engine=other_engine, set_committed_value=set_committed_value)
    status, diff = exercises[0].verdict(report)
    assert status == INCORRECT and "at most 3 statements" in diff, diff


def test_nb02_q1_rejects_collections_filled_from_another_session(exercises):
    """Loaded in report's session count, but posts of another session put into the users' collections do not."""
    from sqlalchemy.orm.attributes import set_committed_value

    report = _define(
        "def report(session):\n"
        "    users = session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()\n"
        "    other = Session(session.get_bind())\n"
        "    posts = other.scalars(select(Post).where(Post.user_id.in_([u.id for u in users]))"
        ".options(selectinload(Post.comments))).all()\n"
        "    for u in users:\n"
        "        set_committed_value(u, 'posts', [p for p in posts if p.user_id == u.id])\n"
        "    return users\n", set_committed_value=set_committed_value)
    status, diff = exercises[0].verdict(report)
    assert status == INCORRECT and diff.startswith("your code queried through another session than the one it was "
                                                   "given"), diff


def test_nb02_checkers_still_judge_after_wb_close(wb02, exercises):
    """A learner who goes back after the last cell (wb.close()): counting works, wrong answers still fail."""
    from sqlalchemy.orm import joinedload, raiseload, selectinload

    from workbook_utils.models import User

    workbook, _ = wb02
    q1, q2, q3 = exercises
    workbook.close()
    assert q1.verdict(nb02.report_reference) == (CORRECT, None)
    workbook.close()  # closed again (the last cell run twice)
    n_plus_one = _define(f"def report(session):\n    {Q1_WRONG['lazy, touched in report'][0]}\n")
    assert q1.verdict(n_plus_one)[0] == INCORRECT
    assert q2.verdict({"profile": joinedload, "posts": joinedload, "orders": joinedload})[0] == INCORRECT
    assert q3.verdict([raiseload("*")])[0] == INCORRECT
    assert q2.verdict({"profile": joinedload, "posts": selectinload, "orders": selectinload}) == (CORRECT, None)
    assert q3.verdict([joinedload(User.profile), raiseload("*")]) == (CORRECT, None)
