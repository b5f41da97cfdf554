"""Measure the foundation's budgets on a throwaway embedded server: start times, seed vs pgbench, reset.

    .venv/bin/python benchmarks/budgets.py [--runs 3]

Budgets (issue 2): first start incl. initdb < 5 s; start on an existing data directory < 2 s;
`workbook seed --scale small` within 3x of `pgbench -i -s 10` on the same server; reset < 3 s at small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pgbench_init(server, db, urls) -> float:
    """Seconds for `pgbench -i -s 10` (1 million accounts) into a fresh database."""
    with db.connect(urls.admin_url()) as admin:
        admin.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        admin.execute("CREATE DATABASE bench")
    url = urls.with_database(urls.admin_url(), "bench")
    cmd = [str(server.bin_path("pgbench")), "-i", "-s", "10", "-q", url]
    return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="workbook-bench-"))
    os.environ["WORKBOOK_HOME"] = str(home)  # a separate server: your own .workbook is not touched
    os.environ.pop("DATABASE_URL", None)
    from workbook_utils import db, seed, server, urls

    try:
        first = timed(server.start)
        server.stop()
        warms = []
        for _ in range(args.runs):
            warms.append(timed(server.start))
            server.stop()
        warm = statistics.median(warms)
        server.start()
        seeds, benches, resets, templates = [], [], [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine state
            benches.append(pgbench_init(server, db, urls))
            seeds.append(timed(lambda: seed.seed("small", progress=lambda _: None)))
            templates.append(timed(lambda: seed.save_template(urls.database_name("small"))))  # its share of the seed
            resets.append(timed(lambda: seed.reset("small", progress=lambda _: None)))
        s, b, r, t = (statistics.median(x) for x in (seeds, benches, resets, templates))
        print(f"server first start (initdb)   {first:6.2f} s   budget 5 s")
        print(f"server start, existing data   {warm:6.2f} s   budget 2 s   (median of {args.runs})")
        print(f"pgbench -i -s 10              {b:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in benches)}")
        print(f"workbook seed --scale small   {s:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in seeds)}")
        best = min(seeds) / min(benches)
        print(f"seed / pgbench                {s / b:6.2f} x   budget 3 x   (best run / best run: {best:.2f} x)")
        print(f"  of which the template copy  {t:6.2f} s   (for reset; without it {(s - t) / b:.2f} x)")
        print(f"workbook reset (small)        {r:6.2f} s   budget 3 s   runs: {', '.join(f'{x:.2f}' for x in resets)}")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
