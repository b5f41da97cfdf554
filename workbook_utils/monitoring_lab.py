"""The harness of notebook 08 (monitoring): threads, bursts, samplers and staged waits, kept out of its lesson cells.

Each function drives an app or a session the notebook defines and hands back what the notebook asserts and charts:
overlapping requests held together by a barrier (§1), statements cancelled on one pooled connection (§2), a burst
of requests while gauges are sampled, and a health check waiting on a lock while a ping is sent (§3), a workload
from client threads and the difference of two `pg_stat_statements` snapshots (§4), the dashboard (§5).
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from . import charts, db

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

    from .workbook import Workbook


TABLES = """
    DROP TABLE IF EXISTS nb08.visits, nb08.counters;
    CREATE TABLE nb08.visits (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, path text NOT NULL);
    CREATE TABLE nb08.counters (id int PRIMARY KEY, n int NOT NULL);
    INSERT INTO nb08.counters SELECT g, 0 FROM generate_series(1, 200) g"""


def create_tables(wb: Workbook) -> None:
    """Notebook 08's scratch tables, as its first cell makes them: `visits` (empty) and `counters` (200 rows of 0)."""
    with wb.engine.begin() as conn:
        conn.execute(text(TABLES))


def _client(app: FastAPI, **kwargs: Any) -> Any:
    """Starlette's TestClient for `app` (its notice about httpx silenced: it works the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, **kwargs)


def add_visit_and_work(app: FastAPI, engine: Engine, barrier: threading.Barrier | None = None) -> FastAPI:
    """`POST /visits` (one INSERT) and `GET /work?n=…` (n statements; all requests meet at `barrier` after the first)."""
    @app.post("/visits")
    def record_visit() -> dict[str, bool]:
        with Session(engine) as session:
            session.execute(text("INSERT INTO visits (path) VALUES ('/visits')"))
            session.commit()
        return {"ok": True}

    @app.get("/work")
    def work(n: int) -> dict[str, int]:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            if barrier is not None:
                barrier.wait()  # every request is in flight here
            for _ in range(n - 1):
                session.execute(text("SELECT count(*) FROM counters"))
        return {"sent": n}
    return app


def add_boom(app: FastAPI, engine: Engine) -> FastAPI:
    """`GET /boom`: one statement, then an exception in the endpoint."""
    @app.get("/boom")
    def boom() -> None:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
        raise RuntimeError("a bug in the endpoint")
    return app


def overlapping_counts(make_app: Callable[[threading.Barrier], FastAPI], sizes: Iterable[int],
                       visits: Callable[[], int]) -> tuple[pd.Series, int]:
    """Overlapping `GET /work?n=…` requests, one per size: the X-DB-Query-Count each got back; then the rows one
    `POST /visits` inserted."""
    import pandas as pd

    sizes = list(sizes)
    barrier = threading.Barrier(len(sizes), timeout=10)
    headers: dict[int, int] = {}
    with _client(make_app(barrier)) as client:
        def call(n: int) -> None:
            headers[n] = int(client.get("/work", params={"n": n}).headers["X-DB-Query-Count"])
        threads = [threading.Thread(target=call, args=(n,)) for n in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        before = visits()
        client.post("/visits")
        inserted = visits() - before
    return pd.Series(headers), inserted


def slow_and_cancelled(wb: Workbook, installs: dict[str, Callable[[Engine], Any]], log: logging.Logger
                       ) -> dict[str, tuple[list[str], int]]:
    """Per entry of `installs`, all at once (a thread and an engine each): a fast, a slow and two cancelled statements
    on one pooled connection with that entry's listeners; the lines `log` got from it, and the start times left."""
    records = logging.handlers.BufferingHandler(capacity=1000)
    log.handlers[:] = [records]
    outcome: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            outcome[name] = _four_statements(wb, installs[name])
        except Exception as error:   # raised below, in the caller's thread
            outcome[name] = error

    threads = [threading.Thread(target=run, args=(name,), name=f"slow log: {name}") for name in installs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if late := [name for name in installs if name not in outcome]:
        raise TimeoutError(f"the slow-query log of {late[0]!r} did not finish in 30 s (statement_timeout is 250 ms)")
    if failed := [o for o in outcome.values() if isinstance(o, Exception)]:
        raise failed[0]
    return {name: ([r.getMessage() for r in records.buffer if r.threadName == f"slow log: {name}"], outcome[name])
            for name in installs}


def _four_statements(wb: Workbook, install: Callable[[Engine], Any]) -> int:
    """SELECT 1, a 0.15 s sleep and two sleeps cancelled after 250 ms on an engine with `install`'s listeners; the
    start times left on its connection."""
    logged = wb.make_engine(pool_size=1, connect_args={"options": "-c statement_timeout=250ms"})
    install(logged)
    with logged.connect() as conn:
        conn.execute(text("SELECT 1"))
        conn.execute(text("SELECT pg_sleep(:s)"), {"s": 0.15})
        for _ in range(2):
            try:
                conn.execute(text("SELECT pg_sleep(:s)"), {"s": 5})  # cancelled after 250 ms
            except Exception:
                conn.rollback()
        left = len(conn.info.get("query_start_time", conn.info.get("query_start", [])))
    logged.dispose()
    return left


def hold_app(engine: Engine, registry: Any, release: threading.Event) -> FastAPI:
    """`GET /hold` keeps a connection of `engine` until `release` is set; `GET /metrics` exposes `registry`."""
    from fastapi import FastAPI, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI()

    @app.get("/hold")
    def hold() -> dict[str, bool]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            release.wait(10)
        return {"ok": True}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return app


def burst(apps: dict[str, tuple[FastAPI, Any]], engine: Engine, release: threading.Event, gauges: list[str],
          requests: int = 10, busy: int = 8) -> tuple[pd.DataFrame, str, dict[str, dict[str, Any]]]:
    """`requests` calls of `/hold` (one every 20 ms) on the last app while every app's gauges are sampled every 50 ms;
    once `busy` connections are out: the last app's /metrics text and each app's gauge values. Then all released."""
    import pandas as pd

    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append({"t": time.perf_counter() - t0,
                            **{f"{g[8:]} ({label})": registry.get_sample_value(g)
                               for label, (_, registry) in apps.items() for g in gauges}})

    release.clear()
    clients = [_client(app) for app, _ in apps.values()]
    for c in clients:
        c.__enter__()
    try:
        client = clients[-1]
        sampler = threading.Thread(target=sample)
        sampler.start()
        calls = [threading.Thread(target=client.get, args=("/hold",)) for _ in range(requests)]
        for call in calls:
            call.start()
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while engine.pool.checkedout() < busy and time.monotonic() < deadline:
            time.sleep(0.05)
        exposition = client.get("/metrics").text
        values = {label: {g: registry.get_sample_value(g) for g in gauges} for label, (_, registry) in apps.items()}
        time.sleep(0.05)  # a plateau on the chart
        release.set()
        for call in calls:
            call.join(10)
        time.sleep(0.05)
        stop.set()
        sampler.join(5)
    finally:
        release.set()
        for c in reversed(clients):
            c.__exit__(None, None, None)
    return pd.DataFrame(samples).set_index("t"), exposition, values


def ping_while_health_waits(app: FastAPI, libpq: str, app_name: str) -> dict[str, Any]:
    """Lock nb08.visits, call `/health` (which reads it), then `/ping`: did the ping answer while /health waited?"""
    results: dict[str, Any] = {}
    with _client(app) as client, \
            db.connect(libpq, autocommit=False, application_name=app_name) as locker, \
            db.connect(libpq, application_name=app_name) as observer:  # autocommit: each look sees the server anew
        locker.execute("LOCK TABLE nb08.visits IN ACCESS EXCLUSIVE MODE")
        health = threading.Thread(target=lambda: results.update(health=client.get("/health").json()))
        health.start()
        waiting: list[int] = []
        deadline = time.monotonic() + 5
        while not waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = [pid for (pid,) in observer.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)) "
                "AND datname = current_database() AND usename = current_user", [locker.info.backend_pid]).fetchall()]
        ping = threading.Thread(target=lambda: results.update(ping=client.get("/ping").text))
        ping.start()
        ping.join(0.75)  # a free event loop answers at once (~10-50 ms through the TestClient, more on a busy machine)
        results["ping answered while /health waited"] = not ping.is_alive()
        results["/health was waiting"] = bool(waiting)
        locker.rollback()  # the "database" recovers
        health.join(10)
        ping.join(10)
    return results


