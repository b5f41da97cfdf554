"""The `workbook` command: doctor, db start|stop|status|url|psql, seed, reset, lab, run, provision, room."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import config, seed, server, urls
from .errors import WorkbookError

# jsonschema, under nbformat, imports rfc3987_syntax when it is installed (JupyterLab brings it), which builds a grammar
# for ~2 s at import; no notebook holds an IRI to validate, so `workbook run` and `room` start without it
sys.modules.setdefault("rfc3987_syntax", None)


def cmd_db(args: argparse.Namespace) -> int:
    if config.external_url() and args.action in ("start", "stop"):
        print(f"DATABASE_URL is set: the workbook uses {urls.where(urls.libpq_url())} and leaves the embedded server alone.")
        return 0
    if args.action == "start":
        t0 = time.perf_counter()
        st = server.start()
        print(f"embedded PostgreSQL running on 127.0.0.1:{st.port} (pid {st.pid}, {time.perf_counter() - t0:.2f} s)")
    elif args.action == "stop":
        server.stop()
        print("embedded PostgreSQL stopped")
    elif args.action == "status":
        if config.external_url():
            print(f"using DATABASE_URL: {urls.where(urls.libpq_url())}")
            return 0
        st = server.status()
        print(f"running on 127.0.0.1:{st.port} (pid {st.pid})" if st.running else "not running")
        return 0 if st.running else 3
    elif args.action == "url":
        print(urls.libpq_url(args.scale))
    elif args.action == "psql":
        psql = server.bin_path("psql")
        program = str(psql) if psql.exists() else "psql"
        os.execvp(program, [program, urls.libpq_url(args.scale), *args.psql_args])
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    if args.if_needed:
        seed.seed_if_needed(args.scale)
        return 0
    scale = args.scale or config.scale()
    print(f"Seeding the {scale} dataset …")
    print(f"Seeded in {seed.seed(scale):.1f} s.")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    seconds = seed.reset(args.scale)
    print(f"Dataset restored in {seconds:.2f} s.")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import checks

    ok = True
    for passed, line in checks():
        print(("  ok       " if passed else "  PROBLEM  ") + line)
        ok = ok and passed
    return 0 if ok else 1


def cmd_lab(args: argparse.Namespace) -> int:
    from .lab import start_lab

    seed.seed_if_needed()
    return start_lab()


def notebook_numbers(asked: list[str]) -> list[str]:
    """`6` or `06` → "06"; a number with no notebook is refused with the list of those that exist."""
    from .notebook_files import notebook_paths

    existing = [p.name[:2] for p in notebook_paths()]
    wanted = [n.zfill(2) if n.isdigit() else n for n in asked]
    if unknown := [a for a, n in zip(asked, wanted, strict=True) if n not in existing]:
        raise WorkbookError(f"no notebook {', '.join(unknown)}: the notebooks are {' '.join(existing)}.")
    return wanted


def cmd_run(args: argparse.Namespace) -> int:
    from .handout import write_checklist
    from .notebook_files import run_all

    args.numbers = notebook_numbers(args.numbers)  # before seeding: a typo is told at once
    seed.seed_if_needed()
    build = (args.build or config.project_root() / "build") / ("solutions" if args.solutions else "")
    failures = run_all(build, timeout=args.timeout, numbers=args.numbers, solutions=args.solutions)
    print(f"checklist, the handout to print: {write_checklist(build)}")
    return 1 if failures else 0


def cmd_provision(args: argparse.Namespace) -> int:
    from . import learners

    if args.drop:
        learners.drop(args.prefix)
        return 0
    if not args.learners or args.learners < 1:
        raise WorkbookError("Say how many: workbook provision --learners N (or --drop to remove them).")
    learners.provision(args.learners, prefix=args.prefix, out=Path(args.out).resolve(), force=args.force)
    return 0


def cmd_room(args: argparse.Namespace) -> int:
    from . import room

    while True:
        start = time.perf_counter()
        view = room.render(room.read_room(args.prefix))
        if args.watch:
            print("\033[H\033[2J", end="")  # clear the terminal
        print(view)
        print(f"(read in {time.perf_counter() - start:.2f} s{f'; every {args.watch:g} s, Ctrl-C stops' if args.watch else ''})")
        if not args.watch:
            return 0
        time.sleep(args.watch)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("db", help="the embedded PostgreSQL server")
    d.add_argument("action", choices=["start", "stop", "status", "url", "psql"],
                   help="psql passes any further arguments on, e.g. workbook db psql -c 'SELECT 1'")
    d.add_argument("--scale", choices=config.SCALES)
    d.set_defaults(func=cmd_db)
    s = sub.add_parser("seed", help="load the dataset (refuses databases the workbook did not create)")
    s.add_argument("--scale", choices=config.SCALES)
    s.add_argument("--if-needed", action="store_true", help="only if this scale is not seeded yet")
    s.set_defaults(func=cmd_seed)
    r = sub.add_parser("reset", help="restore the pristine dataset from its template copy")
    r.add_argument("--scale", choices=config.SCALES)
    r.set_defaults(func=cmd_reset)
    sub.add_parser("doctor", help="check server, version, extensions, limits, dataset").set_defaults(func=cmd_doctor)
    sub.add_parser("lab", help="prepare everything and start JupyterLab").set_defaults(func=cmd_lab)
    run = sub.add_parser("run", help="execute every notebook headless into build/ as HTML, with build/index.html")
    run.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 00 02 (the index lists them all)")
    run.add_argument("--solutions", action="store_true",
                     help="the solutions edition, into build/solutions/: each exercise run with its reference answer")
    run.add_argument("--build", type=Path, help="write the pages here instead of build/")
    run.add_argument("--timeout", type=int, default=600, help="seconds allowed per notebook")
    run.set_defaults(func=cmd_run)
    pr = sub.add_parser("provision", help="a role and a database per learner on a shared server (DATABASE_URL: an admin)")
    pr.add_argument("--learners", type=int, help="how many learners the room holds (existing ones are kept)")
    pr.add_argument("--prefix", default="learner", help="learner names: PREFIX01, PREFIX02, … (default: learner)")
    pr.add_argument("--out", default="learners.csv", help="CSV of URLs; a printable .html is written beside it")
    pr.add_argument("--force", action="store_true", help="provision even if the server cannot hold the room")
    pr.add_argument("--drop", action="store_true", help="remove the roles and databases provision made")
    pr.set_defaults(func=cmd_provision)
    rm = sub.add_parser("room", help="the facilitator's view: who solved, tried or has not started which exercise")
    rm.add_argument("--prefix", default="learner")
    rm.add_argument("--watch", type=float, nargs="?", const=10.0, default=0.0, metavar="SECONDS",
                    help="refresh every SECONDS (default 10)")
    rm.set_defaults(func=cmd_room)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    args.psql_args = extra
    if extra and getattr(args, "action", None) != "psql":
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except WorkbookError as exc:
        print(f"workbook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("workbook: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
