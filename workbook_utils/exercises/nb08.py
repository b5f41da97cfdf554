"""Exercises of notebook 08 (monitoring): find the N+1 endpoint, export pool gauges, end the blocking session.

Each checker runs the learner's code against something real: requests to `monitoring.feed_app`, an engine's
pool, sessions staged on the server. Endpoint names and the mix of requests are drawn at random.
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import WorkbookError
from . import Exercise, Question, Unmet, WrongKind

if TYPE_CHECKING:
    import pandas as pd

    from ..workbook import Workbook
    from .draws import Draw

WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "grove", "heron", "iris", "juniper", "kite", "lotus"]
GAUGES = ("db_pool_open", "db_pool_idle", "db_pool_overflow")


KINDS = ("user", "feed", "feed_eager", "stats", "report", "search", "listing", "twin_a", "twin_b")
TWINS = ("twin_a", "twin_b")   # the N+1's items and query counts, paired at random: no statistic of either alone finds it


def request_log(wb: Workbook, tries: int = 3) -> tuple[pd.DataFrame, str]:
    """`one_request_log`, made again (up to `tries` times) while a stall of the busy machine made the N+1 the slowest
    endpoint by some statistic of time: time must not single it out (`report` is the slowest by design)."""
    for _ in range(tries):
        log, feed = one_request_log(wb)
        by_time = log.groupby("path")["ms"]
        if feed not in {by_time.quantile(0.95).idxmax(), by_time.mean().idxmax(), by_time.median().idxmax(),
                        by_time.max().idxmax()}:
            break
    return log, feed


def one_request_log(wb: Workbook) -> tuple[pd.DataFrame, str]:
    """Requests to feed_app plus five endpoints of its own (`_own_endpoints`), under random paths; one row per
    request: path, items, queries, ms. And the N+1's path. The number of requests and the limits of every endpoint
    are drawn (`plan`)."""
    import warnings

    import pandas as pd

    from .. import monitoring

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx (errata: TestClient)
        from fastapi.testclient import TestClient

    paths = _paths()
    engine = _engine(wb)
    app = monitoring.feed_app(engine, paths)
    _own_endpoints(app, engine, paths)
    calls = [paths[kind] + query for kind, query in plan()]
    random.shuffle(calls)
    rows = []
    with TestClient(app) as client:
        for call in calls:
            started = time.perf_counter()
            response = client.get(call)
            rows.append({"path": call.split("?")[0], "items": response.json()["items"],
                         "queries": int(response.headers["X-DB-Query-Count"]),
                         "ms": (time.perf_counter() - started) * 1000})
    return pd.DataFrame(rows), paths["feed"]


def _paths() -> dict[str, str]:
    """A random path for every endpoint; the N+1's sorts between its twins', so a tie on a statistic of the items or
    of the queries alone goes to a twin, whether the answer takes the first path (idxmax) or the last."""
    paths = dict(zip(KINDS, (f"/api/{name}" for name in random.sample(WORDS, len(KINDS))), strict=True))
    first, middle, last = sorted(paths[kind] for kind in ("feed", *TWINS))
    paths["feed"], paths[TWINS[0]], paths[TWINS[1]] = (middle, *random.sample([first, last], 2))
    return paths


def _own_endpoints(app: Any, engine: Any, paths: dict[str, str]) -> None:
    """The check's endpoints beside feed_app's. Only the N+1's queries grow with its items: `report` sends many,
    varying queries for a few items and is the slowest (its time grows with its queries); it and `search` vary both
    their items and their queries, independently; `listing` (search's handler) sends as many queries whatever its
    items, a few more than it returns; the twins (search's too) return the N+1's items and send its query counts,
    paired at random. search's time grows with its items (1 ms each) too, as the N+1's does."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    @app.get(paths["report"])
    def report(pages: int = 1, sections: int = 1) -> dict[str, Any]:  # `sections` items from `pages` queries
        with Session(engine) as session:
            counts = [session.execute(text("SELECT count(*) FROM posts, pg_sleep(:s) WHERE id % 16 = :p"),
                                      {"p": page, "s": 0.03 + 0.003 * pages if page == 0 else 0}).scalar_one()
                      for page in range(pages)]   # its time grows with its queries
            return {"items": len(counts[:sections])}

    @app.get(paths["twin_b"])
    @app.get(paths["twin_a"])
    @app.get(paths["listing"])
    @app.get(paths["search"])
    def search(limit: int = 1, facets: int = 0) -> dict[str, Any]:  # `limit` items, and `facets` counts besides
        with Session(engine) as session:
            found = session.execute(text("SELECT id, pg_sleep(0.001) FROM users ORDER BY id LIMIT :n"),
                                    {"n": limit}).all()
            for facet in range(facets):
                session.execute(text("SELECT count(*) FROM posts WHERE id % 16 = :p"), {"p": facet})
            return {"items": len(found)}


def plan() -> list[tuple[str, str]]:
    """The requests of one log, (endpoint, query string): how many, and their limits, drawn for every endpoint.
    Drawn again until no statistic but the relation of queries to items singles out the N+1 (`_shortcuts`)."""
    while _shortcuts(requests := _requests()):
        pass
    queries = {"user": lambda n, q: f"?id={random.randint(1, 50)}", "stats": lambda n, q: "",
               "feed": lambda n, q: f"?limit={n}", "feed_eager": lambda n, q: f"?limit={n}",
               "report": lambda n, q: f"?pages={q}&sections={n}",
               **{kind: lambda n, q: f"?limit={n}&facets={q - 1}" for kind in ("search", "listing", *TWINS)}}
    return [(kind, queries[kind](n, q)) for kind, (n, q) in requests]


def _requests() -> list[tuple[str, tuple[int, int]]]:
    """One drawn log's requests as (endpoint, (items, queries)); the N+1 is `feed`."""
    from statistics import stdev

    k = random.randint(4, 9)
    feed = random.sample(range(1, 11), k)  # 1 + N queries for N items
    eager = _drawn(lambda: random.sample(range(1, 17), random.randint(k + 1, 11)),  # 2 queries whatever N: more items
                   lambda e: sum(e) > sum(feed) and max(e) > max(feed) and stdev(e) > stdev(feed))
    report = _drawn(lambda: [(random.randint(1, 3), q)   # more queries, a few items
                             for q in random.sample(range(8, 30), random.randint(k + 1, 10))],
                    lambda pairs: stdev(q for _, q in pairs) > stdev(feed) and _unrelated(pairs, stdev(feed) ** 2))
    search = _drawn(lambda: [(random.randint(1, 4), random.randint(2, 6)) for _ in range(k)],  # as many requests
                    lambda pairs: _unrelated(pairs, stdev(feed) ** 2))
    listing = _drawn(lambda: _listing(max(feed)), lambda pairs: _unrelated(pairs, stdev(feed) ** 2))
    twins = [_drawn(lambda: random.sample([n + 1 for n in feed], k),
                    lambda queries: _unrelated(list(zip(feed, queries, strict=True)), stdev(feed) ** 2)) for _ in TWINS]
    return ([("user", (1, 1))] * random.randint(2, k - 1) + [("stats", (8, 8))] * random.randint(12, 16)
            + [("feed", (n, n + 1)) for n in feed] + [("feed_eager", (n, 2)) for n in eager]
            + [("report", pair) for pair in report] + [("search", pair) for pair in search]
            + [("listing", pair) for pair in listing]
            + [(twin, pair) for twin, queries in zip(TWINS, twins, strict=True) for pair in zip(feed, queries, strict=True)])


def _listing(most: int) -> list[tuple[int, int]]:
    """`listing`'s requests, (items, queries): a few more queries than items, and closer to one query an item than any
    N+1 request's (`most` items at most: 1 + 1/most), whatever the items: its queries vary, but not with its items."""
    sent = 4 * most + random.randint(3, 6)   # queries: sent, sent + 1 or sent + 2
    close = [n for n in range(1, sent) if (sent + 2) / n < 1 + 1 / most]   # items: under sent, close to it
    return [(random.choice(close), sent + random.randint(0, 2)) for _ in range(random.randint(4, 10))]


def _drawn(make: Callable[[], Any], fits: Callable[[Any], bool]) -> Any:
    """make() until it fits."""
    while not fits(value := make()):
        pass
    return value


def _unrelated(pairs: list[tuple[int, int]], feed_variance: float) -> bool:
    """Items and queries that both vary, but not together: no correlation (on values or ranks) of 0.3 or more, a
    covariance under half the N+1's, a slope of queries on items under half the N+1's (1), least squares' or
    Theil-Sen's, and 1 + N queries for fewer than half of the requests."""
    from statistics import correlation, covariance, variance

    items, queries = zip(*pairs, strict=True)
    if len(set(items)) < 2 or len(set(queries)) < 2:
        return False
    return (abs(correlation(items, queries)) < 0.3 and abs(correlation(_ranks(items), _ranks(queries))) < 0.3
            and abs(covariance(items, queries)) < feed_variance / 2 and abs(covariance(items, queries)) < variance(items) / 2
            and sum(q == n + 1 for n, q in pairs) < len(pairs) / 2 and abs(_theil_sen(pairs)) < 1 / 2)


def _theil_sen(pairs: list[tuple[int, int]]) -> float:
    """The median of the slopes between every two requests with different items: a slope outliers cannot pull."""
    from itertools import combinations
    from statistics import median

    return median((q2 - q1) / (n2 - n1) for (n1, q1), (n2, q2) in combinations(pairs, 2) if n1 != n2)


def _ranks(values: tuple[int, ...]) -> list[float]:
    """Average ranks, ties shared (as pandas' rank())."""
    order = sorted(values)
    return [order.index(v) + (order.count(v) + 1) / 2 for v in values]


def _shortcuts(requests: list[tuple[str, tuple[int, int]]]) -> list[str]:
    """The statistics of a drawn log that would single out the N+1 without relating its queries to its items."""
    import pandas as pd

    log = pd.DataFrame([(kind, n, q) for kind, (n, q) in requests if kind not in TWINS], columns=["path", "items",
                                                                                                     "queries"])
    by = log.groupby("path")   # the twins tie the N+1 on every one of these by design: `_paths` breaks the ties
    largest = {f"{column} {how}": getattr(by[column], how)() for column in ("queries", "items")
               for how in ("sum", "mean", "max", "std", "nunique")}
    found = [name for name, values in largest.items() if name != "items mean" and values["feed"] >= values.drop("feed").max()]
    sizes = by.size()
    if sizes["feed"] in (sizes.min(), sizes.max()) or (sizes == sizes["feed"]).sum() < 2:
        found.append("the number of requests")
    return found


_engines: dict[str, Any] = {}


def _engine(wb: Workbook) -> Any:
    if wb.url not in _engines:
        _engines[wb.url] = wb.make_engine(connect_args={"application_name": f"{wb.app_name} exercises"})
    return _engines[wb.url]


def n_plus_one_verdict(wb: Workbook, find: Callable[[pd.DataFrame], str]) -> dict[str, bool]:
    """The learner's finder on two request logs of their own (new random names each time)."""
    found = []
    for _ in range(2):
        log, n_plus_one = request_log(wb)
        answer = find(log.copy())
        if not isinstance(answer, str):
            raise WrongKind(f"return the endpoint's path as a string (e.g. '/api/…'), not a {type(answer).__name__}")
        found.append(answer == n_plus_one)
    return {"found the N+1 endpoint in the first log": found[0], "found the N+1 endpoint in the second log": found[1]}


def n_plus_one_reference(requests: pd.DataFrame) -> str:
    """The endpoint whose query count grows with the items it returns."""
    per_item = requests.groupby("path")[["items", "queries"]].apply(lambda g: g["queries"].corr(g["items"]))
    return per_item.fillna(0).idxmax()


def gauges_verdict(wb: Workbook, register: Callable[[Any, Any], Any]) -> dict[str, bool]:
    """Register the learner's gauges for two pools of different sizes (n + m overflow, drawn anew on each check), then
    scrape each a random number of times: a fresh pool, 2 checked out, n + 2 out, 2 of those returned, all returned.
    So a pool size or overflow read off one check (a hard-coded number) fails on the other pool: one pool is small
    (2-4), the other large (6-10), so no number read off one fits both."""
    sizes = random.sample([random.randint(2, 4), random.randint(6, 10)], 2)
    verdicts = [_gauges_on_one_pool(wb, register, n, random.randint(2, 6)) for n in sizes]
    return {claim: all(v[claim] for v in verdicts) for claim in verdicts[0]}


def _gauges_on_one_pool(wb: Workbook, register: Callable[[Any, Any], Any], n: int, m: int) -> dict[str, bool]:
    """The learner's gauges on one pool of n + m overflow (m >= 2), scraped through five states of the pool."""
    from contextlib import ExitStack

    from prometheus_client import CollectorRegistry

    engine = wb.make_engine(pool_size=n, max_overflow=m, pool_timeout=2,
                            connect_args={"application_name": f"{wb.app_name} exercises"})
    registry = CollectorRegistry()
    register(engine, registry)
    scraped: list[list[tuple[Any, ...]]] = []  # per state of the pool, every scrape of (open, idle, overflow)

    def scrape() -> None:
        scraped.append([tuple(_sample(registry, g) for g in GAUGES) for _ in range(random.randint(1, 3))])

    try:
        with ExitStack() as first, ExitStack() as second:
            scrape()
            for _ in range(2):
                first.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
            scrape()
            for _ in range(n):
                second.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
            scrape()
            first.close()
            scrape()  # 2 overflow connections still open, though fewer than n are in use
        scrape()  # the overflow connections were closed as they came back
    finally:
        engine.dispose()
    missing = sorted({g for state in scraped for values in state for g, v in zip(GAUGES, values, strict=True)
                      if v is None})
    if missing:
        raise WrongKind(f"the registry you were given has no gauge named {', '.join(missing)} with one value (one "
                        "set of labels, or none): create each Gauge with registry=registry")
    expected = [(0, 0, 0), (2, 0, 0), (n + 2, 0, 2), (n + 2, 2, 2), (n, n, 0)]

    def follows(i: int) -> bool:
        return all(values[i] == want[i] for state, want in zip(scraped, expected, strict=True) for values in state)

    return {"db_pool_open shows the connections open (idle or in use) when scraped": follows(0),
            "db_pool_idle shows the open connections waiting in the pool": follows(1),
            "db_pool_overflow shows the connections open beyond pool_size, never below 0": follows(2)}


def _sample(registry: Any, name: str) -> float | None:
    """The value a scrape shows for gauge `name`: its one sample, with or without labels (None if none or several)."""
    values = [sample.value for metric in registry.collect() for sample in metric.samples if sample.name == name]
    return values[0] if len(values) == 1 else None


def gauges_reference(engine: Any, registry: Any) -> None:
    from prometheus_client import Gauge

    pool = engine.pool
    Gauge("db_pool_open", "connections open", registry=registry).set_function(
        lambda: pool.checkedin() + pool.checkedout())
    Gauge("db_pool_idle", "connections idle in the pool", registry=registry).set_function(pool.checkedin)
    Gauge("db_pool_overflow", "connections open beyond pool_size", registry=registry).set_function(
        lambda: max(pool.overflow(), 0))


BLOCKER_CLAIMS = ("the waiting statement went through", "every session at the root of the chain was ended",
                  "the sessions waiting ahead of it in the chain were left alone", "the waiting session was left alone",
                  "sessions that do not block it were left alone")
FINISHING = 0.3   # s: the middle session's work between its statement and its commit (cut short if it is ended)
SETTLE = 0.2   # s: how long an ended session may take to show it (~2-12 ms seen, CPUs overloaded 4x); bounds wrong answers
ANSWER_BOUNDS = "-c statement_timeout=1s -c lock_timeout=500ms"   # an answer that waits gives up, never hangs
SURROUNDINGS = ("bystander", "idle")   # idle in transaction (the oldest), and idle


@dataclass
class Chain:
    """One staged lock chain: its waiter waits behind `ahead` (0-2 waiting sessions) for holders of rows of its table."""

    tag: str   # "a" or "b": its table is nb08.q3_accounts_<tag>, its middle session's row of q3_other is its own
    depth: int
    holders: list[str]
    rows: list[int]   # the row of q3_accounts_<tag> each holder holds
    busy: str   # the holder running a long statement inside its transaction (`active`, not idle)

    @property
    def ahead(self) -> list[str]:
        """The sessions waiting between the waiter and the roots, nearest the waiter first."""
        return [f"{self.tag} middle", f"{self.tag} queued"][:self.depth - 1]

    @property
    def waiter(self) -> str:
        """The session whose pid the answer gets."""
        return f"{self.tag} waiter"

    @property
    def roots(self) -> list[str]:
        """The sessions that wait for nobody: the busy holder (a row wait, depth 1), else every holder (a table wait)."""
        return [self.busy] if self.depth == 1 else self.holders

    def statements(self) -> dict[str, str]:
        """What each of its sessions that runs in a thread executes, from the roots to the waiter."""
        table, other_row = f"nb08.q3_accounts_{self.tag}", {"a": 2, "b": 3}[self.tag]   # the bystander holds 1
        alter = f"ALTER TABLE {table} ALTER COLUMN balance SET DEFAULT 0"
        ahead = {2: {"middle": alter}, 3: {"queued": alter, "middle": f"SELECT count(*) FROM {table}"}}.get(self.depth, {})
        waiter = (f"UPDATE {table} SET balance = balance + 1 WHERE id = {self.rows[self.holders.index(self.busy)]}"
                  if self.depth == 1 else f"UPDATE nb08.q3_other SET balance = balance + 1 WHERE id = {other_row}")
        return {self.busy: "SELECT pg_sleep(20)", **{f"{self.tag} {k}": sql for k, sql in ahead.items()},
                self.waiter: waiter}


DEPTHS = ((1, 3), (3, 1), (2, 3), (3, 2))  # one chain 3 links deep, where a statement only queues behind a waiter


def _chains(draw: Draw) -> list[Chain]:
    """Two chains of different depths (drawn, and in which order the answer meets them), 2-3 holders each."""
    chains = []
    for tag, depth in zip("ab", draw.choice("depths of the two chains", DEPTHS), strict=True):
        holders = [f"{tag} holder {k + 1}" for k in range(draw.integer(f"holders of chain {tag}", 2, 3))]
        rows = draw.sample(f"rows chain {tag}'s holders hold", range(1, 6), len(holders))
        chains.append(Chain(tag, depth, holders, rows, draw.choice(f"the busy holder of chain {tag}", holders)))
    return chains


@dataclass
class Staged:
    """A check's sessions by name: connection, pid; for those run in a thread, statement, `done`, `failed` (SQLSTATE)."""

    sessions: dict[str, Any]
    statements: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    done: dict[str, threading.Event] = field(default_factory=dict)
    failed: dict[str, list[str | None]] = field(default_factory=dict)
    threads: dict[str, threading.Thread] = field(default_factory=dict)

    def start(self, name: str) -> None:
        """Run the session's statement in a thread of its own."""
        self.done[name], self.failed[name] = threading.Event(), []
        self.threads[name] = threading.Thread(target=self._run, args=(name,), daemon=True)
        self.threads[name].start()

    def _run(self, name: str) -> None:
        """The thread's body: the statement, bounded by a lock_timeout; what came of it."""
        try:
            self.sessions[name].execute("SET lock_timeout = '10s'")
            self.sessions[name].execute(self.statements[name])
            self.done[name].set()   # its statement went through (the middle session's commit follows)
            if name.endswith("middle"):   # its request does a little more work, then commits: a chain walked again
                select.select([self.sessions[name].pgconn.socket], [], [], FINISHING)   # now finds it at the root
                self.sessions[name].commit()
        except Exception as error:
            self.failed[name].append(getattr(error, "sqlstate", None))

    def lives(self, name: str) -> bool:
        """Not ended: its statement still waits or runs, or it answers (a cancelled statement does not end it)."""
        thread = self.threads.get(name)
        if thread is not None and _has_news(self.sessions[name]):
            thread.join(SETTLE)   # the server answered it (its end, or its statement done): let its thread read that
        if thread is not None and thread.is_alive():
            return True
        if self.failed.get(name) and self.failed[name][0] != "57014":
            return False
        return _lives(self.sessions[name])


def _stage(staged: Staged, libpq: str, app: str, chains: list[Chain]) -> None:
    """Fresh tables, every session connected into `staged`, the rows taken (the bystander's first: the oldest
    transaction)."""
    from .. import db

    with db.connect(libpq, application_name=app) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS nb08.q3_other (id int PRIMARY KEY, balance int NOT NULL); "
                      "TRUNCATE nb08.q3_other; INSERT INTO nb08.q3_other SELECT g, 100 FROM generate_series(1, 3) g; "
                      + "".join(f"CREATE TABLE IF NOT EXISTS nb08.q3_accounts_{c.tag} (id int PRIMARY KEY, balance int "
                                f"NOT NULL); TRUNCATE nb08.q3_accounts_{c.tag}; INSERT INTO nb08.q3_accounts_{c.tag} "
                                "SELECT g, 100 FROM generate_series(1, 5) g; " for c in chains))
    staged.statements.update({name: sql for chain in chains for name, sql in chain.statements().items()})
    # pids in three batches, the sessions between the roots and the waiter in the middle: neither the lowest nor the
    # highest pids of a chain are its roots
    batches = [[*SURROUNDINGS, *(c.holders[0] for c in chains)], [n for c in chains for n in [*c.ahead, c.waiter]],
               [n for c in chains for n in c.holders[1:]]]

    def connect(name: str) -> None:   # into `staged` at once: a failure leaves the ones made for the cleanup
        staged.sessions[name] = db.connect(libpq, autocommit=name.endswith("queued"), application_name=app)
        staged.pids[name] = staged.sessions[name].info.backend_pid

    with ThreadPoolExecutor(4) as pool:   # a connection costs a server process: four at a time
        for batch in batches:
            list(pool.map(connect, batch))
    staged.sessions["bystander"].execute("UPDATE nb08.q3_other SET balance = balance + 1 WHERE id = 1")
    for chain in chains:   # the middle session's transaction first: the oldest transactions of a chain are not its roots
        if chain.ahead:   # it holds the row its waiter will wait for
            staged.sessions[chain.ahead[0]].execute(chain.statements()[chain.waiter])
    for chain in chains:
        for name, row in zip(chain.holders, chain.rows, strict=True):
            staged.sessions[name].execute(f"UPDATE nb08.q3_accounts_{chain.tag} SET balance = balance + 1 WHERE id = %s",
                                          [row])
    staged.sessions["idle"].commit()


def _start(staged: Staged, chains: list[Chain], observer: Any) -> None:
    """Every chain's statements from its roots to its waiter: a level of both chains at a time, each level once the one
    before it runs (PgSleep) or waits for a lock."""
    from itertools import zip_longest

    order = [[chain.busy, *reversed(chain.ahead), chain.waiter] for chain in chains]
    for level in zip_longest(*order):
        names = [name for name in level if name is not None]
        for name in names:
            staged.start(name)
        _wait_until(observer, [staged.pids[name] for name in names])


def _through(staged: Staged, chain: Chain) -> bool:
    """Whether the waiter's statement went through: waited for while its way may be free (at most 5 s)."""
    waiter, deadline = chain.waiter, time.monotonic() + 5
    if not staged.done[waiter].wait(SETTLE) and not staged.failed[waiter]:
        if any(staged.lives(r) for r in chain.roots) and not any(staged.failed[a] for a in chain.ahead):
            return False   # a root lives and the sessions ahead still wait: it cannot move
        while not staged.done[waiter].wait(0.02) and not staged.failed[waiter] and time.monotonic() < deadline:
            pass
    through = staged.done[waiter].is_set() and not staged.failed[waiter]
    freed = chain.depth == 1 or staged.done[chain.ahead[-1]].is_set()   # by its roots ending, not by a waiter ending
    if through and freed:
        staged.threads[chain.busy].join(2)   # ended, then: its pg_sleep fails at once
    return through


def _judge(staged: Staged, chain: Chain, others: set[str], yours: Any, end_blocker: Callable[[Any, int], Any]
           ) -> dict[str, bool]:
    """Call end_blocker(conn, waiter's pid) on the chain; whether each claim held (`others`: the sessions that do not
    block its waiter)."""
    end_blocker(yours, staged.pids[chain.waiter])
    through = _through(staged, chain)
    alive = {name for name in {*chain.roots, *others} if staged.lives(name)}
    return dict(zip(BLOCKER_CLAIMS, (
        through, not alive & set(chain.roots), all(not staged.failed[a] and staged.lives(a) for a in chain.ahead),
        not through or staged.lives(chain.waiter), others <= alive), strict=True))


def _cleanup(libpq: str, app: str, staged: Staged) -> None:
    """End every staged session (the busy holders too, though their threads sleep), then join the threads."""
    from .. import db

    with db.connect(libpq, application_name=app) as cleanup:
        cleanup.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s) "
                        "AND pid <> pg_backend_pid() AND application_name = %s AND datname = current_database() "
                        "AND usename = current_user", [list(staged.pids.values()), app])
    for conn in staged.sessions.values():
        conn.close()
    for thread in staged.threads.values():
        thread.join(6)


