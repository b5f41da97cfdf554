"""Exercises of notebook 02 (N+1 and eager loading): a statement budget, choosing loaders, making lazy loads raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

BUDGET = 3


def _counted(wb: Workbook, engine: Engine, work: Callable[[Any], Any]) -> tuple[Any, int, int]:
    """Run work(session) on `engine`; (its result, statements sent, rows the server returned)."""
    from sqlalchemy.orm import Session

    from ..measure import capture_sql

    with Session(engine) as session, capture_sql(wb.engine) as captured:
        result = work(session)
    return result, captured.count, captured.rows


def report_reference(session: Any) -> list[tuple[str, int, int]]:
    """Reference for q1: both levels loaded up front, in 3 statements."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from ..models import Post, User

    users = session.scalars(select(User).order_by(User.id.desc()).limit(20)
                            .options(selectinload(User.posts).selectinload(Post.comments))).all()
    return [(u.name, len(u.posts), sum(len(p.comments) for p in u.posts)) for u in users]


def budget_verdict(wb: Workbook, engine: Engine, report: Callable[[Any], Any]) -> dict[str, Any]:
    result, statements, _ = _counted(wb, engine, report)
    return {f"at most {BUDGET} statements": statements <= BUDGET, "the report": result}


def loaders_verdict(wb: Workbook, engine: Engine, choice: dict[str, Any]) -> dict[str, bool]:
    """Load 20 busy users with profile, posts and orders using the chosen loaders; count statements and rows."""
    from sqlalchemy import func, orm, select

    from ..models import User

    def loader(name: str) -> Any:
        chosen = choice[name]
        return getattr(orm, chosen) if isinstance(chosen, str) else chosen

    def work(session: Any) -> int:
        busy = (select(User).where(User.id > select(func.count()).select_from(User).scalar_subquery() / 20)
                .order_by(User.id).limit(20)
                .options(loader("profile")(User.profile), loader("posts")(User.posts), loader("orders")(User.orders)))
        users = session.scalars(busy).unique().all()
        return len(users) + sum((u.profile is not None) + len(u.posts) + len(u.orders) for u in users)

    objects, statements, rows = _counted(wb, engine, work)
    return {f"at most {BUDGET} statements": statements <= BUDGET,
            "no more rows than objects (nothing multiplied)": rows <= objects}


def raise_verdict(wb: Workbook, engine: Engine, options: list[Any]) -> dict[str, bool]:
    """Load 5 users with these options: is the profile there without a query, and does touching posts raise?"""
    from sqlalchemy import select
    from sqlalchemy.exc import InvalidRequestError

    from ..models import User

    def work(session: Any) -> dict[str, bool]:
        users = session.scalars(select(User).order_by(User.id.desc()).limit(5).options(*options)).unique().all()
        return {"user.profile was loaded with the users": touch(users, "profile") == 0,
                "touching user.posts raised": touch(users, "posts") is None}

    def touch(users: list[Any], name: str) -> int | None:
        """Statements sent while reading `name` of every user, or None if reading it raised."""
        from ..measure import capture_sql

        with capture_sql(wb.engine) as touched:
            try:
                [getattr(u, name) for u in users]
            except InvalidRequestError:
                return None
        return touched.count

    return _counted(wb, engine, work)[0]


def load(wb: Workbook, engine: Engine) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 02, on the notebook's scratch copies (`engine`)."""
    from sqlalchemy.orm import joinedload, raiseload, selectinload

    from ..models import User

    q1 = Exercise(
        name="q1",
        question=f"report(session) lists the 20 newest users with their number of posts and of comments on those "
                 f"posts. It sends 1 + 20 + (one per post) statements. Make it send at most {BUDGET}, same result.",
        reference=lambda: budget_verdict(wb, engine, report_reference),
        hint_text="Chain the loaders along the path: .options(selectinload(User.posts).selectinload(Post.comments)).",
        solution_code="def report(session):\n"
                      "    users = session.scalars(select(User).order_by(User.id.desc()).limit(20)\n"
                      "                            .options(selectinload(User.posts).selectinload(Post.comments))).all()\n"
                      "    return [(u.name, len(u.posts), sum(len(p.comments) for p in u.posts)) for u in users]\n\n"
                      "q1.check(report)",
        evaluate=lambda report: budget_verdict(wb, engine, report),
    )
    q2 = Exercise(
        name="q2",
        question=f"Loading 20 busy users with their profile (one-to-one), posts and orders (two collections): choose "
                 f"a loader for each (joinedload, selectinload, …) so that at most {BUDGET} statements are sent and "
                 "the server sends no more rows than objects are built.",
        reference=lambda: loaders_verdict(wb, engine, {"profile": joinedload, "posts": selectinload,
                                                       "orders": selectinload}),
        hint_text="A one-to-one joins without multiplying rows; two joined collections multiply each other.",
        solution_code="q2.check({'profile': joinedload, 'posts': selectinload, 'orders': selectinload})",
        evaluate=lambda choice: loaders_verdict(wb, engine, choice),
    )
    q3 = Exercise(
        name="q3",
        question="Give the loader options (a list) for select(User) so that each user's profile is loaded with "
                 "the users, and touching user.posts raises instead of sending a query.",
        reference=lambda: raise_verdict(wb, engine, [joinedload(User.profile), raiseload("*")]),
        hint_text="Combine an eager loader for User.profile with raiseload for everything else: raiseload('*').",
        solution_code="q3.check([joinedload(User.profile), raiseload('*')])",
        evaluate=lambda options: raise_verdict(wb, engine, options),
    )
    return q1, q2, q3
