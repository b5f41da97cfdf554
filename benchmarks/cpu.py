"""Wall time and CPU of a command (notebook runs, a few tests), split into the command's own processes and the server's.

    .venv/bin/python benchmarks/cpu.py [--repeat 3] [--against DIR] -- python -m pytest tests/test_races.py -q
    .venv/bin/python benchmarks/cpu.py [--repeat 3] [--against DIR] --notebook 04 [--rerun]

CPU of the command = user + system of it and every child it waited for (Jupyter kernels, pytest subprocesses);
CPU of the server = the embedded postmaster's backends (reaped and live) over the same time. With `--against DIR`
(a copy of another commit, e.g. `git archive main | tar -x -C DIR`, whose .workbook is a symlink to this one's),
each repeat runs DIR's code first, then this checkout's, back to back, on the same server: an A/B on a shared
machine. A "python" first word means this venv's interpreter. Not a test: figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def server_cpu() -> tuple[int, float]:
    """The embedded postmaster's pid, and CPU seconds its processes have used so far (its own, live and reaped
    children)."""
    import psutil

    pid = int((ROOT / ".workbook" / "pgdata" / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    t = postmaster.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in postmaster.children():
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return pid, total


def measure(command: list[str], tree: Path) -> dict[str, float]:
    """Run `command` in `tree` (its code first on sys.path); wall seconds, CPU of the command and of the server."""
    env = {**os.environ, "PYTHONPATH": str(tree), "WORKBOOK_SCALE": "tiny"}
    before, server_before, start = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(), time.perf_counter()
    code = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True).returncode
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if code not in (0, 5):
        print(f"  exit status {code} in {tree}", file=sys.stderr)
    (pid, server_after), (pid_before, server_before) = server_cpu(), server_before
    return {"wall": wall, "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            "server": server_after - server_before if pid == pid_before else float("nan")}  # nan: it was restarted


def notebook_command(number: str, rerun: bool) -> list[str]:
    """Execute notebook `number` as the notebook test does (fresh kernel; lessons again with `rerun`)."""
    code = ("import sys; from workbook_utils.notebook_files import execute, notebook_paths; "
            f"execute(next(p for p in notebook_paths() if p.name.startswith({number!r})), rerun={rerun})")
    return ["python", "-c", code]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", type=Path, help="a copy of other code to run first, on the same server")
    parser.add_argument("--notebook", help="run this notebook (e.g. 04) instead of a command")
    parser.add_argument("--rerun", action="store_true", help="with --notebook: run the lesson cells again")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    command = notebook_command(args.notebook, args.rerun) if args.notebook else args.command
    command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    trees = {"A": args.against.resolve(), "B": ROOT} if args.against else {"B": ROOT}
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for i in range(args.repeat):
        for name, tree in trees.items():
            seen[name].append(result := measure(command, tree))
            print(f"{i + 1} {name}: wall {result['wall']:6.1f} s  cpu {result['cpu']:6.1f} s  "
                  f"server {result['server']:5.1f} s", flush=True)
    for name, results in seen.items():
        median = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"median {name}: wall {median['wall']:6.1f} s  cpu {median['cpu']:6.1f} s  server {median['server']:5.1f} s")


if __name__ == "__main__":
    main()