def blocker_verdict(wb: Workbook, end_blocker: Callable[[Any, int], Any], draw: Draw) -> dict[str, bool]:
    """Stage two lock chains of different depths at once, then call end_blocker(conn, waiter's pid) for one chain's
    waiter, then the other's, on a bounded connection, and judge who lived. Raises Unmet naming the chain's depth and
    each claim that failed. A chain (`Chain`): 2-3 holders of rows of its own table, one busy (a long pg_sleep inside
    its transaction), the others idle in transaction; (1) its waiter's UPDATE waits for the busy holder's row; (2) it
    waits for the row of a session whose ALTER TABLE is hard blocked by every holder; (3) as (2), but that session's
    SELECT queues behind an ALTER TABLE (a soft block) that every holder blocks. A waiter's own wait is on a row (a
    transaction id in pg_locks), never on a table. Around them: a bystander idle in transaction (the oldest), an idle
    session, and for the first chain, the whole second one."""
    from .. import db

    chains, libpq, app = _chains(draw), wb.url.replace("+psycopg", ""), f"{wb.app_name} q3"
    staged = Staged({}, {})
    try:
        _stage(staged, libpq, app, chains)
        with db.connect(libpq, application_name=f"{app} (you)", options=ANSWER_BOUNDS) as yours:
            _start(staged, chains, yours)
            for k, chain in enumerate(chains):
                others = {*SURROUNDINGS, *(set(chain.holders) - set(chain.roots))}
                others |= {n for c in chains[k + 1:] for n in [*c.holders, *c.ahead, c.waiter]}   # yet to be asked
                others |= {n for c in chains[:k] for n in [*set(c.holders) - set(c.roots), *c.ahead, c.waiter]}
                every_claim(_judge(staged, chain, others, yours, end_blocker),
                            f"on the chain {chain.depth} link{'s' * (chain.depth > 1)} deep")
    finally:
        _cleanup(libpq, app, staged)
    return dict.fromkeys(BLOCKER_CLAIMS, True)


