"""Per-request query metrics and a small app to watch: the library copies of what notebook 08 writes out (§1, §5).

`count_queries` + `track_requests` are note N7 of the errata: listeners registered once per engine, per-request
stats in a `contextvars` variable, an `X-DB-Query-Count` header. `feed_app` is the app notebook 08's dashboard
and exercise watch: one endpoint with an N+1, its eager-loading fix, and two others.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

_request_stats: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("db_stats", default=None)


def count_queries(engine: Engine) -> Callable[[], None]:
    """Add every statement of `engine` to the current request's stats (taught in notebook 08 §1); returns a remover."""

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("query_start", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        elapsed = time.perf_counter() - conn.info["query_start"].pop()
        if (stats := _request_stats.get()) is not None:
            stats["queries"] += 1
            stats["db_seconds"] += elapsed

    def failed(context) -> None:  # a failing statement never reaches after_cursor_execute
        if context.connection is not None and context.connection.info.get("query_start"):
            context.connection.info["query_start"].pop()

    listeners = [("before_cursor_execute", before), ("after_cursor_execute", after), ("handle_error", failed)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    return lambda: [event.remove(engine, name, listener) for name, listener in listeners]


def track_requests(app: FastAPI) -> None:
    """Middleware: fresh stats per request in the context variable, reported as X-DB-Query-Count / X-DB-Time-Ms."""

    @app.middleware("http")
    async def db_metrics(request, call_next):
        stats = {"queries": 0, "db_seconds": 0.0}
        token = _request_stats.set(stats)
        try:
            response = await call_next(request)
        finally:
            _request_stats.reset(token)
        response.headers["X-DB-Query-Count"] = str(stats["queries"])
        response.headers["X-DB-Time-Ms"] = f"{stats['db_seconds'] * 1000:.3f}"
        return response


def feed_app(engine: Engine, paths: dict[str, str] | None = None) -> FastAPI:
    """A FastAPI app with query metrics: `user` (1 query), `feed` (N+1: 1 + limit), `feed_eager` (2), `stats` (8).

    Every endpoint returns {"items": n}. `paths` renames the endpoints (an exercise hides which is which).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session, selectinload

    from .models import Comment, Order, Post, Product, Profile, User

    paths = {"user": "/user", "feed": "/feed", "feed_eager": "/feed-eager", "stats": "/stats", **(paths or {})}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        remove = count_queries(engine)  # once, at startup
        yield
        remove()

    app = FastAPI(lifespan=lifespan)
    track_requests(app)

    @app.get(paths["user"])
    def user(id: int = 1) -> dict[str, Any]:
        with Session(engine) as session:
            return {"items": int(session.get(User, id) is not None)}

    @app.get(paths["feed"])
    def feed(limit: int = 5) -> dict[str, Any]:
        with Session(engine) as session:
            users = session.scalars(select(User).order_by(User.id).limit(limit)).all()
            return {"items": len(users), "posts": sum(len(u.posts) for u in users)}  # a lazy load per user

    @app.get(paths["feed_eager"])
    def feed_eager(limit: int = 5) -> dict[str, Any]:
        with Session(engine) as session:
            users = session.scalars(select(User).options(selectinload(User.posts)).order_by(User.id)
                                    .limit(limit)).all()
            return {"items": len(users), "posts": sum(len(u.posts) for u in users)}

    @app.get(paths["stats"])
    def stats() -> dict[str, Any]:
        with Session(engine) as session:
            counts = [session.scalar(select(func.count()).select_from(m))
                      for m in (User, Profile, Post, Comment, Order, Product)]
            counts += [session.scalar(select(func.count()).select_from(Post).where(Post.published)),
                       session.scalar(select(func.max(Order.id)))]
            return {"items": len(counts)}

    return app
