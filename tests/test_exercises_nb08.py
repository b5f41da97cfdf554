"""Notebook 08's exercises: references and printed solutions pass; wrong answers and lesson-breaking ones fail."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from prometheus_client import Gauge

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb08
from workbook_utils.exercises.draws import Draw


def _seed(first, second):
    """A seed whose q3 check stages chains of these depths, met in this order (the depths are the check's first draw)."""
    return next(seed for seed in range(200) if Draw(seed).choice("depths of the two chains", nb08.DEPTHS) == (first, second))


@pytest.fixture(scope="module")
def workbook():
    from workbook_utils import setup

    workbook = setup("08")
    yield workbook
    workbook.close()


@pytest.fixture(scope="module")
def exercises(workbook):
    return nb08.load(workbook)


@pytest.fixture(scope="module")
def two_fresh_logs(workbook):
    """Two request logs drawn afresh (a log costs ~1-2 s of real requests), for the tests that need any fresh pair."""
    return [nb08.request_log(workbook) for _ in range(2)]


def _in_turn(logs):
    """A stand-in for nb08.request_log that serves `logs` in turn: each finder meets every one of them."""
    served = []

    def request_log(wb):
        served.append(logs[len(served) % len(logs)])
        return served[-1]
    return request_log


def _starter(source, name, tmp_path):
    """The starter function, loaded from a file (so its source can be read back, as from a notebook cell)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text("from prometheus_client import Gauge\n" + source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_nb08_references_and_printed_solutions_pass(exercises, two_fresh_logs, monkeypatch, capsys):
    q1, q2, q3 = exercises
    monkeypatch.setattr(nb08, "request_log", _in_turn(two_fresh_logs))   # the reference and the solution meet both
    assert q1.verdict(nb08.gauges_reference) == (CORRECT, None)
    assert q2.verdict(nb08.n_plus_one_reference) == (CORRECT, None)
    for depths in [(1, 3), (2, 3), (3, 1), (3, 2)]:   # each depth met first, and met after the other chain was resolved
        assert q3.verdict(nb08.end_blocker_reference, seed=_seed(*depths)) == (CORRECT, None), depths
    namespace = {"q1": q1, "q2": q2, "q3": q3, "Gauge": Gauge}
    for exercise in exercises:
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb08_starters_are_not_attempted_and_are_wrong(exercises, two_fresh_logs, monkeypatch, tmp_path):
    q1, q2, q3 = exercises
    monkeypatch.setattr(nb08, "request_log", _in_turn(two_fresh_logs))
    for q, source, name in [(q2, nb08.N_PLUS_ONE_STARTER, "n_plus_one_endpoint"),
                            (q1, nb08.GAUGES_STARTER, "export_pool_gauges"), (q3, nb08.BLOCKER_STARTER, "end_blocker")]:
        starter = _starter(source, name, tmp_path)
        assert q.verdict(starter)[0] == NOT_ATTEMPTED
        namespace = {"Gauge": Gauge}
        exec(source, namespace)   # the same code typed anew is judged, and it is wrong
        assert q.verdict(namespace[name])[0] == INCORRECT, name


def _per_request_ratio(r):
    return (r["queries"] / r["items"]).groupby(r["path"])


def _nearest_one(ratio):
    return (ratio - 1).abs().idxmin()


def _smallest_above_one(ratio):
    return ratio[ratio > 1].idxmin()


def _varied(r, ratio):   # among the paths whose items vary
    return ratio[r.groupby("path")["items"].nunique() > 1]


RATIOS = [lambda r: r.groupby("path")["queries"].sum() / r.groupby("path")["items"].sum(),
          lambda r: r.groupby("path")["queries"].mean() / r.groupby("path")["items"].mean(),
          *(lambda r, how=how: getattr(_per_request_ratio(r), how)() for how in ("mean", "median", "min", "max"))]
# An N+1 sends 1 + N queries for N items, a little more than 1 a query: ratios near 1 (stop 29's review found two).
RATIO_FINDERS = [lambda r, ratio=ratio, pick=pick, varied=varied: pick(_varied(r, ratio(r)) if varied else ratio(r))
                 for ratio in RATIOS for pick in (_nearest_one, _smallest_above_one) for varied in (True, False)]


def _by(r):
    return r.groupby("path")


# Statistics of the items and of the queries, each alone (rv08, stop 30: each found the N+1 on every check, the only
# endpoint whose items and queries both spread widely; the twins now share its items and its query counts).
MARGINAL_FINDERS = [   # exact statistics (integers, sums, means): the twins tie the N+1 exactly
    lambda r: r[_by(r)["queries"].transform("nunique") > 1].groupby("path")["items"].max().idxmax(),
    lambda r: np.minimum(_by(r)["items"].nunique(), _by(r)["queries"].nunique()).idxmax(),
    lambda r: ((_by(r)["items"].nunique() + _by(r)["queries"].nunique()) / _by(r).size()).idxmax(),
    lambda r: (_by(r)["queries"].mean() - _by(r)["items"].mean() - 1).abs().idxmin(),
    lambda r: ((_by(r)["queries"].min() - _by(r)["items"].min() == 1)
               & (_by(r)["queries"].max() - _by(r)["items"].max() == 1)).idxmax(),
    # rve: the last of the tied paths, not the first (the N+1's path sorts between its twins')
    lambda r: [p for p, g in _by(r) if g.queries.max() - g["items"].max() == 1 and g.queries.min() - g["items"].min() == 1][-1],
]
STD_FINDERS = [   # a std of the same values in another row order rounds otherwise: these ties go either way
    lambda r: r[_by(r)["queries"].transform("nunique") > 1].groupby("path")["items"].std().idxmax(),
    lambda r: np.minimum(_by(r)["items"].std(), _by(r)["queries"].std()).idxmax(),
    lambda r: (_by(r)["queries"].std() / _by(r)["items"].std() - 1).abs().idxmin(),
]


def _slope(r):
    return _by(r)[["items", "queries"]].apply(lambda g: np.polyfit(g["items"], g["queries"], 1)[0])


def _theil_sen(r):   # rve (stop 30): the median of pairwise slopes; report's few items made it steep 1 log in 3
    def median_slope(g):
        items, queries = g["items"].to_numpy(), g["queries"].to_numpy()
        i, j = np.triu_indices(len(g), 1)
        apart = items[i] != items[j]
        return float(np.median((queries[j] - queries[i])[apart] / (items[j] - items[i])[apart])) if apart.any() else 0.0
    return _by(r)[["items", "queries"]].apply(median_slope).idxmax()


def test_nb08_q2_no_ratio_or_lone_statistic_finds_the_n_plus_one_in_any_drawn_log(monkeypatch):
    """On 40 drawn logs (their plans, under drawn paths; no request sent): `listing` lies between 1 and the N+1 on
    every ratio, and the twins tie it on every statistic of its items or its queries alone; the slope of queries on
    items finds it, least squares' or Theil-Sen's (every other endpoint's is under half of its)."""
    import warnings

    import pandas as pd

    monkeypatch.setattr(nb08, "random", random.Random(30))
    lone = [0] * len(STD_FINDERS)
    for log_number in range(40):
        paths = nb08._paths()
        log = pd.DataFrame([(paths[kind], n, q) for kind, (n, q) in nb08._requests()], columns=["path", "items", "queries"])
        log = log.sample(frac=1, random_state=log_number)
        found = [k for k, finder in enumerate(RATIO_FINDERS + MARGINAL_FINDERS) if finder(log) == paths["feed"]]
        lone = [n + (finder(log) == paths["feed"]) for n, finder in zip(lone, STD_FINDERS, strict=True)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # polyfit on a path whose items never vary
            slope = _slope(log).idxmax()
        assert not found and nb08.n_plus_one_reference(log) == slope == _theil_sen(log) == paths["feed"], (log_number, found)
    # a tie on a std goes whichever way its rounding goes: a log in 4 at most, a check in 16
    assert max(lone) <= 40 // 4, lone


def test_nb08_q2_rejects_shortcuts_and_accepts_every_relation_of_queries_to_items(exercises, monkeypatch):
    q2 = exercises[1]
    made, real = [], nb08.request_log
    monkeypatch.setattr(nb08, "random", random.Random(9))   # the two logs drawn the same on every run

    def two_logs_in_turn(wb):
        """Two real request logs, made once and served in turn: each wrong finder meets both (a log costs ~1 s)."""
        if len(made) < 2:
            made.append(real(wb))
            return made[-1]
        made.append(made.pop(0))
        return made[-1]

    monkeypatch.setattr(nb08, "request_log", two_logs_in_turn)
    for wrong, why in [
        (lambda r: r.groupby("path")["queries"].sum().idxmax(), "N+1 endpoint"),        # the busiest
        (lambda r: r.groupby("path")["queries"].mean().idxmax(), "N+1 endpoint"),       # most queries per request
        (lambda r: r.loc[r["queries"].idxmax(), "path"], "N+1 endpoint"),               # the single worst request
        # Found only because every other endpoint sends a constant number of queries: the checker's `report`
        # endpoint sends a varying number (more, and more varied) for one item.
        (lambda r: r.groupby("path")["queries"].std().idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path")["queries"].nunique().idxmax(), "N+1 endpoint"),
        (lambda r: (r.groupby("path")["queries"].sum() / r.groupby("path")["items"].sum()).idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path")["ms"].quantile(0.95).idxmax(), "N+1 endpoint"),    # the slowest
        (lambda r: r.groupby("path")["ms"].mean().idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path").size().idxmin(), "N+1 endpoint"),                  # the least requested
        # Items alone, never the queries: the eager twin returns more items, and more varied.
        (lambda r: r.groupby("path")["items"].nunique().idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path")["items"].sum().idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path")["items"].std().idxmax(), "N+1 endpoint"),
        (lambda r: r.groupby("path")["items"].max().idxmax(), "N+1 endpoint"),
        (lambda r: "/feed", "N+1 endpoint"),                                            # the demo's name
        # The shape of the old log (rv08): the N+1 always got 7 requests, and was the only endpoint whose items and
        # queries both varied. Now every endpoint's requests are drawn, and `search` varies both, independently.
        (lambda r: r["path"].value_counts().loc[lambda s: s == 7].index[0], "N+1 endpoint|IndexError"),
        (lambda r: next(p for p, g in r.groupby("path") if g.queries.nunique() > 1 and g["items"].nunique() > 1),
         "N+1 endpoint"),
        *((finder, "N+1 endpoint") for finder in RATIO_FINDERS),   # rvx (stop 29): nearest 1 query an item
        *((finder, "N+1 endpoint") for finder in MARGINAL_FINDERS),
        (lambda r: r.groupby("path")["queries"].sum(), "as a string"),
        ("/feed", "pass your function"),
    ]:
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and any(w in diff for w in why.split("|")), (getattr(wrong, "__code__", wrong), diff)
    per_path = lambda f: lambda r: r.groupby("path")[["items", "queries"]].apply(f).fillna(0).idxmax()  # noqa: E731
    for right in [   # every way a competent engineer relates queries to items
        lambda r: _slope(r).idxmax(),   # rv08: the slope; report's was up to 3.9 (items 1-3): failed 1 check in 2
        _theil_sen,
        per_path(lambda g: g["queries"].cov(g["items"]) / g["items"].var() if g["items"].nunique() > 1 else 0.0),
        lambda r: (r["queries"] == r["items"] + 1).groupby(r["path"]).mean().idxmax(),      # 1 + N, literally
        per_path(lambda g: g["queries"].cov(g["items"])),
        per_path(lambda g: g["queries"].rank().corr(g["items"].rank())),                     # Spearman, by hand
        lambda r: r.groupby("path")[["items", "queries"]].corr().xs("items", level=1)["queries"].fillna(0).idxmax(),
        per_path(lambda g: np.nan_to_num(np.corrcoef(g["items"], g["queries"])[0, 1]) if g["items"].nunique() > 1
                 and g["queries"].nunique() > 1 else 0.0),
    ]:
        assert q2.verdict(right) == (CORRECT, None)


def test_nb08_q1_rejects_stale_negative_capacity_and_misplaced_gauges(exercises):
    q1 = exercises[0]

    def gauges(open_, idle, overflow, at_scrape=True):
        """An answer built from three functions of the pool (read once with at_scrape=False, as the sheet does)."""
        def register(engine, registry):
            pool = engine.pool
            for name, value in zip(nb08.GAUGES, (open_, idle, overflow), strict=True):
                gauge = Gauge(name, "", registry=registry)
                if at_scrape:
                    gauge.set_function(lambda v=value: v(pool))
                else:
                    gauge.set(value(pool))
        return register

    def open_(pool):
        return pool.checkedin() + pool.checkedout()

    def idle(pool):
        return pool.checkedin()

    def overflow(pool):
        return max(pool.overflow(), 0)

    def default_registry(engine, registry):
        from prometheus_client import CollectorRegistry

        nb08.gauges_reference(engine, CollectorRegistry())   # somewhere else than the registry given

    assert q1.verdict(gauges(open_, idle, overflow))[0] == CORRECT
    assert q1.verdict(gauges(lambda p: p.size() + p.overflow(), idle, overflow))[0] == CORRECT   # the same count

    def labelled(engine, registry):   # rvh (stop 31): one label set per gauge was "no gauge named …"
        pool = engine.pool
        for name, value in zip(nb08.GAUGES, (open_, idle, overflow), strict=True):
            Gauge(name, "", ["pool"], registry=registry).labels(pool="main").set_function(lambda v=value: v(pool))

    assert q1.verdict(labelled)[0] == CORRECT
    for wrong, why in [
        (gauges(open_, idle, overflow, at_scrape=False), "db_pool_open&db_pool_idle&db_pool_overflow"),  # read once
        (gauges(lambda p: p.size(), idle, overflow), "db_pool_open"),                    # capacity, not open
        (gauges(lambda p: p.checkedout(), idle, overflow), "db_pool_open"),              # busy only
        (gauges(lambda p: max(p.size(), p.checkedout()), idle, overflow), "db_pool_open"),
        (gauges(open_, lambda p: p.size() - p.checkedout(), overflow), "db_pool_idle"),  # capacity left
        (gauges(open_, lambda p: max(p.size() - p.checkedout(), 0), overflow), "db_pool_idle"),
        (gauges(open_, idle, lambda p: p.overflow()), "never below 0"),                  # negative below pool_size
        (gauges(open_, idle, lambda p: abs(p.overflow())), "never below 0"),
        (gauges(open_, idle, lambda p: max(p.checkedout() - p.size(), 0)), "never below 0"),   # busy beyond size
        (gauges(open_, idle, lambda p: 0), "never below 0"),
        (default_registry, "registry=registry"),
        # A pool size read off one check: the two pools of a check have different sizes.
        (gauges(open_, idle, lambda p: max(p.checkedin() + p.checkedout() - 5, 0)), "never below 0"),
        (gauges(lambda p: p.checkedout() + min(p.checkedin(), 4), idle, overflow), "db_pool_open"),
    ]:
        status, diff = q1.verdict(wrong)   # every gauge that failed is named
        assert status == INCORRECT and all(w in diff for w in why.split("&")), diff


def test_nb08_q3_rejects_ending_too_much_too_little_or_the_wrong_session(exercises):
    q3 = exercises[2]
    end_blocker_reference = nb08.end_blocker_reference

    def everyone_else(conn, pid):   # every other session of the app
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user "
                     "AND datname = current_database() AND pid NOT IN (pg_backend_pid(), %s) AND application_name = "
                     "(SELECT application_name FROM pg_stat_activity WHERE pid = %s)", [pid, pid])

    def idle_in_transaction(conn, pid):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                     "AND datname = current_database() AND usename = current_user")   # the starter's

    def the_waiter(conn, pid):
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])

    def cancel(conn, pid):   # cancels a running statement: the idle blocker runs none
        conn.execute("SELECT pg_cancel_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b", [pid])

    def blockers_then_the_waiter(conn, pid):   # the UPDATE went through, then its session was ended
        end_blocker_reference(conn, pid)
        time.sleep(0.2)   # its way is free at once
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])

    def every_blocker(conn, pid):   # the blockers of every waiting session, not only of this one
        conn.execute("SELECT pg_terminate_backend(b) FROM pg_stat_activity, unnest(pg_blocking_pids(pid)) AS b "
                     "WHERE datname = current_database()")

    def oldest_transaction(conn, pid):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                     "AND datname = current_database() AND usename = current_user ORDER BY xact_start LIMIT 1")

    def newest_transaction(conn, pid):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                     "AND datname = current_database() AND usename = current_user ORDER BY xact_start DESC LIMIT 1")

    def row_one(conn, pid):   # a guess from the statement's text
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                     "AND datname = current_database() AND query LIKE '%%id = 1%%'")

    def waits_forever(conn, pid):
        conn.execute("SELECT pg_sleep(3600)")

    def immediate_blockers(conn, pid):   # the old reference: ends the ALTER waiting ahead, not the holders
        conn.execute("SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b", [pid])

    def first_root_only(conn, pid):   # walks the chain, then ends only one of the holders
        conn.execute(nb08.ROOTS_SQL.replace("cardinality(pg_blocking_pids(pid)) = 0",
                                            "cardinality(pg_blocking_pids(pid)) = 0 AND pid = (SELECT min(pid) FROM "
                                            "chain c WHERE cardinality(pg_blocking_pids(c.pid)) = 0)"), [pid])

    def first_blocker_of_the_first_blocker(conn, pid):
        ahead = conn.execute("SELECT pg_blocking_pids(%s)", [pid]).fetchone()[0]
        holders = conn.execute("SELECT pg_blocking_pids(%s)", [ahead[0]]).fetchone()[0]
        conn.execute("SELECT pg_terminate_backend(%s)", [holders[0]])

    # rv08's three answers, which the old chain (always two links, every holder idle in transaction, every wait on a
    # table) accepted:
    def idle_chain_members(conn, pid):   # a holder busy running a statement (active) is left: the chain stays blocked
        conn.execute("""
            WITH RECURSIVE chain(pid) AS (
                SELECT unnest(pg_blocking_pids(%s))
                UNION
                SELECT unnest(pg_blocking_pids(chain.pid)) FROM chain)
            SELECT pg_terminate_backend(pid) FROM chain JOIN pg_stat_activity USING (pid)
            WHERE state = 'idle in transaction'""", [pid])

    def exactly_two_levels(conn, pid):   # right only when the chain has two links
        conn.execute("SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids((pg_blocking_pids(%s))[1])) b", [pid])

    def holders_of_its_table(conn, pid):   # a wait for a row is on a transaction id: no relation
        conn.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.granted AND l.pid <> pg_backend_pid() "
                     "AND l.relation = (SELECT relation FROM pg_locks WHERE pid = %s AND NOT granted LIMIT 1)", [pid])

    def one_root_at_a_time(conn, pid):   # rv08 (stop 30): walks again after each end, which waits for it (1 s at most)
        for _ in range(10):   # once the roots are gone, the session ahead finishes its work: it is the root then
            root = conn.execute(nb08.ROOTS_SQL.replace("pg_terminate_backend(pid)", "pid") + " LIMIT 1", [pid]).fetchone()
            if root is None:
                return
            conn.execute("SELECT pg_terminate_backend(%s, 1000)", [root[0]])

    started = time.monotonic()
    assert q3.verdict(waits_forever)[0] == INCORRECT
    assert time.monotonic() - started < 20   # the answer's connection has a statement_timeout

    for wrong, why, depths in [   # the first chain's depth decides the message; the second chain's, who is around
            (idle_chain_members, "2 links deep: “the waiting&root of the chain", (2, 3)),
            (exactly_two_levels, "1 link deep: “the waiting statement went through", (1, 3)),
            (exactly_two_levels, "3 links deep: “every session at the root&waiting ahead", (2, 3)),
            (holders_of_its_table, "went through", (2, 3)),
            (immediate_blockers, "waiting ahead&root of the chain", (2, 3)), (first_root_only, "went through", (2, 3)),
            (first_blocker_of_the_first_blocker, "went through", (2, 3)),
            (first_blocker_of_the_first_blocker, "IndexError", (1, 3)), (everyone_else, "do not block it", (1, 3)),
            (idle_in_transaction, "do not block it", (1, 3)), (every_blocker, "do not block it", (3, 1)),
            (oldest_transaction, "went through&do not block it", (2, 3)), (newest_transaction, "went through", (2, 3)),
            (row_one, "went through&do not block it", (3, 2)), (blockers_then_the_waiter, "waiting session was left", (1, 3)),
            (the_waiter, "went through", (1, 3)), (cancel, "root of the chain", (1, 3)),
            (lambda conn, pid: None, "went through", (3, 1)), (one_root_at_a_time, "waiting ahead", (2, 3))]:
        status, diff = q3.verdict(wrong, seed=_seed(*depths))   # the message names every claim that failed
        assert status == INCORRECT and all(w in diff for w in why.split("&")), (getattr(wrong, "__name__", wrong), depths,
                                                                                 diff)
    for _ in range(4):   # two chains of different depths in every check: a depth hard-wired fails each time
        assert q3.verdict(exactly_two_levels)[0] == INCORRECT, q3.last_draw.describe()