def run_workload(app: FastAPI, engine: Engine, calls: Iterable[str], clients: int = 4) -> tuple[pd.DataFrame, pd.Series]:
    """Every call once, from `clients` threads: one row per request (path, items, queries, ms, end), and the pool's
    connections in use sampled every 50 ms."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    pool_use: list[tuple[float, int]] = []
    queue, stop, lock = list(calls), threading.Event(), threading.Lock()
    with _client(app) as client:
        t0 = time.perf_counter()

        def client_loop() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    call = queue.pop()
                started = time.perf_counter()
                response = client.get(call)
                rows.append({"path": call.split("?")[0], "items": response.json()["items"],
                             "queries": int(response.headers["X-DB-Query-Count"]),
                             "ms": (time.perf_counter() - started) * 1000, "end": time.perf_counter() - t0})

        def sampler() -> None:
            while not stop.wait(0.05):
                pool_use.append((time.perf_counter() - t0, engine.pool.checkedout()))

        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        watcher = threading.Thread(target=sampler)
        for t in [*threads, watcher]:
            t.start()
        for t in threads:
            t.join(60)
        stop.set()
        watcher.join(5)
    return pd.DataFrame(rows), pd.Series(dict(pool_use), name="connections in use")


def difference(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two `pg_stat_statements` snapshots (queryid, calls, total_exec_time, query): what ran in between, with
    `calls`, `total ms` and `mean ms`."""
    statements = after.merge(before, on="queryid", how="left", suffixes=("", "_before")).fillna(
        {"calls_before": 0, "total_exec_time_before": 0})
    statements["calls"] -= statements["calls_before"]
    statements["total ms"] = statements["total_exec_time"] - statements["total_exec_time_before"]
    statements = statements[statements["calls"] > 0].copy()
    statements["mean ms"] = statements["total ms"] / statements["calls"]
    return statements


