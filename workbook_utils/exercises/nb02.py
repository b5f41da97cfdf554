"""Exercises of notebook 02 (N+1 and eager loading): a statement budget, choosing loaders, making lazy loads raise.

Each checker reads what the ORM really did, not only how many statements it sent: which attributes are loaded,
what they contain (a loader that loads nothing, such as `noload`, fills an empty collection or None), which
session the objects came from, and how many rows each statement returned. Statements are counted on every
engine of the process (an `Engine` class listener), so loading through an engine of one's own still counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise, WrongKind

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

BUDGET = 3
LOADERS = ("joinedload", "selectinload", "subqueryload", "immediateload", "lazyload", "noload", "raiseload")

Q1_STARTER = '''def report(session):
    """The 20 users with the highest ids (highest first), for page(): their posts and the posts' comments."""
    return session.scalars(select(User).order_by(User.id.desc()).limit(20)).all()
'''


def _counted(wb: Workbook, engine: Engine, work: Callable[[Any], Any]) -> tuple[Any, Any]:
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


def report_verdict(wb: Workbook, engine: Engine, report: Callable[[Any], Any]) -> dict[str, Any]:
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
    contents = [(u.id, sorted(p.id for p in u.posts), sorted(c.id for p in u.posts for c in p.comments))
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


def loaders_verdict(wb: Workbook, engine: Engine, choice: dict[str, Any]) -> dict[str, Any]:
    """Load the busy users with the chosen loaders for profile, posts and orders; statements, rows, contents."""
    from sqlalchemy import orm

    from ..models import User

    if not isinstance(choice, dict) or set(choice) != {"profile", "posts", "orders"}:
        raise WrongKind("pass a dict with the keys 'profile', 'posts' and 'orders', each naming a loader")

    def loader(name: str) -> Any:
        chosen = choice[name]
        if isinstance(chosen, orm.interfaces.LoaderOption):
            raise WrongKind(f"for {name!r}, pass the loader itself, e.g. joinedload, not joinedload(User.{name}): "
                            "the checker applies it to the relationship")
        function = getattr(orm, chosen) if isinstance(chosen, str) and chosen in LOADERS else chosen
        if not callable(function):
            raise WrongKind(f"for {name!r}, pass a loader such as joinedload or selectinload (got: {chosen!r})")
        return function

    def work(session: Any) -> list[Any]:
        options = [loader("profile")(User.profile), loader("posts")(User.posts), loader("orders")(User.orders)]
        users = session.scalars(_busy_users().options(*options)).unique().all()
        return [(u.id, u.profile.user_id if u.profile is not None else None, sorted(p.id for p in u.posts),
                 sorted(o.id for o in u.orders)) for u in users]

    contents, sent = _counted(wb, engine, work)
    return {f"at most {BUDGET} statements": sent.count <= BUDGET,
            "the users' statement returned one row per user (nothing multiplied)": sent.rowcounts[:1] == [len(contents)],
            "the users with their profiles, posts and orders": contents}


def raise_verdict(wb: Workbook, engine: Engine, options: list[Any]) -> dict[str, Any]:
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
        profiles = [(u.id, u.profile.user_id if u.profile is not None else None) for u in users] if together else None
        return {"users and profiles came in one statement": together, "the users and their profiles": profiles} | {
            f"touching user.{name} raised": touch(users, name) is None for name in ("posts", "orders", "comments")}

    return _counted(wb, engine, work)[0]


def load(wb: Workbook, engine: Engine) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 02, on the notebook's scratch copies (`engine`)."""
    from sqlalchemy.orm import joinedload, raiseload, selectinload

    from ..models import User

    q1 = Exercise(
        name="q1",
        question=f"report(session) returns the 20 users with the highest ids; page(users) then shows each one's "
                 f"posts and the comments on them, after the request's session has closed. Change report so that "
                 f"it sends at most {BUDGET} statements and returns those same User objects with everything page() "
                 "reads already loaded (keep its query: same users, same order).",
        reference=lambda: report_verdict(wb, engine, report_reference),
        hint_text="Loader options chain along a path, one level after the other; which loader suits a collection?",
        solution_code="def report(session):\n"
                      "    return session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                      "                           .options(selectinload(User.posts).selectinload(Post.comments))).all()\n\n"
                      "q1.check(report)",
        evaluate=lambda report: report_verdict(wb, engine, report),
        starter=Q1_STARTER,
    )
    q2 = Exercise(
        name="q2",
        question=f"Load 20 busy users (some have no profile) with their profile (one-to-one), posts and orders "
                 f"(two collections): choose a loader for each, the loader itself (joinedload, selectinload, …, "
                 f"not joinedload(User.profile): the checker applies it) so that at most {BUDGET} "
                 "statements are sent, the users' own statement returns one row per user, and every user comes back "
                 "with the right profile (or None), posts and orders.",
        reference=lambda: loaders_verdict(wb, engine, {"profile": joinedload, "posts": selectinload,
                                                       "orders": selectinload}),
        hint_text="A one-to-one joins without multiplying rows; a joined collection repeats its parent's row per child.",
        solution_code="q2.check({'profile': joinedload, 'posts': selectinload, 'orders': selectinload})",
        evaluate=lambda choice: loaders_verdict(wb, engine, choice),
    )
    q3 = Exercise(
        name="q3",
        question="Give the loader options (a list) for select(User) so that the users and their profiles (or None) "
                 "arrive in one statement, and touching any other relationship of a user (posts, orders, comments) "
                 "raises instead of sending a query.",
        reference=lambda: raise_verdict(wb, engine, [joinedload(User.profile), raiseload("*")]),
        hint_text="One option loads the profile in the users' statement; a wildcard makes every other lazy load raise.",
        solution_code="q3.check([joinedload(User.profile), raiseload('*')])",
        evaluate=lambda options: raise_verdict(wb, engine, options),
    )
    return q1, q2, q3