def _has_news(conn: Any) -> bool:
    """Whether the server sent the connection something its thread has not read yet (e.g. why it was ended)."""
    import psycopg

    try:
        return bool(select.select([conn.pgconn.socket], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):   # closed: its thread is done with it
        return False


def _lives(conn: Any) -> bool:
    """A terminated session fails its next statement (the signal came first); an aborted transaction is alive."""
    import psycopg

    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:   # ended (AdminShutdown), or its connection closed
        return False
    except psycopg.Error:   # e.g. a transaction aborted by a cancelled statement: the session lives
        return True


def _wait_until(conn: Any, pids: list[int], timeout: float = 5) -> None:
    """Until every session of `pids` sleeps (PgSleep) or waits for a lock; raises after `timeout` s (never hangs)."""
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND (wait_event = 'PgSleep' OR "
                       "cardinality(pg_blocking_pids(pid)) > 0) AND datname = current_database() "
                       "AND usename = current_user", [pids]).fetchone()[0] < len(pids):
        if time.monotonic() > deadline:
            raise WorkbookError(f"the staged sessions {pids} did not all start waiting within {timeout} s")
        time.sleep(0.005)


def every_claim(verdict: dict[str, bool], where: str = "") -> dict[str, bool]:
    """The verdict, if every claim holds; else Unmet naming each claim that failed (not only the first), and where."""
    if failed := [claim for claim, held in verdict.items() if not held]:
        raise Unmet((f"{where}: " if where else "") + "; ".join(f"“{claim}” does not hold" for claim in failed),
                    claim=failed[0])
    return verdict


ROOTS_SQL = """
    WITH RECURSIVE chain(pid) AS (
        SELECT unnest(pg_blocking_pids(%s))
        UNION
        SELECT unnest(pg_blocking_pids(chain.pid)) FROM chain)
    SELECT pg_terminate_backend(pid) FROM chain WHERE cardinality(pg_blocking_pids(pid)) = 0"""


def end_blocker_reference(conn: Any, pid: int) -> None:
    """Walk pg_blocking_pids to the sessions that wait for nobody (the roots), and end those."""
    conn.execute(ROOTS_SQL, [pid])


N_PLUS_ONE_STARTER = '''
def n_plus_one_endpoint(requests):
    return requests.groupby("path")["queries"].sum().idxmax()
'''
GAUGES_STARTER = '''
def export_pool_gauges(engine, registry):
    pool = engine.pool
    Gauge("db_pool_open", "connections open", registry=registry).set(pool.size())
    Gauge("db_pool_idle", "connections idle in the pool", registry=registry).set(pool.size() - pool.checkedout())
    Gauge("db_pool_overflow", "connections open beyond pool_size", registry=registry).set(pool.overflow())
'''
BLOCKER_STARTER = '''
def end_blocker(conn, pid):
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                 "AND datname = current_database() AND usename = current_user")
'''


def _callable(answer: Any, name: str) -> Any:
    if not callable(answer):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer


Q2 = Question(
    name="q2",
    text="`requests` holds one row per request of an app: path, items returned, queries sent, ms. Return the path "
         "of the endpoint with an N+1: the one whose number of queries grows with the number of items it returns. "
         "(The check calls your function on two fresh logs of its own, with other endpoint names, five more "
         "endpoints, and the number of requests and their limits drawn for each endpoint; the busiest or slowest "
         "endpoint, or the one whose query count or item count varies most, is not always the culprit. pandas' "
         "Spearman correlation needs scipy, which is not installed here: use Pearson's, the default, or rank the "
         "columns first.)",
    shape="`def n_plus_one_endpoint(requests)` returning a path such as `'/api/…'`; then `q2.check(n_plus_one_endpoint)`.",
    hint_text="§1 and §5: an N+1 sends 1 + N queries for N items. Compare queries with items, per path: "
              "a constant number of queries, however large, is not an N+1.",
    solution_code="def n_plus_one_endpoint(requests):\n"
                  "    growth = requests.groupby(\"path\")[[\"items\", \"queries\"]].apply(\n"
                  "        lambda g: g[\"queries\"].corr(g[\"items\"]))\n"
                  "    return growth.fillna(0).idxmax()\n\nq2.check(n_plus_one_endpoint)",
    discussion="The N+1 is the endpoint whose query count moves with its item count, so the correlation of queries "
               "with items, per path, finds it (a constant count gives NaN, read as 0). Common wrong answers read "
               "something else, and the check's log has an endpoint that beats the N+1 on each:\n"
               "- the busiest, slowest or most varied endpoint: another one is busier, slower or more varied, and "
               "another one's items and queries both vary, but not together;\n"
               "- the items alone: an eager twin returns more items;\n"
               "- a ratio of queries to items: one endpoint sends a few more queries than it returns items, closer to "
               "one query an item than the N+1, but as many whatever its items;\n"
               "- a statistic of the items or of the queries alone: two endpoints return the N+1's items and send its "
               "query counts, paired at random.\n"
               "How many requests each endpoint gets is drawn. In production the same signal is a histogram of "
               "statements per request, by route.",
)
Q1 = Question(
    name="q1",
    text="`export_pool_gauges(engine, registry)` should register three gauges in `registry`, each showing the pool as it "
         "is when Prometheus scrapes: db_pool_open (connections open, idle or in use), db_pool_idle (open "
         "connections waiting in the pool) and db_pool_overflow (connections open beyond pool_size; never negative). "
         "The starter reads capacity where it should count connections, and reads once. (The check scrapes two pools "
         "of sizes drawn anew while connections are checked out and returned.)",
    shape="`def export_pool_gauges(engine, registry)` that creates each `Gauge(…, registry=registry)`; then "
          "`q1.check(export_pool_gauges)`.",
    hint_text="§3: a Gauge can compute its value when it is read (set_function). print(engine.pool.status()) "
              "names what a QueuePool counts; pool.checkedin() is the idle connections. What does "
              "pool.overflow() return before pool_size connections are open (notebook 01), and does an overflow "
              "connection stay open once returned while the pool holds fewer than pool_size?",
    solution_code="def export_pool_gauges(engine, registry):\n"
                  "    pool = engine.pool\n"
                  "    Gauge(\"db_pool_open\", \"connections open\", registry=registry).set_function(\n"
                  "        lambda: pool.checkedin() + pool.checkedout())\n"
                  "    Gauge(\"db_pool_idle\", \"connections idle in the pool\", registry=registry).set_function(\n"
                  "        pool.checkedin)\n"
                  "    Gauge(\"db_pool_overflow\", \"connections open beyond pool_size\", registry=registry)"
                  ".set_function(\n"
                  "        lambda: max(pool.overflow(), 0))\n\n"
                  "q1.check(export_pool_gauges)",
    discussion="set_function reads the pool at each scrape; .set() reads it once. Open connections are the idle ones "
               "(checkedin) plus those in use (checkedout); pool.size() is pool_size, a capacity. overflow() counts "
               "up from -pool_size, so max(overflow(), 0) is what is open beyond it. A gauge still sees only the "
               "moment of a scrape (every 15-60 s): pair it with a histogram of checkout wait and a counter of "
               "timeouts. set_function does not work in prometheus_client's multiprocess mode.",
)
Q3 = Question(
    name="q3",
    text="A statement has been waiting for a lock. `end_blocker(conn, pid)` gets a connection and the pid of the "
         "waiting session: end the session(s) at the root of its wait, and nothing else. (The check stages two chains "
         "of different depths it draws, and calls your function for the waiter of each in turn: a statement may wait "
         "for a row or a table, behind other waiting statements, whose "
         "locks are held by one or more sessions, idle in transaction or busy running a statement; around them, "
         "sessions of the same role and application that block it not at all, some holding rows of the same table.)",
    shape="`def end_blocker(conn, pid)` that runs SQL on `conn` (a psycopg connection); then `q3.check(end_blocker)`.",
    hint_text="§4: pg_blocking_pids(pid) names the next link only, including a session that merely waits ahead in "
              "the queue. Follow it until you reach sessions that wait for nobody (a recursive CTE, or a loop). "
              "Find all of them first, then end them: once the holders end, a queued statement gets its lock and waits "
              "for nobody too. pg_cancel_backend ends only a running statement: a session idle in its transaction "
              "keeps the transaction and its locks.",
    solution_code="def end_blocker(conn, pid):\n"
                  "    conn.execute(\"\"\"\n"
                  "        WITH RECURSIVE chain(pid) AS (\n"
                  "            SELECT unnest(pg_blocking_pids(%s))\n"
                  "            UNION\n"
                  "            SELECT unnest(pg_blocking_pids(chain.pid)) FROM chain)\n"
                  "        SELECT pg_terminate_backend(pid) FROM chain WHERE cardinality(pg_blocking_pids(pid)) = 0"
                  "\"\"\", [pid])\n\nq3.check(end_blocker)",
    discussion="pg_blocking_pids returns the immediate blockers: sessions holding a conflicting lock, and sessions "
               "waiting ahead in the queue (a soft block). Ending those can kill a waiting migration while the "
               "session that holds the lock lives on. Follow the links to the sessions that wait for nobody and end "
               "all of them; ending only the first leaves the chain blocked. Common wrong answers end only the chain's "
               "sessions idle in transaction (a root may be running a long statement: `active`), follow a fixed "
               "number of links (the two chains of a check differ in depth), or end the holders of the waiter's "
               "table (a wait for a row shows in pg_locks as a transaction id, not a relation). Then fix what left "
               "them in a transaction "
               "(idle_in_transaction_session_timeout, statement_timeout).",
)
QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1 (Part 1), q2, q3 (Part 2) of notebook 08, bound to this notebook's database."""
    return (Q1.exercise(reference=lambda: gauges_verdict(wb, gauges_reference),
                        evaluate=lambda register: every_claim(gauges_verdict(wb, _callable(register,
                                                                                         "export_pool_gauges"))),
                        starter=GAUGES_STARTER),
            Q2.exercise(reference=lambda: n_plus_one_verdict(wb, n_plus_one_reference),
                        evaluate=lambda find: n_plus_one_verdict(wb, _callable(find, "n_plus_one_endpoint")),
                        starter=N_PLUS_ONE_STARTER),
            Q3.exercise(reference=lambda draw: dict.fromkeys(BLOCKER_CLAIMS, True),   # every claim holds
                        evaluate=lambda end, draw: blocker_verdict(wb, _callable(end, "end_blocker"), draw),
                        starter=BLOCKER_STARTER, drawn=True))