def dead_tuples(wb: Workbook, table: str = "nb08.counters") -> int:
    """n_dead_tup of `table`, read in a new transaction (the statistics views are a snapshot per transaction)."""
    return int(wb.query("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)", t=table)
               ["n_dead_tup"][0])


def vacuum(wb: Workbook, table: str = "nb08.counters") -> None:
    """VACUUM `table` (outside a transaction, on a session of the notebook's application name)."""
    from psycopg import sql

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(*table.split("."))))


def dashboard(requests: pd.DataFrame, pool_use: pd.Series, top: pd.DataFrame | None, pool_size: int = 4) -> Any:
    """The §5 dashboard: requests, statements per request and p95 latency per endpoint; statements against items;
    connections in use; the top statement by total time (`top` None: pg_stat_statements is not available)."""
    import matplotlib.pyplot as plt

    by_path = requests.groupby("path")
    fig, axes = plt.subplots(2, 3, figsize=(13, 6))
    colors = [charts.FAILING if p == "/feed" else charts.FIXED for p in by_path.size().index]
    panels = [("requests", by_path.size()), ("statements per request (mean)", by_path["queries"].mean()),
              ("p95 latency (ms)", by_path["ms"].quantile(0.95))]
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        ax.barh(values.index, values.to_numpy(), color=colors)
        ax.set_title(title, loc="left", fontsize=10)
    for path, group in by_path:
        axes[1, 0].plot(group["items"], group["queries"], "o", label=path,
                        color=charts.FAILING if path == "/feed" else None)
    axes[1, 0].set(title="statements vs items returned", xlabel="items", ylabel="statements")
    axes[1, 0].legend(fontsize=7, frameon=False)
    axes[1, 1].step(pool_use.index, pool_use.to_numpy(), where="post", color=charts.FIXED)
    axes[1, 1].set(title=f"connections in use (pool of {pool_size})", xlabel="seconds", ylim=(0, pool_size + 0.5))
    if top is not None:
        first = top.iloc[0]
        axes[1, 2].text(0, 0.9, "top statement by total time", fontsize=10, transform=axes[1, 2].transAxes)
        axes[1, 2].text(0, 0.5, f"{first['label'][:45]}\n{first['label'][45:]}\n{first['calls']:.0f} calls, "
                        f"{first['total ms']:.1f} ms in all", fontsize=8, transform=axes[1, 2].transAxes, va="center")
    else:
        axes[1, 2].text(0, 0.5, "pg_stat_statements is not available here", fontsize=9)
    axes[1, 2].axis("off")
    for ax in axes.flat:
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"Synthetic workload: {len(requests)} requests from 4 clients", x=0.01, ha="left")
    fig.tight_layout()
    return fig