def test_nb08_q3_accepts_a_python_walk_of_the_chain(exercises):
    """Another correct form: follow pg_blocking_pids in Python, end every session that waits for nobody."""
    def walk(conn, pid):
        seen, todo, roots = set(), [pid], set()
        while todo:
            for blocker in conn.execute("SELECT pg_blocking_pids(%s)", [todo.pop()]).fetchone()[0]:
                if blocker not in seen:
                    seen.add(blocker)
                    todo.append(blocker)
        for blocker in seen:
            if not conn.execute("SELECT pg_blocking_pids(%s)", [blocker]).fetchone()[0]:
                roots.add(blocker)
        for root in roots:
            conn.execute("SELECT pg_terminate_backend(%s)", [root])

    assert exercises[2].verdict(walk, seed=_seed(3, 1)) == (CORRECT, None)


def test_nb08_q2_log_is_made_again_while_a_stall_made_the_n_plus_one_the_slowest(monkeypatch):
    import pandas as pd

    def log(feed_ms: float) -> pd.DataFrame:
        return pd.DataFrame({"path": ["/a", "/a", "/r", "/r"], "ms": [feed_ms, 5.0, 60.0, 70.0]})

    made = iter([log(250.0), log(250.0), log(9.0), log(300.0)])  # two stalled logs, then a fair one
    monkeypatch.setattr(nb08, "one_request_log", lambda wb: (next(made), "/a"))
    found, feed = nb08.request_log(None)
    assert feed == "/a" and found["ms"].tolist() == [9.0, 5.0, 60.0, 70.0]


