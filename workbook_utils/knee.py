"""Where a bigger pool stops helping (notebook 01 §5): the pool sizes to sweep, and the throughput whose shape the
notebook asserts, measured again when other programs kept this machine's cores busy meanwhile.

The sweep itself is `workload.pool_sweep`; this module holds what a lesson cell should not: the choice of sizes,
the re-measurement on a busy machine and the decision whether a shape measured on a shared machine is evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .workload import cpu_of_others

if TYPE_CHECKING:
    import pandas as pd

BUSY = 0.25  # cores other programs may keep busy before a measurement counts as sharing the machine
RISE, FLAT = 1.5, 1.15  # up to the cores: at least 1.5× pool 1; past them: at most 1.15× pool = cores


def pool_sizes(cores: int, room: int) -> list[int]:
    """1, 2, the cores, twice and eight times the cores: those that fit in `room` free connection slots (at least 1).

    Enough points for the knee on a log axis; each extra size costs the sweep `rounds × seconds`.
    """
    return sorted({size for size in (1, 2, cores, 2 * cores, 8 * cores) if size <= max(room, 1)})


def shape_holds(throughput: pd.Series, cores: int) -> bool:
    """Throughput rises up to the cores (pool = cores at least RISE × pool 1) and is flat past them (the largest pool
    at most FLAT × pool = cores). A size not measured does not count against it."""
    largest = max(throughput.index)
    rises = cores not in throughput.index or throughput[cores] >= RISE * throughput[1]
    flat = largest <= cores or cores not in throughput.index or throughput[largest] <= FLAT * throughput[cores]
    return rises and flat


def settled_throughput(sweep: pd.DataFrame, cores: int, measure_again: Callable[[list[int]], pd.DataFrame],
                       server_pid: int | None, tries: int = 1, busy: float = BUSY,
                       say: Callable[[str], None] = print) -> pd.Series | None:
    """The sweep's throughput (queries/s by pool size) to assert the shape on, or None when it is no evidence.

    None (and `say` tells why) when the server's cores are unknown (`server_pid` None: a DATABASE_URL server), when
    this machine has one core, when the server had no room for a pool of `cores`, or when other programs kept at least
    `busy` cores busy through every measurement. While
    the shape does not hold, the three sizes it is asserted on (1, the cores, the largest) are measured again with
    `measure_again(sizes)`, up to `tries` times. A quiet machine without the shape gets its throughput back: the
    notebook's assertion then fails, as it should.
    """
    throughput = sweep["queries/s"]
    if server_pid is None:
        say("On a DATABASE_URL server the notebook cannot know the server's cores: the charts are the evidence.")
        return None
    if cores < 2:
        say("This machine has one core: there is no rise to see, only the flat line.")
        return None
    if cores not in throughput.index:
        say(f"The server had no room for a pool of {cores} connections (= cores): the charts are the evidence.")
        return None
    used: float | None = None  # cores other programs kept busy during the last measurement
    for _ in range(tries):
        if shape_holds(throughput, cores):
            return throughput
        say("The throughput did not have its shape (other programs may have taken cores from the server): "
            "measured again.")
        with cpu_of_others(server_pid) as others:
            throughput = measure_again(sorted({1, cores, max(sweep.index)} & set(sweep.index)))["queries/s"]
        used = others.cores
    if not shape_holds(throughput, cores) and used is not None and used >= busy:
        say(f"The machine stayed busy: other programs used {used:.2f} of its {cores} cores while it measured, "
            "so the shape is not asserted; run this cell again on a quiet machine.")
        return None
    return throughput
