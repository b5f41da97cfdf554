"""Workers started at the same instant, and a steady load swept across pool sizes; every wait bounded (notebook 01)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import WorkbookError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection, Engine


@dataclass
class Lane:
    """One worker's timeline: call `lane.phase("holding")` each time the worker moves to a new phase."""

    worker: int
    t0: float
    marks: list[tuple[str, float]] = field(default_factory=list)

    def phase(self, name: str) -> None:
        self.marks.append((name, time.perf_counter() - self.t0))


@dataclass
class Run:
    """What `run_together` saw: one row per worker (outcomes) and one row per phase of each worker (phases)."""

    outcomes: pd.DataFrame
    phases: pd.DataFrame

    def count(self, outcome: str) -> int:
        """How many workers ended with this outcome ("ok" or an exception class name)."""
        return int((self.outcomes["outcome"] == outcome).sum())


def run_together(work: Callable[[Lane], Any], n: int, first_phase: str = "start", timeout: float = 30.0) -> Run:
    """Run `work(lane)` in n threads released together; exceptions become outcomes; waits at most `timeout` s."""
    import pandas as pd

    barrier = threading.Barrier(n + 1)
    lanes = [Lane(i, 0.0) for i in range(n)]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]

    def body(lane: Lane) -> None:
        barrier.wait(timeout)
        lane.t0 = t0
        lane.phase(first_phase)
        try:
            rows[lane.worker] = {"outcome": "ok", "error": "", "result": work(lane)}
        except Exception as exc:  # the failure is the observation: record its class and first line
            first_line = (str(exc).splitlines() or [""])[0]
            rows[lane.worker] = {"outcome": type(exc).__name__, "error": first_line, "result": None}
        lane.phase("end")

    threads = [threading.Thread(target=body, args=(lane,), daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    barrier.wait(timeout)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise WorkbookError(f"{sum(t.is_alive() for t in threads)} of {n} workers were still running after {timeout} s")
    outcomes = pd.DataFrame([{"worker": lane.worker, **row, "seconds": lane.marks[-1][1]}
                             for lane, row in zip(lanes, rows, strict=True)]).set_index("worker")
    phases = pd.DataFrame([{"worker": lane.worker, "phase": name, "start": start, "end": end}
                           for lane in lanes
                           for (name, start), (_, end) in zip(lane.marks, lane.marks[1:], strict=False)])
    return Run(outcomes, phases)


def lanes_of(runs: dict[str, Run], lane: Callable[[int], str] = lambda worker: f"request {worker}"
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Several runs' phases and outcomes for one swim-lane chart, each lane named "<run>: <lane(worker)>".

    Notebook 01 §2 and §7 draw a failing run and its fix on one time axis with it (charts.lanes).
    """
    import pandas as pd

    def name(run_name: str) -> Callable[[int], str]:
        return lambda worker: f"{run_name}: {lane(worker)}"

    return (pd.concat([run.phases.assign(worker=run.phases.worker.map(name(n))) for n, run in runs.items()]),
            pd.concat([run.outcomes.rename(index=name(n)) for n, run in runs.items()]))


def steady_load(engine: Engine, work: Callable[[Connection], Any], clients: int, seconds: float,
                think: float = 0.001) -> pd.DataFrame:
    """`clients` threads run `work(conn)` back to back on `engine` for `seconds`: one row per request.

    Each request checks out a connection (the wait is timed), runs `work` (timed), gives the connection back,
    and its client pauses `think` seconds, as a web worker does its own work between two queries. Rows:
    `wait ms`, `query ms`, `latency ms` (the two together) and `finished` (seconds since the start). A failed
    request is a row with an `error` (its exception class); a client stops after its first failure.
    """
    import pandas as pd

    barrier, lock = threading.Barrier(clients + 1), threading.Lock()
    rows: list[dict[str, Any]] = []
    t0 = deadline = 0.0

    def client() -> None:
        mine = []
        barrier.wait(seconds + 30)
        while (start := time.perf_counter()) < deadline:
            try:
                with engine.connect() as conn:
                    got = time.perf_counter()
                    work(conn)
            except Exception as exc:  # the failure is the observation
                mine.append({"wait ms": float("nan"), "query ms": float("nan"), "error": type(exc).__name__,
                             "finished": time.perf_counter() - t0})
                break
            end = time.perf_counter()
            mine.append({"wait ms": (got - start) * 1000, "query ms": (end - got) * 1000, "error": "",
                         "finished": end - t0})
            time.sleep(think)
        with lock:
            rows.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    barrier.wait(seconds + 30)
    for thread in threads:
        thread.join(max(0.0, deadline + 30 - time.perf_counter()))
    if alive := sum(thread.is_alive() for thread in threads):
        raise WorkbookError(f"{alive} of {clients} clients were still running 30 s after the load ended")
    requests = pd.DataFrame(rows, columns=["wait ms", "query ms", "error", "finished"])
    requests["latency ms"] = requests["wait ms"] + requests["query ms"]
    return requests


def pool_sweep(make_engine: Callable[[int], Engine], sizes: list[int], work: Callable[[Connection], Any],
               clients: int, seconds: float, rounds: int = 3) -> pd.DataFrame:
    """The same steady load (`clients` running `work`) on a pool of each size: one row per pool size.

    Taught in notebook 01 ("How big should the pool be? Measured"). Each size runs `rounds` times for `seconds`,
    the sizes taking turns, so a machine whose load drifts does not favour one size; throughput is the median
    round. `make_engine(size)` makes each round's engine; its pool is filled before the clients start (opening
    connections is not what is measured) and disposed after. Columns: `queries/s`, the p50/p95/p99 latency in ms
    (waiting for a connection plus the query), the mean wait and mean query time, and `failed` requests.
    """
    import pandas as pd

    per_size: dict[int, list[pd.DataFrame]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            engine = make_engine(size)
            try:
                held = [engine.connect() for _ in range(size)]
                for conn in held:
                    conn.close()
                per_size[size].append(steady_load(engine, work, clients, seconds))
            finally:
                engine.dispose()
    rows = {}
    for size, runs in per_size.items():
        requests = pd.concat(runs, ignore_index=True)
        ok = requests[requests["error"] == ""]
        latency = ok["latency ms"]
        throughput = pd.Series([((run["error"] == "") & (run["finished"] <= seconds)).sum() / seconds for run in runs])
        rows[size] = {"queries/s": throughput.median(),
                      "p50 ms": latency.quantile(0.50), "p95 ms": latency.quantile(0.95),
                      "p99 ms": latency.quantile(0.99), "mean wait ms": ok["wait ms"].mean(),
                      "mean query ms": ok["query ms"].mean(), "failed": int((requests["error"] != "").sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pool_size")


def _cpu_ticks(pid: int | str) -> tuple[int, int]:
    """(this process's own CPU ticks, its reaped children's), from /proc/<pid>/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # after "(name)": state is field 0
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _server_ticks(postmaster: int) -> int:
    """CPU ticks of a PostgreSQL server: the postmaster, its reaped children and its live ones."""
    own, reaped = _cpu_ticks(postmaster)
    total = own + reaped
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile: its time is in the postmaster's reaped children now
                continue
            if int(stat[1]) == postmaster:
                total += int(stat[11]) + int(stat[12])
    return total


@dataclass
class OtherCpu:
    """How many cores other programs kept busy while `cpu_of_others` ran (None where /proc cannot tell)."""

    cores: float | None = None


@contextmanager
def cpu_of_others(server_pid: int | None) -> Iterator[OtherCpu]:
    """Measure the CPU that programs other than this process and the server (`server_pid`: its postmaster, on
    this machine) used while the block ran, in cores: the evidence that a measurement shared the machine.

    Linux only (/proc); elsewhere, or without the server's pid, `cores` stays None. Notebook 01 §5 measures
    throughput again when other programs were busy.
    """
    result = OtherCpu()

    def sample() -> tuple[int, int, int]:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
        return user + nice + system + irq + softirq + steal, _cpu_ticks("self")[0], _server_ticks(server_pid)

    try:
        before = sample() if server_pid else None
    except (OSError, ValueError):
        before = None
    start = time.perf_counter()
    yield result
    if before is not None:
        after = sample()
        busy, ours, server = (a - b for a, b in zip(after, before, strict=True))
        result.cores = max(0, busy - ours - server) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - start)


def postmaster_pid(engine: Engine) -> int | None:
    """The pid of the PostgreSQL server behind `engine` when it runs on this machine (its checkpointer's parent)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")).scalar()
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) if pid else None
    except (OSError, ValueError):
        return None