CONFLICTS = {  # lock modes a granted lock conflicts with (the docs' table): what a wait "really" waits for
    "AccessShareLock": "AccessExclusive", "RowShareLock": "Exclusive AccessExclusive",
    "RowExclusiveLock": "Share ShareRowExclusive Exclusive AccessExclusive",
    "ShareUpdateExclusiveLock": "ShareUpdateExclusive Share ShareRowExclusive Exclusive AccessExclusive",
    "ShareLock": "RowExclusive ShareUpdateExclusive ShareRowExclusive Exclusive AccessExclusive",
    "ShareRowExclusiveLock": "RowExclusive ShareUpdateExclusive Share ShareRowExclusive Exclusive AccessExclusive",
    "ExclusiveLock": "RowShare RowExclusive ShareUpdateExclusive Share ShareRowExclusive Exclusive AccessExclusive",
    "AccessExclusiveLock": "AccessShare RowShare RowExclusive ShareUpdateExclusive Share ShareRowExclusive Exclusive "
                           "AccessExclusive"}


def holders_of_conflicting_locks(conn, pid):
    """Walks pg_locks by the conflict table: it never sees a session that only queues behind a waiter (rv08)."""
    def blockers(p):
        waits = conn.execute("SELECT mode FROM pg_locks WHERE pid = %s AND NOT granted", [p]).fetchall()
        return {holder for (mode,) in waits for (holder,) in conn.execute(
            "SELECT h.pid FROM pg_locks w JOIN pg_locks h ON h.granted AND h.pid <> w.pid AND h.locktype = w.locktype "
            "AND (h.database, h.relation, h.page, h.tuple, h.virtualxid, h.transactionid::text) IS NOT DISTINCT FROM "
            "(w.database, w.relation, w.page, w.tuple, w.virtualxid, w.transactionid::text) "
            "AND h.mode = ANY(string_to_array(%s, ' ')) WHERE w.pid = %s AND NOT w.granted",
            [" ".join(m + "Lock" for m in CONFLICTS[mode].split()), p]).fetchall()}

    seen, todo, roots = set(), [pid], set()
    while todo:
        found = blockers(p := todo.pop())
        roots |= {p} if not found and p != pid else set()
        todo += [b for b in found if b not in seen]
        seen |= found
    for root in roots:
        conn.execute("SELECT pg_terminate_backend(%s)", [root])


