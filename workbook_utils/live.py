"""Live controls (issue 26 §3): widgets a room moves to rerun a demo of notebooks 01 (§5), 02 (§2) and 05 (§3).

Each control is a `Live`: its widgets, an output area that shows the last run, and `result`, what the last run
measured. Moving a widget reruns the demo with the new values; a test sets a widget's `value` and reads `result`.
Every default run is short (about 2 s at scale tiny), bounded by timeouts, and leaves no session open.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sqlalchemy.engine import Engine

    from .workbook import Workbook

REQUEST_MS = 20.0  # 01: the server time of one request, split between CPU work and waiting (pg_sleep)
SWEEP_SECONDS = 0.15  # 01: how long each pool size runs per redraw
KNEE = 0.7  # 01: the knee is the smallest pool reaching this share of the best throughput
LOCK_TIMEOUTS = {"none": None, "50 ms": 50, "200 ms": 200, "1 s": 1000}  # 05's choices, in ms
HOLDS = (0.2, 0.5, 1.0, 2.0)  # 05: seconds the blocking transaction lasts
# CPU work only: generate_series in the select list streams its rows (in FROM it would fill a tuplestore, which
# spills to a temporary file beyond work_mem: disk waits, not CPU)
COUNT_ROWS = "SELECT count(*) FROM (SELECT generate_series(1, :rows)) AS g"
_ROWS_PER_MS: dict[str, float] = {}  # 01: generate_series rows one server core counts per ms, by database URL


@dataclass
class Live:
    """A control: its widgets by name, what one run does with their values, and how a result is shown."""

    controls: dict[str, Any]
    run: Callable[..., Any]
    show: Callable[[Any], list[dict[str, Any]]]
    result: Any = None
    output: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets

        self.output = ipywidgets.Output()
        for widget in self.controls.values():
            widget.observe(self.refresh, names="value")
        self.refresh()

    def refresh(self, _change: object = None) -> None:
        """Run the demo with the widgets' values and replace the output with what it showed."""
        self.result = self.run(**{name: widget.value for name, widget in self.controls.items()})
        self.output.outputs = tuple(self.show(self.result))

    @property
    def widget(self) -> Any:
        """The controls above the output, as one box."""
        import ipywidgets

        return ipywidgets.VBox([ipywidgets.HBox(list(self.controls.values())), self.output])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def text_output(text: str) -> dict[str, Any]:
    """An output area entry that prints `text`."""
    return {"output_type": "stream", "name": "stdout", "text": text if text.endswith("\n") else text + "\n"}


