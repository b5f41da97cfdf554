"""Put the live controls of workbook_utils/live.py into notebooks 01, 02 and 05 (issue 26 §3), idempotently.

Each row: notebook, the id of the cell it follows, the new cell's id, its type and its source. A cell that is already
there gets its source back; a missing one is inserted after its anchor. Outputs are never written.

    .venv/bin/python benchmarks/apply_live.py          # writes the notebooks
    .venv/bin/python benchmarks/apply_live.py --check  # exit 1 when a notebook differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

CELLS = [
    ("01_connection_pooling.ipynb", "01-40-hikari", "01-live-text", "markdown",
     "**Try it.** Move *I/O share* (the part of each request spent in `pg_sleep`, not computing) and watch the knee,\n"
     "the smallest pool near the best throughput, move right."),
    ("01_connection_pooling.ipynb", "01-live-text", "01-live", "code",
     "from workbook_utils import live\n\nlive.pool_sweep(wb)"),
    ("02_n_plus_one_and_eager_loading.ipynb", "02-notice2", "02-live-text", "markdown",
     "**Try it.** Move *N* and the *loader*, and watch the statement count (lazy: N+1, `selectinload`:\n"
     "1 + ceil(N/500), `joinedload`: 1), the time and the SQL sent."),
    ("02_n_plus_one_and_eager_loading.ipynb", "02-live-text", "02-live", "code",
     "from workbook_utils import live\n\nlive.n_plus_one(wb, engine)"),
    ("05_zero_downtime_migrations.ipynb", "5c283a1b", "05-live-text", "markdown",
     "**Try it.** Pick a `lock_timeout` and how long the blocker lasts, and watch the timeline: each wait ends at the\n"
     "timeout, or lasts as long as the blocker without one."),
    ("05_zero_downtime_migrations.ipynb", "05-live-text", "05-live", "code",
     "from workbook_utils import live\n\nlive.lock_queue(wb)"),
]


def new_cell(kind: str, cell_id: str, source: str) -> nbformat.NotebookNode:
    """A markdown or code cell with this id and source, no outputs."""
    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    cell.id = cell_id
    return cell


def apply(nb: nbformat.NotebookNode, anchor: str, cell_id: str, kind: str, source: str) -> bool:
    """Put the cell after `anchor` (or give it its source back); True when the notebook changed."""
    ids = [cell.get("id") for cell in nb.cells]
    if cell_id in ids:
        cell = nb.cells[ids.index(cell_id)]
        if cell.source == source and cell.cell_type == kind:
            return False
        cell.source = source
        return True
    if anchor not in ids:
        raise SystemExit(f"no cell {anchor!r} to put {cell_id!r} after")
    nb.cells.insert(ids.index(anchor) + 1, new_cell(kind, cell_id, source))
    return True


def main(check: bool = False) -> int:
    """Apply every row; with `check`, write nothing and say which notebooks differ."""
    differ = []
    for name in dict.fromkeys(row[0] for row in CELLS):
        path = NOTEBOOKS / name
        nb = nbformat.read(path, as_version=4)
        changed = [apply(nb, *row[1:]) for row in CELLS if row[0] == name]
        if any(changed):
            differ.append(name)
            if not check:
                nbformat.write(nb, path)
    print(("differ: " if check else "updated: ") + (", ".join(differ) or "none"))
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