def roots_then_the_sessions_ahead(conn, pid):
    """The reference, then every session that waited ahead of the waiter (once they went through): rv08."""
    chain = conn.execute("WITH RECURSIVE c(pid) AS (SELECT unnest(pg_blocking_pids(%s)) UNION "
                         "SELECT unnest(pg_blocking_pids(c.pid)) FROM c) SELECT pid FROM c "
                         "WHERE cardinality(pg_blocking_pids(pid)) > 0", [pid]).fetchall()
    nb08.end_blocker_reference(conn, pid)
    time.sleep(0.3)
    for (ahead,) in chain:
        conn.execute("SELECT pg_terminate_backend(%s)", [ahead])


def test_nb08_q3_rejects_a_conflict_table_walk_and_ending_the_sessions_ahead_on_every_check(exercises):
    for answer in (holders_of_conflicting_locks, roots_then_the_sessions_ahead):
        for _ in range(3):   # every check stages a chain 3 links deep, with a statement queued behind a waiter
            status, diff = exercises[2].verdict(answer)
            assert status == INCORRECT and "does not hold" in diff, (answer.__name__, diff)


def _as_many_roots_picked_by(order_by: str):
    """Counts the roots with the reference's walk, then ends that many of the chain's sessions picked by `order_by`."""
    def end_blocker(conn, pid):
        chain = ("WITH RECURSIVE c(pid) AS (SELECT unnest(pg_blocking_pids(%s)) UNION "
                 "SELECT unnest(pg_blocking_pids(c.pid)) FROM c) ")
        roots = conn.execute(chain + "SELECT count(*) FROM c WHERE cardinality(pg_blocking_pids(pid)) = 0",
                             [pid]).fetchone()[0]
        conn.execute(chain + "SELECT pg_terminate_backend(pid) FROM (SELECT c.pid FROM c JOIN pg_stat_activity a "
                     f"USING (pid) ORDER BY {order_by} LIMIT %s) AS picked", [pid, roots])
    end_blocker.__name__ = f"as many as the roots, by {order_by}"
    return end_blocker


