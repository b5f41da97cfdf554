"""Measure a workshop room (issue 17) on the embedded server: the per-learner connection peak, provisioning, `room`.

    .venv/bin/python benchmarks/room.py peak [NN ...]        # connections each notebook opens at once (tiny)
    .venv/bin/python benchmarks/room.py room [--learners 30] [--scale small]

`peak` runs the notebooks while sampling pg_stat_activity every 10 ms, and prints the most sessions in the
notebook's database seen at once: learners.CONNECTION_LIMIT is that peak plus headroom.
`room` provisions N learners (seconds, target about a second each), records an outcome in every learner's
database, times `workbook room` (target under 2 s for 30), then drops them. The embedded server is a stand-in:
max_connections 50 cannot hold 30 learners at their limit, so it runs with --force.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path


def sample(seen: list[int], done: threading.Event) -> None:
    """Keep in seen[0] the most sessions in the notebook's database seen at once, every 10 ms until `done`.

    Counted by database, not by role: a learner's notebooks also connect as roles they create (notebook 01's
    limited roles, notebook 09's PgBouncer pools), and each of those sessions takes a slot of max_connections too.
    """
    from workbook_utils import db, urls

    with db.connect(urls.admin_url(), application_name="workbook-bench-peak") as conn:
        while not done.is_set():
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                             [urls.database_name("tiny")]).fetchone()[0]
            seen[0] = max(seen[0], n)
            time.sleep(0.01)


def peak(numbers: list[str]) -> int:
    from workbook_utils import seed
    from workbook_utils.notebook_files import execute, notebook_paths

    seed.seed_if_needed("tiny")
    highest = 0
    for path in notebook_paths():
        if numbers and path.name[:2] not in numbers:
            continue
        seen, done = [0], threading.Event()
        sampler = threading.Thread(target=sample, args=(seen, done))
        sampler.start()
        start = time.perf_counter()
        try:
            execute(path)
        finally:
            done.set()
            sampler.join(10)
        highest = max(highest, seen[0])
        print(f"{path.name:<42}peak {seen[0]:3d} sessions in its database   ({time.perf_counter() - start:.0f} s)",
              flush=True)
    print(f"highest: {highest}")
    return 0


def room(learners: int, scale: str) -> int:
    from workbook_utils import db, seed
    from workbook_utils import learners as learners_mod
    from workbook_utils import room as room_mod

    seed.seed_if_needed(scale)
    prefix = "benchlearner"
    learners_mod.drop(prefix, say=lambda _: None)
    start = time.perf_counter()
    out = Path(tempfile.mkdtemp()) / "learners.csv"  # not the project's learners.csv: a real room's may be there
    made = learners_mod.provision(learners, prefix=prefix, out=out, scale=scale, force=True, say=lambda _: None)
    seconds = time.perf_counter() - start
    print(f"provisioned {learners} learners at {scale} in {seconds:.1f} s ({seconds / learners:.2f} s per learner)")
    with db.connect(made[0].url) as conn:
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    print(f"disk: {size} per learner at {scale}")
    try:
        for i, learner in enumerate(made):
            with db.connect(learner.url) as conn:
                room_mod.record(conn, "00", "q1", solved=i % 2 == 0)
        start = time.perf_counter()
        view = room_mod.read_room(prefix)
        seconds = time.perf_counter() - start
        print(f"workbook room over {len(view.learners)} learners: {seconds:.2f} s "
              f"({len(view.outcomes)} outcomes read)")
    finally:
        start = time.perf_counter()
        learners_mod.drop(prefix, say=lambda _: None)
        print(f"dropped them in {time.perf_counter() - start:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("peak")
    p.add_argument("numbers", nargs="*")
    r = sub.add_parser("room")
    r.add_argument("--learners", type=int, default=30)
    r.add_argument("--scale", default="small")
    args = parser.parse_args()
    os.environ.pop("DATABASE_URL", None)
    if args.what == "peak":
        os.environ["WORKBOOK_SCALE"] = "tiny"  # before workbook_utils reads it (also for the kernels)
        return peak(args.numbers)
    os.environ["WORKBOOK_SCALE"] = args.scale
    return room(args.learners, args.scale)


if __name__ == "__main__":
    raise SystemExit(main())