def figure_output(fig: Figure) -> dict[str, Any]:
    """An output area entry that shows a matplotlib figure as a PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    title = fig.axes[0].get_title(loc="left") if fig.axes else ""
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": f"<figure: {title}>"}}


# ── 01 §5: the pool-size sweep, with a share of each request spent waiting ─────────────────────────────────────────


def rows_per_ms(engine: Engine) -> float:
    """Rows one server core counts per millisecond with COUNT_ROWS (measured once per database, best of three)."""
    from sqlalchemy import text

    key = str(engine.url)
    if key not in _ROWS_PER_MS:
        with engine.connect() as conn:
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                conn.execute(text(COUNT_ROWS), {"rows": 200_000}).scalar()
                best = min(best, time.perf_counter() - start)
        _ROWS_PER_MS[key] = 200_000 / (best * 1000)
    return _ROWS_PER_MS[key]


def request_work(engine: Engine, io_share: float) -> Callable[[Any], None]:
    """One request of REQUEST_MS on the server: (1 - io_share) of it counting rows (CPU), the rest in pg_sleep."""
    from sqlalchemy import text

    rows = max(int((1 - io_share) * REQUEST_MS * rows_per_ms(engine)), 1)
    statement = text(f"SELECT pg_sleep(:io), ({COUNT_ROWS})")
    params = {"io": io_share * REQUEST_MS / 1000, "rows": rows}

    def work(conn: Any) -> None:
        conn.execute(statement, params).all()

    return work


def knee_of(throughput: pd.Series, share: float = KNEE) -> int:
    """The smallest pool size whose throughput reaches `share` of the best one measured."""
    return int(min(size for size, rate in throughput.items() if rate >= share * throughput.max()))


def sweep_sizes(clients: int, pool_size: int) -> list[int]:
    """1, 2, 4, … up to the clients, and the pool size asked for (a pool beyond the clients is never busy)."""
    return sorted({2 ** k for k in range(int(math.log2(clients)) + 1)} | {min(pool_size, clients)})


def measure_pool(engine: Engine, work: Callable[[Any], None], clients: int, seconds: float) -> dict[str, float]:
    """`clients` running `work` back to back on `engine` for `seconds`: queries per second (every request finished,
    over the time the last one finished), the mean wait for a connection and the mean query, in ms."""
    from .workload import steady_load

    requests = steady_load(engine, work, clients, seconds)
    ok = requests[requests["error"] == ""]
    return {"queries/s": len(ok) / max(ok["finished"].max(), seconds), "mean wait ms": ok["wait ms"].mean(),
            "mean query ms": ok["query ms"].mean(), "failed": int((requests["error"] != "").sum())}


def run_pool_sweep(wb: Workbook, pool_size: int, clients: int, io_share: float) -> pd.DataFrame:
    """Notebook 01 §5's sweep on requests that spend `io_share` of their time waiting: one row per pool size.

    Each size gets an engine whose connections are opened before it is measured and closed after, so a redraw
    leaves no session open.
    """
    import pandas as pd

    from .db import make_engine

    work = request_work(wb.engine, io_share)
    rows = {}
    for size in sweep_sizes(clients, pool_size):
        engine = make_engine(wb.url, pool_size=size, max_overflow=0, pool_timeout=30,
                             connect_args={"application_name": wb.app_name, "options": "-c statement_timeout=5000"})
        try:
            for conn in [engine.connect() for _ in range(size)]:
                conn.close()
            rows[size] = measure_pool(engine, work, clients, SWEEP_SECONDS)
        finally:
            engine.dispose()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pool_size")


def show_pool_sweep(sweep: pd.DataFrame, cores: int, pool_size: int, io_share: float) -> list[dict[str, Any]]:
    """The throughput by pool size, with the knee, the cores and the chosen pool marked, and one line of numbers."""
    import matplotlib.pyplot as plt

    from .charts import FIXED, NEUTRAL, plain_numbers

    knee = knee_of(sweep["queries/s"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(sweep.index, sweep["queries/s"], marker="o", color=FIXED)
    ax.set(xscale="log", xlabel="pool_size", ylabel="queries per second", ylim=(0, None))
    ax.axvline(knee, color="#d35400", linestyle="--", linewidth=1.2, label=f"knee: pool {knee}")
    ax.axvline(cores, color=NEUTRAL, linestyle=":", linewidth=1, label=f"cores: {cores}")
    chosen = min(pool_size, max(sweep.index))
    ax.scatter([chosen], [sweep.loc[chosen, "queries/s"]], s=90, facecolors="none", edgecolors="black",
               label=f"your pool: {pool_size}")
    ax.set_title(f"{round(io_share * 100)}% of each request waiting (pg_sleep): throughput by pool size", loc="left",
                 fontsize=11)
    ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    plain_numbers(ax)
    ax.set_xticks(list(sweep.index), [str(size) for size in sweep.index])  # the sizes measured, after plain_numbers
    ax.minorticks_off()
    fig.tight_layout()
    row, expected = sweep.loc[chosen], cores / max(1 - io_share, 0.01)
    edge = " (the largest pool measured: more clients show further)" if knee == max(sweep.index) < expected else ""
    return [figure_output(fig), text_output(
        f"knee at pool {knee}{edge}; the cores run out near {cores} cores ÷ {1 - io_share:.2f} CPU share ≈ "
        f"{expected:.0f}; "
        f"pool {chosen}: {row['queries/s']:.0f} queries/s, waited {row['mean wait ms']:.1f} ms for a connection, "
        f"queried {row['mean query ms']:.1f} ms")]


def pool_sweep(wb: Workbook, cores: int | None = None, io_share: float = 0.5, clients: int = 8) -> Live:
    """Notebook 01 §5, live: pool size, clients and the I/O share of each request; the knee moves right with the I/O.

    `io_share` and `clients` are where the controls start."""
    import os

    import ipywidgets

    from .pooling import connections_left

    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    most = max(min(32, connections_left(wb.engine) - 4), 2)
    style = {"description_width": "initial"}
    controls = {
        "pool_size": ipywidgets.IntSlider(value=min(2 * cores, 8, most), min=1, max=most, description="pool size",
                                          continuous_update=False, style=style),
        "clients": ipywidgets.IntSlider(value=min(clients, most), min=2, max=most, description="clients",
                                        continuous_update=False, style=style),
        "io_share": ipywidgets.FloatSlider(value=io_share, min=0.0, max=0.9, step=0.1, description="I/O share",
                                           readout_format=".0%", continuous_update=False, style=style),
    }

    def run(pool_size: int, clients: int, io_share: float) -> dict[str, Any]:
        sweep = run_pool_sweep(wb, pool_size, clients, io_share)
        return {"sweep": sweep, "knee": knee_of(sweep["queries/s"]), "pool_size": pool_size, "io_share": io_share}

    def show(result: dict[str, Any]) -> list[dict[str, Any]]:
        return show_pool_sweep(result["sweep"], cores, result["pool_size"], result["io_share"])

    return Live(controls, run, show)


# ── 02 §2: N+1, by page size and loader ─────────────────────────────────────────────────────────────────────────────


def loader_options(loader: str) -> tuple[Any, ...]:
    """The loader option of notebook 02 §2's feed for `loader` (lazy, selectinload or joinedload)."""
    from sqlalchemy.orm import joinedload, selectinload

    from .models import Post

    return {"lazy": (), "selectinload": (selectinload(Post.comments),), "joinedload": (joinedload(Post.comments),)}[loader]


