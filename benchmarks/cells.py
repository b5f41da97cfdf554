"""The slowest cells of a notebook run as the notebook test runs it (fresh kernel, lesson cells again), with the
kernel's start and the setup cell apart: where a notebook's wall time goes.

    .venv/bin/python benchmarks/cells.py 04 [--top 12]

A cell's time is nbclient's record (execute_input to execute_reply, in the cell's metadata); the first line of
its source names it. Not a test: figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime


def seconds(cell) -> float:
    """Wall seconds of one executed cell (0 if nbclient recorded no timing)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("number")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    os.environ["WORKBOOK_SCALE"] = "tiny"
    import nbformat

    from workbook_utils.notebook_files import execute, lesson_cells, notebook_paths

    path = next(p for p in notebook_paths() if p.name.startswith(args.number))
    lessons = lesson_cells(nbformat.read(path, as_version=4))
    import nbclient

    original = nbclient.NotebookClient.execute_cell

    def timed(self, cell, cell_index, *a, **k):  # the lesson cells run twice: keep each run's time
        result = original(self, cell, cell_index, *a, **k)
        if cell_index < len(self.nb.cells) and cell is self.nb.cells[cell_index]:  # not an exercise's probe cell
            again.setdefault(cell_index, []).append(seconds(cell))
        return result

    again: dict[int, list[float]] = {}
    nbclient.NotebookClient.execute_cell = timed
    start = time.perf_counter()
    nb = execute(path, rerun=True)
    wall = time.perf_counter() - start
    cells = sum(sum(v) for v in again.values())
    print(f"{path.name}: {wall:.1f} s wall, {cells:.1f} s in cells, {wall - cells:.1f} s kernel start/stop and client; "
          f"setup cell {again.get(min(again), [0])[0]:.1f} s; {len(lessons)} lesson cells run twice")
    ranked = sorted(again.items(), key=lambda kv: -sum(kv[1]))[:args.top]
    for index, runs in ranked:
        line = next((s for s in nb.cells[index].source.splitlines() if s.strip() and not s.startswith("#")), "")
        print(f"  cell {index:3d}: {' + '.join(f'{s:.2f}' for s in runs):>13} s  {line.strip()[:90]}")


if __name__ == "__main__":
    main()
