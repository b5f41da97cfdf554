"""Time every notebook top to bottom on a fresh kernel, at one scale, against the issues' budgets.

    .venv/bin/python benchmarks/notebooks.py [--scale tiny|small] [NN ...]

Budgets (issues 3, 4 and 12): each notebook under 60 s at tiny and under 3 minutes at small, on 2 cores;
notebook 05 (migrations under a live workload) under 90 s and 4 minutes.
Uses the embedded server (or DATABASE_URL) as the notebooks do; seeds the scale first if it is missing,
so the seed is not counted.
"""

from __future__ import annotations

import argparse
import os
import time

BUDGETS = {"tiny": 60, "small": 180}
OWN_BUDGETS = {"05": {"tiny": 90, "small": 240}}  # notebooks whose issue gives them more


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(BUDGETS), default="tiny")
    parser.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 01 02")
    args = parser.parse_args()
    os.environ["WORKBOOK_SCALE"] = args.scale  # before workbook_utils reads it (also for the kernels)
    from workbook_utils import seed
    from workbook_utils.notebook_files import execute, notebook_paths

    seed.seed_if_needed(args.scale)
    over = 0
    for path in notebook_paths():
        if args.numbers and path.name[:2] not in args.numbers:
            continue
        start = time.perf_counter()
        execute(path)
        seconds = time.perf_counter() - start
        budget = OWN_BUDGETS.get(path.name[:2], BUDGETS)[args.scale]
        over += seconds > budget
        print(f"{path.name:<42}{seconds:7.1f} s   budget {budget} s at {args.scale}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
