"""Exercises of notebook 02 (N+1 and eager loading): a statement budget, choosing loaders, making lazy loads raise.

Each checker reads what the ORM really did, not only how many statements it sent: which attributes are loaded,
what they contain (a loader that loads nothing, such as `noload`, fills an empty collection or None), which
session the objects came from, and how many rows each statement returned. Statements are counted on every
engine of the process (an `Engine` class listener), so loading through an engine of one's own still counts.

Every answer runs twice: on the notebook's copies of the seeded tables, and on a dataset drawn afresh for each check
and shaped differently (ids scattered over a wide range; users without posts, profiles or orders; posts without
comments; collections of several rows next to each other), in temporary tables of the checker's own session.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import Question, WrongKind
from .draws import Draw

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

BUDGET = 3
LOADERS = ("joinedload", "selectinload", "subqueryload", "immediateload", "lazyload", "noload", "raiseload")
SEEDED, DRAWN = "on this database", "on a drawn dataset"

Q1_STARTER = '''def report(session):
    """The 20 users with the highest ids (highest first), for page(): their posts and the posts' comments."""
    return session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()
'''

Q1 = Question(
    name="q1",
    text=f"report(session) returns the 20 users with the highest ids; page(users) then shows each one's posts and the "
         f"comments on them, after the request's session has closed. Change report so that it sends at most {BUDGET} "
         "statements and returns those same User objects with everything page() reads already loaded (keep its "
         "query: same users, same order). The checker runs it here and on a dataset drawn afresh for each check.",
    shape="`def report(session)` returning the list of `User` objects, defined in the cell below; the cell after it "
          "runs it and calls `q1.check(report)`.",
    hint_text="Loader options chain along a path, one level after the other; which loader suits a collection?",
    solution_code="def report(session):\n"
                  "    return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                  "                           .options(selectinload(User.posts).selectinload(Post.comments))).all()\n\n"
                  "q1.check(report)",
    discussion="Why it works: `selectinload(User.posts).selectinload(Post.comments)` loads each level with one `IN` "
               "query over the keys of the level above. That is 3 statements while each level has at most 500 keys "
               "(the default `chunksize` of an `IN` list), and every collection is filled before the session closes.\n"
               "Common wrong answers:\n"
               "- loading the first level only: each post's comments still load one by one, or fail once the session "
               "is gone;\n"
               "- `noload` or `raiseload`: they load nothing (empty collections, or errors);\n"
               "- touching the collections inside report: the right page, after 1 + N + M statements;\n"
               "- filtering the posts (`User.posts.and_(…)`): the collections hold some of the posts.")
Q2 = Question(
    name="q2",
    text="Load 20 busy users with their profile (one-to-one; some have none), posts and orders (two collections). "
         "Choose a loader for each: the loader itself (such as lazyload), not an option built from it "
         f"(lazyload(User.posts)), since the checker applies it. At most {BUDGET} statements may be sent, and the "
         "users' own statement must return one row per user. Every user must come back with the right profile (or "
         "None), posts and orders, here and on a dataset drawn afresh for each check.",
    shape="a dict of the three loaders: `q2.check({'profile': <loader>, 'posts': <loader>, 'orders': <loader>})`.",
    hint_text="A one-to-one joins without multiplying rows; a joined collection repeats its parent's row per child.",
    solution_code="q2.check({'profile': joinedload, 'posts': selectinload, 'orders': selectinload})",
    discussion="Why it works: a one-to-one `joinedload` adds the profile's columns to the users' own rows, and its "
               "LEFT OUTER JOIN keeps the users without one. Each collection gets its own `selectinload` statement: "
               "3 statements, one row per user.\n"
               "Common wrong answers:\n"
               "- `joinedload` on a collection: each user's row repeated once per post, and again per order;\n"
               "- `selectinload` for all three: a fourth statement;\n"
               "- `joinedload(…, innerjoin=True)` for the profile: the users without one vanish;\n"
               "- `noload`: empty collections that look loaded (and `noload` is deprecated since SQLAlchemy 2.1).")
Q3 = Question(
    name="q3",
    text="Give the loader options (a list) for select(User) that load the users and their profiles (or None) in one "
         "statement. Touching any other relationship of a user (posts, orders, comments) must then raise instead of "
         "sending a query. The checker also loads users of a dataset drawn afresh for each check.",
    shape="a list of loader options: `q3.check([<option>, <option>, …])`.",
    hint_text="One option loads the profile in the users' statement; a wildcard makes every other lazy load raise.",
    solution_code="q3.check([joinedload(User.profile), raiseload('*')])",
    discussion="Why it works: `joinedload(User.profile)` puts the profile in the users' statement. `raiseload('*')` "
               "covers every relationship the query does not load eagerly, so a lazy load fails at the line that "
               "touched it instead of sending a query. `raiseload('*', sql_only=True)` passes too: it lets through only "
               "loads the identity map serves without SQL.\n"
               "Common wrong answers:\n"
               "- `raiseload('*')` alone: the profile raises too;\n"
               "- `selectinload(User.profile)`: a second statement;\n"
               "- `noload('*')`: nothing raises, and empty collections look loaded;\n"
               "- naming the relationships one by one, and missing one.")
QUESTIONS = (Q1, Q2, Q3)


@dataclass(frozen=True)
class Shape:
    """A drawn dataset: user ids, the users with a profile, and (id, owner) of each post, comment and order."""

    users: list[int]
    profiles: list[int]
    posts: list[tuple[int, int]]
    comments: list[tuple[int, int]]
    orders: list[tuple[int, int]]

    def __str__(self) -> str:
        return (f"{len(self.users)} users (ids {min(self.users)}…{max(self.users)}), {len(self.posts)} posts, "
                f"{len(self.comments)} comments, {len(self.orders)} orders")


def draw_shape(rng: random.Random) -> Shape:
    """Users scattered over a wide range of ids; among the 20 newest and the 20 'busy' ones, users without posts,
    profiles or orders, and users with several posts and several orders; posts with no comment and with several."""
    ids = sorted(rng.sample(range(1, 1_000_000), rng.randint(30, 60)))
    newest, busy = ids[-20:], [i for i in ids if i > len(ids) / 20][:20]  # q1's and q2's users (see _busy_users)
    profiles = {u for u in ids if rng.random() < 0.6} - {newest[-1], busy[0]}  # some without, in every selection
    profiles |= {newest[-2], busy[1]}
    n_posts = {u: rng.choice([0, 0, 1, 2, 3, 5, 8]) for u in ids}
    n_orders = {u: rng.choice([0, 1, 2, 3]) for u in ids}
    for group in (newest, busy):  # a user without posts, and one with several posts and several orders
        n_posts[group[2]], (n_posts[group[3]], n_orders[group[3]]) = 0, (rng.randint(2, 6), rng.randint(2, 4))
    post_ids = iter(rng.sample(range(1, 10_000_000), sum(n_posts.values())))
    posts = [(next(post_ids), u) for u in ids for _ in range(n_posts[u])]
    per_post = {p: rng.choice([0, 0, 1, 2, 4]) for p, _ in posts}
    per_post[next(p for p, u in posts if u == newest[3])] = 3  # a post of a newest user with several comments
    comment_ids = iter(rng.sample(range(1, 10_000_000), sum(per_post.values())))
    comments = [(next(comment_ids), p) for p, _ in posts for _ in range(per_post[p])]
    order_ids = iter(rng.sample(range(1, 10_000_000), sum(n_orders.values())))
    orders = [(next(order_ids), u) for u in ids for _ in range(n_orders[u])]
    return Shape(ids, sorted(profiles), posts, comments, orders)


DRAWN_TABLES = ["users", "profiles", "posts", "comments", "orders"]
LOAD = [
    """INSERT INTO users (id, email, name, region, created_at)
       SELECT id, 'drawn' || id || '@example.com', 'Drawn ' || id, 'eu', '2025-01-01 00:00+00'
       FROM unnest(%(users)s::bigint[]) AS id""",
    """INSERT INTO profiles (user_id, display_name) SELECT id, 'drawn ' || id FROM unnest(%(profiles)s::bigint[]) AS id""",
    """INSERT INTO posts (id, user_id, title, body, created_at)
       SELECT id, user_id, 'a drawn post', 'text', '2025-01-01 00:00+00'
       FROM unnest(%(post_ids)s::bigint[], %(post_users)s::bigint[]) AS t(id, user_id)""",
    """INSERT INTO comments (id, post_id, user_id, body, created_at)
       SELECT id, post_id, (%(users)s::bigint[])[1], 'a drawn comment', '2025-01-01 00:00+00'
       FROM unnest(%(comment_ids)s::bigint[], %(comment_posts)s::bigint[]) AS t(id, post_id)""",
    """INSERT INTO orders (id, user_id, product_id, quantity, total, status, created_at)
       SELECT id, user_id, 1, 1, 9.99, 'paid', '2025-01-01 00:00+00'
       FROM unnest(%(order_ids)s::bigint[], %(order_users)s::bigint[]) AS t(id, user_id)""",
]


def drawn_engine(wb: Workbook) -> Engine:
    """An engine whose one pooled session holds the drawn dataset in temporary tables (the ORM's tables map to
    pg_temp: a session of another connection finds no such tables, loudly)."""
    engine = wb.make_engine(pool_size=1, max_overflow=4, pool_timeout=5)
    return engine.execution_options(schema_translate_map={None: "pg_temp"})


def load_shape(engine: Engine, shape: Shape) -> None:
    """Fill the checker's session's temporary tables with the drawn rows (created on the session's first use)."""
    params = {"users": shape.users, "profiles": shape.profiles,
              "post_ids": [p for p, _ in shape.posts], "post_users": [u for _, u in shape.posts],
              "comment_ids": [c for c, _ in shape.comments], "comment_posts": [p for _, p in shape.comments],
              "order_ids": [o for o, _ in shape.orders], "order_users": [u for _, u in shape.orders]}
    with engine.begin() as conn:
        for table in DRAWN_TABLES:
            conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {table} "
                                 f"(LIKE public.{table} INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.exec_driver_sql(f"TRUNCATE {', '.join(DRAWN_TABLES)}")
        for sql in LOAD:
            conn.exec_driver_sql(sql, params)


def both(engine: Engine, drawn: Engine, draw: Draw, verdicts: list[Callable[[Engine], dict[str, Any]]]
         ) -> list[dict[str, Any]]:
    """Each of `verdicts` on the notebook's copies of the seeded tables, then on a drawn dataset (the reference's
    first: it runs before a learner's code can break anything)."""
    from sqlalchemy.exc import DBAPIError

    outs: list[dict[str, Any]] = [{SEEDED: verdict(engine)} for verdict in verdicts]
    load_shape(drawn, draw.pick("dataset", draw_shape, show=str))
    try:
        for out, verdict in zip(outs, verdicts, strict=True):
            out[DRAWN] = verdict(drawn)
    except DBAPIError as error:  # the drawn tables are temporary: another connection does not have them
        if getattr(error.orig, "sqlstate", None) == "42P01" and "pg_temp." in str(error.orig):
            raise WrongKind("your code queried through another session than the one it was given (on the drawn "
                            "dataset, which lives in that session only, it found no tables)") from None
        raise
    return outs


def _counted(engine: Engine, work: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Run work(session) on `engine`; (its result, the statements it and any other engine sent meanwhile)."""
    from sqlalchemy.engine import Engine as AnyEngine
    from sqlalchemy.orm import Session

    from ..measure import capture_sql

    with Session(engine) as session, capture_sql(AnyEngine) as captured:
        result = work(session)
    return result, captured


def report_reference(session: Any) -> list[Any]:
    """Reference for q1: both levels loaded up front, in 3 statements."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from ..models import Post, User

    return session.scalars(select(User).order_by(User.id.desc()).limit(20)
                           .options(selectinload(User.posts).selectinload(Post.comments))).all()


def _loaded(user: Any, session: Any) -> bool:
    """True if user.posts and every post's comments are in memory (reading them needs no query), as objects of
    `session` (a collection filled from another session's objects was loaded outside the statement count)."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import object_session

    if "posts" in inspect(user).unloaded:
        return False
    posts = list(user.posts)
    if any("comments" in inspect(p).unloaded or object_session(p) is not session for p in posts):
        return False
    return all(object_session(c) is session for p in posts for c in p.comments)


def report_verdict(engine: Engine, report: Callable[[Any], Any]) -> dict[str, Any]:
    """Run report(session), close the session, then read what page() needs from the objects it returned."""
    from sqlalchemy.engine import Engine as AnyEngine
    from sqlalchemy.orm import Session, object_session

    from ..measure import capture_sql
    from ..models import User

    with Session(engine) as session, capture_sql(AnyEngine) as sent:  # every engine: one of its own counts too
        users = list(report(session))
        own = all(isinstance(u, User) and object_session(u) is session for u in users)
        loaded = own and all(_loaded(u, session) for u in users)
    # read after the session has closed: nothing can load lazily any more
    contents = [{"user id": u.id, "posts": sorted(p.id for p in u.posts),
                 "comments on the posts": sorted(c.id for p in u.posts for c in p.comments)}
                for u in users] if loaded else None
    return {"report returns the User objects of the session it is given": own,
            f"at most {BUDGET} statements": sent.count <= BUDGET,
            "every user's posts and their comments were loaded by report": loaded,
            "the users, their posts and the posts' comments": contents}


def _busy_users() -> Any:
    """20 users with many posts (the seed gives low ids the most), a few of them without a profile (every 10th)."""
    from sqlalchemy import func, select

    from ..models import User

    return (select(User).where(User.id > select(func.count()).select_from(User).scalar_subquery() / 20)
            .order_by(User.id).limit(20))


def _loaders(choice: Any) -> dict[str, Any]:
    """The three loader functions of the answer (a name or the function), or WrongKind saying what is asked."""
    from sqlalchemy import orm

    if not isinstance(choice, dict) or set(choice) != {"profile", "posts", "orders"}:
        raise WrongKind("pass a dict with the keys 'profile', 'posts' and 'orders', each naming a loader")
    loaders = {}
    for name, chosen in choice.items():
        if isinstance(chosen, orm.interfaces.LoaderOption):
            raise WrongKind(f"for {name!r}, pass the loader itself (such as lazyload), not an option built from it "
                            f"(lazyload(User.{name})): the checker applies it to the relationship")
        function = getattr(orm, chosen) if isinstance(chosen, str) and chosen in LOADERS else chosen
        if not callable(function):
            raise WrongKind(f"for {name!r}, pass a loader such as joinedload or selectinload (got: {chosen!r})")
        loaders[name] = function
    return loaders


def _profile(user: Any) -> str:
    """The user's profile as a failure message can name it: whose it is, or 'none'."""
    return "none" if user.profile is None else f"the profile of user {user.profile.user_id}"


def _options(answer: Any) -> list[Any]:
    """q3's answer as a list of loader options, or WrongKind saying what is asked."""
    from sqlalchemy.sql.base import ExecutableOption

    if not isinstance(answer, (list, tuple)):
        raise WrongKind(f"pass a list of loader options, e.g. [option, option] (got: {type(answer).__name__})")
    for i, option in enumerate(answer):
        if not isinstance(option, ExecutableOption):
            raise WrongKind(f"item {i} of your list ({option!r}) is not a loader option: build one for a relationship, "
                            "as in lazyload(User.posts)")
    return list(answer)


def loaders_verdict(engine: Engine, loaders: dict[str, Any]) -> dict[str, Any]:
    """Load the busy users with the chosen loaders for profile, posts and orders; statements, rows, contents."""
    from ..models import User

    def work(session: Any) -> list[Any]:
        options = [loaders["profile"](User.profile), loaders["posts"](User.posts), loaders["orders"](User.orders)]
        users = session.scalars(_busy_users().options(*options)).unique().all()
        return [{"user id": u.id, "profile": _profile(u), "posts": sorted(p.id for p in u.posts),
                 "orders": sorted(o.id for o in u.orders)} for u in users]

    contents, sent = _counted(engine, work)
    return {f"at most {BUDGET} statements": sent.count <= BUDGET,
            "the users' statement returned one row per user (nothing multiplied)": sent.rowcounts[:1] == [len(contents)],
            "the users with their profiles, posts and orders": contents}


def raise_verdict(engine: Engine, options: list[Any]) -> dict[str, Any]:
    """Load the 5 highest-id users with these options; profiles in the same statement, other relationships raise?"""
    from sqlalchemy import select
    from sqlalchemy.engine import Engine as AnyEngine
    from sqlalchemy.exc import InvalidRequestError

    from ..measure import capture_sql
    from ..models import User

    def touch(users: list[Any], name: str) -> int | None:
        """Statements sent while reading `name` of every user, or None if reading it raised."""
        with capture_sql(AnyEngine) as touched:
            try:
                [getattr(u, name) for u in users]
            except InvalidRequestError:
                return None
        return touched.count

    def work(session: Any) -> dict[str, Any]:
        with capture_sql(AnyEngine) as loading:
            users = session.scalars(select(User).order_by(User.id.desc()).limit(5).options(*options)).unique().all()
        together = loading.count == 1 and touch(users, "profile") == 0
        profiles = [{"user id": u.id, "profile": _profile(u)} for u in users] if together else None
        return {"users and profiles came in one statement": together, "the users and their profiles": profiles} | {
            f"touching user.{name} raised": touch(users, name) is None for name in ("posts", "orders", "comments")}

    return _counted(engine, work)[0]


def load(wb: Workbook, engine: Engine) -> tuple[Any, Any, Any]:
    """q1, q2, q3 of notebook 02, on the notebook's scratch copies (`engine`) and a dataset drawn at each check."""
    from sqlalchemy.orm import joinedload, raiseload, selectinload

    from ..models import User

    _ = wb.engine  # the notebook's own engine first: wb.engine must never be the checker's engine below
    drawn = drawn_engine(wb)

    def checker(verdict: Callable[[Engine, Any], dict[str, Any]], solution: Any,
                given: Callable[[Any], Any] = lambda answer: answer) -> dict[str, Any]:
        """reference and evaluate of one exercise: the answer runs beside the reference, on the same datasets."""

        def evaluate(answer: Any, draw: Draw) -> dict[str, Any]:
            answer = given(answer)  # WrongKind before anything runs
            draw.memo["expected"], got = both(engine, drawn, draw, [lambda e: verdict(e, solution),
                                                                    lambda e: verdict(e, answer)])
            return got

        def reference(draw: Draw) -> dict[str, Any]:
            if "expected" not in draw.memo:
                draw.memo["expected"] = both(engine, drawn, draw, [lambda e: verdict(e, solution)])[0]
            return draw.memo["expected"]

        return {"reference": reference, "evaluate": evaluate, "drawn": True}

    q1 = Q1.exercise(**checker(report_verdict, report_reference), starter=Q1_STARTER)
    q2 = Q2.exercise(**checker(loaders_verdict, {"profile": joinedload, "posts": selectinload, "orders": selectinload},
                               given=_loaders))
    q3 = Q3.exercise(**checker(raise_verdict, [joinedload(User.profile), raiseload("*")], given=_options))
    return q1, q2, q3