def run_feed(wb: Workbook, engine: Engine, n: int, loader: str) -> dict[str, Any]:
    """Notebook 02 §2's feed (the newest n posts with their comments): the statements it sent and its time."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from .measure import capture_sql
    from .models import Post

    start = time.perf_counter()
    with Session(engine) as session, capture_sql(wb.engine) as sent:
        query = select(Post).order_by(Post.id.desc()).limit(n).options(*loader_options(loader))
        comments = sum(len(post.comments) for post in session.scalars(query).unique())
    return {"n": n, "loader": loader, "statements": sent.statements, "ms": (time.perf_counter() - start) * 1000,
            "comments": comments}


def show_feed(result: dict[str, Any], shown: int = 3) -> list[dict[str, Any]]:
    """The statement count and time as one line, then the first statements sent (the rest counted, not shown)."""
    statements = result["statements"]
    lines = [f"{result['loader']}, N = {result['n']}: {len(statements)} statements, {result['ms']:.0f} ms, "
             f"{result['comments']} comments loaded", ""]
    for number, statement in enumerate(statements[:shown], 1):
        lines.append(f"-- statement {number}\n{' '.join(statement.split())[:400]}")
    if len(statements) > shown:
        lines.append(f"-- … and {len(statements) - shown} more like the last one")
    return [text_output("\n".join(lines))]


def n_plus_one(wb: Workbook, engine: Engine | None = None) -> Live:
    """Notebook 02 §2, live: N from 1 to 1,000 and the loader; the statements sent, the time and the SQL."""
    import ipywidgets

    engine = engine or wb.engine
    controls = {
        "n": ipywidgets.IntSlider(value=50, min=1, max=1000, description="N posts", continuous_update=False),
        "loader": ipywidgets.ToggleButtons(options=["lazy", "selectinload", "joinedload"], value="lazy",
                                           description="loader"),
    }
    return Live(controls, lambda n, loader: run_feed(wb, engine, n, loader), show_feed)


# ── 05 §3: the lock queue behind an ALTER TABLE, by lock_timeout and how long the blocker lasts ─────────────────────


def alter_attempts(url: str, app_name: str, table: str, lock_timeout_ms: int | None, deadline: float,
                   attempts: list[dict[str, Any]]) -> None:
    """ALTER TABLE `table` ADD COLUMN, rolled back, retried with backoff after each lock timeout until `deadline`."""
    import psycopg

    from .db import connect

    with connect(url, autocommit=False, application_name=f"{app_name}-migration") as conn:
        conn.execute(f"SET lock_timeout = {int(lock_timeout_ms or 0)}")
        conn.execute("SET statement_timeout = 10000")  # "none" still ends: 10 s at most
        conn.commit()
        pause = 0.05
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN live_probe text")
                outcome = "ok"
            except psycopg.errors.LockNotAvailable:
                outcome = "LockNotAvailable"
            finally:
                conn.rollback()  # the column never stays: the demo can run again
            attempts.append({"outcome": outcome, "waited_ms": (time.perf_counter() - start) * 1000})
            if outcome == "ok":
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.4)


def run_lock_queue(wb: Workbook, table: str, lock_timeout: str, hold: float) -> dict[str, Any]:
    """A long transaction holds `table` for `hold` s while an ALTER TABLE waits (retrying under `lock_timeout`)
    and a workload of readers and writers runs: the workload's statements and the ALTER's attempts."""
    from .db import connect
    from .errors import WorkbookError
    from .traffic import Traffic

    libpq = wb.url.replace("+psycopg", "")
    read, write = f"SELECT name FROM {table} WHERE id = %(k)s", f"UPDATE {table} SET name = name WHERE id = %(k)s"
    attempts: list[dict[str, Any]] = []
    with Traffic(libpq, wb.app_name, read, write) as run, connect(libpq, autocommit=False,
                                                                  application_name=wb.app_name) as report:
        time.sleep(0.1)  # the workload before the migration
        report.execute(f"SELECT count(*) FROM {table}")  # the long transaction: ACCESS SHARE until it ends
        with run.window():
            alter = threading.Thread(target=alter_attempts, daemon=True, args=(
                libpq, wb.app_name, table, LOCK_TIMEOUTS[lock_timeout], time.monotonic() + hold + 5, attempts))
            alter.start()
            time.sleep(hold)
            report.rollback()  # the long transaction ends
            alter.join(hold + 15)
        if alter.is_alive():
            raise WorkbookError("the ALTER TABLE did not end within its deadline")
        time.sleep(0.1)  # the workload after it
    return {"lock_timeout": lock_timeout, "hold": hold, "traffic": run, "attempts": attempts}


def show_lock_queue(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The traffic timeline, and one line: the ALTER's attempts and the workload's longest wait and failures."""
    from .traffic import summary, timeline

    failing = ("no lock_timeout",) if result["lock_timeout"] == "none" else ()
    label = "no lock_timeout" if failing else f"lock_timeout {result['lock_timeout']} + retry"
    ax = timeline({label: result["traffic"]}, f"ALTER TABLE behind a {result['hold']} s transaction", failing=failing)
    statements = result["traffic"].result()
    waits = [round(a["waited_ms"]) for a in result["attempts"]]
    counts = summary(statements)
    return [figure_output(ax.figure), text_output(
        f"ALTER TABLE: {len(waits)} attempt(s), waited {waits} ms, last: {result['attempts'][-1]['outcome']}; "
        f"workload: {counts['statements']} statements, {counts['waited on a lock']} waited on a lock, "
        f"{counts['failed']} failed, the slowest took {statements['latency_ms'].max():.0f} ms")]


def lock_queue(wb: Workbook, table: str | None = None, lock_timeout: str = "200 ms", hold: float = 0.5) -> Live:
    """Notebook 05 §3, live: lock_timeout and how long the blocking transaction lasts, driving the traffic timeline.

    `table` defaults to the notebook's copy of users; `lock_timeout` (a key of LOCK_TIMEOUTS) and `hold` (one of
    HOLDS) are where the controls start."""
    import ipywidgets

    table = table or f"{wb.schema}.users"
    controls = {
        "lock_timeout": ipywidgets.ToggleButtons(options=list(LOCK_TIMEOUTS), value=lock_timeout,
                                                 description="lock_timeout"),
        "hold": ipywidgets.SelectionSlider(options=list(HOLDS), value=hold, description="blocker (s)",
                                           continuous_update=False),
    }
    return Live(controls, lambda lock_timeout, hold: run_lock_queue(wb, table, lock_timeout, hold), show_lock_queue)
