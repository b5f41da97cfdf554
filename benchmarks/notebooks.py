"""Time every notebook top to bottom on a fresh kernel, at one scale, against the issues' budgets.

    .venv/bin/python benchmarks/notebooks.py [--scale tiny|small] [NN ...]

Budgets (issues 3 and 4): each notebook under 60 s at tiny and under 3 minutes at small, on 2 cores.
Uses the embedded server (or DATABASE_URL) as the notebooks do; seeds the scale first if it is missing,
so the seed is not counted.
"""

from __future__ import annotations

import argparse
import os
import time

BUDGETS = {"tiny": 60, "small": 180}


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
        over += seconds > BUDGETS[args.scale]
        print(f"{path.name:<42}{seconds:7.1f} s   budget {BUDGETS[args.scale]} s at {args.scale}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