def test_nb08_q3_the_right_number_of_the_wrong_sessions_fails(exercises):
    """rvx: the roots' number, then the oldest transactions or the lowest pids, passed every check."""
    for order_by in ("a.xact_start", "c.pid", "c.pid DESC"):
        status, diff = exercises[2].verdict(_as_many_roots_picked_by(order_by))
        assert status == INCORRECT and "does not hold" in diff, (order_by, diff)



def test_nb08_q3_a_session_ended_before_its_thread_ran_is_judged_ended(workbook):
    """CI (stop 29): a session the answer ended counted as alive when its thread, starved of CPU, had not yet read why."""
    import threading

    from workbook_utils import db

    libpq, app = workbook.url.replace("+psycopg", ""), f"{workbook.app_name} q3 test"
    with db.connect(libpq, application_name=app) as other, db.connect(libpq, application_name=app) as ended:
        staged, scheduled = nb08.Staged({"s": ended}, {}, failed={"s": []}), threading.Event()

        def late_thread():   # reads its connection only once the OS runs it
            scheduled.wait(5)
            staged._run("s")
        staged.statements["s"] = "SELECT 1"
        staged.threads["s"] = threading.Thread(target=late_thread, daemon=True)
        staged.threads["s"].start()
        assert not nb08._has_news(ended) and staged.lives("s")   # nothing from the server yet: it lives
        other.execute("SELECT pg_terminate_backend(%s)", [ended.info.backend_pid])
        deadline = time.monotonic() + 5
        while not nb08._has_news(ended) and time.monotonic() < deadline:
            time.sleep(0.01)
        threading.Timer(0.05, scheduled.set).start()   # the thread runs 50 ms after the server told it
        assert not staged.lives("s") and staged.failed["s"]