def checkout_burst(use: Callable[[], Any], threads: int = 6, timeout: float = 10) -> list[str]:
    """`threads` threads that call `use()` at the same moment (a barrier): each one's outcome, "ok" or the name
    of the exception it raised."""
    barrier = threading.Barrier(threads, timeout=timeout)
    outcomes: list[str] = []

    def one() -> None:
        barrier.wait()
        try:
            use()
            outcomes.append("ok")
        except Exception as error:
            outcomes.append(type(error).__name__)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout)
    return outcomes


def running_query(engine: Engine, libpq: str, sql: str, timeout: float = 10) -> str:
    """Run `sql` on a connection of `engine`; the text `pg_stat_activity.query` showed for it while it ran (§1's
    OpenTelemetry comment, read by an observer session in a thread)."""
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        seen: list[str] = []

        def observe() -> None:
            with db.connect(libpq) as observer:
                deadline = time.monotonic() + timeout
                while not seen and time.monotonic() < deadline:
                    row = observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
                                           "AND datname = current_database() AND usename = current_user",
                                           [pid]).fetchone()
                    if row and "pg_stat_activity" not in row[0] and "pg_backend_pid" not in row[0]:
                        seen.append(row[0])
                    time.sleep(0.02)

        watcher = threading.Thread(target=observe)
        watcher.start()
        conn.execute(text(sql))
        watcher.join(timeout)
    return seen[0] if seen else ""


def logged_parameters(url: str, log_file: Any, value: str, max_length: int) -> list[str]:
    """One statement bound to `value`, logged by `log_min_duration_statement = 0` with `log_parameter_max_length =
    max_length` (this transaction only): the server log's lines for it (§2's redaction; `url` may SET both)."""
    marker = f"nb08-redact-{time.time_ns()}"
    start = log_file.stat().st_size
    with db.connect(url, autocommit=False) as conn:
        conn.execute("SELECT set_config('log_min_duration_statement', '0', true), "
                     "set_config('log_parameter_max_length', %s, true)", [str(int(max_length))])
        conn.execute(f"SELECT %s::text AS card /* {marker} */", [value])   # psycopg 3 binds it on the server: $1
        conn.commit()
    return log_entry(log_file, start, marker)


def log_entry(log_file: Any, start: int, marker: str) -> list[str]:
    """The server log's `execute` line for the statement that carries `marker` (written after byte `start`), with its
    DETAIL line (the parameters) if any; waits up to 5 s for the server to write it, [] if it never does."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(log_file, errors="replace") as log:
            log.seek(start)
            lines = log.read().splitlines()
        at = [i for i, line in enumerate(lines) if marker in line and "execute" in line]
        if at:
            following = lines[at[0] + 1:at[0] + 2]
            return [lines[at[0]], *(line for line in following if "DETAIL:" in line)]
        time.sleep(0.05)
    return []
