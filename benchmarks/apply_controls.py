"""Put the live controls' cells (live.py, race_player.py) into the notebooks (issue 26 §3): idempotent, re-run after merges.

    .venv/bin/python benchmarks/apply_controls.py            # insert or update the cells below; lists what changed
    .venv/bin/python benchmarks/apply_controls.py --check    # exit 1 if a notebook lacks one of them or differs

CELLS is the table: (notebook, the id of the cell it follows, its own id, its type, its source). A cell already in
the notebook (by id) gets the source of the table, where it is; a new one is inserted after its anchor. The
notebook's slide metadata is then regenerated (workbook_utils.slides), so a new cell never leaves it stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

RACE_PLAYER_MD = """\
### Step through it yourself

§1's race, one step per press of **Next step**, against the server. Watch when each session reads and
writes, and which locks it holds in `pg_locks` after each step: the table's, its transaction id's, a row's
(`tuple`); a line below the locks says what each mode means. Then pick one of §2's fixes and play it again: with
`FOR UPDATE`, session 2's read *waits* for session 1's commit. Nothing runs until you press the button."""

RACE_PLAYER = """\
from workbook_utils import race_player

race_player.widget(engine)   # the lost update of §1, step by step; pick a fix, press Next step"""

CELLS: list[tuple[str, str, str, str, str]] = [
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
    ("04_transactions_and_locking_races.ipynb", "c019c", "04-race-player-md", "markdown", RACE_PLAYER_MD),
    ("04_transactions_and_locking_races.ipynb", "04-race-player-md", "04-race-player", "code", RACE_PLAYER),
    ("05_zero_downtime_migrations.ipynb", "5c283a1b", "05-live-text", "markdown",
     "**Try it.** Pick a `lock_timeout` and how long the blocker lasts, and watch the timeline: each wait ends at the\n"
     "timeout, or lasts as long as the blocker without one."),
    ("05_zero_downtime_migrations.ipynb", "05-live-text", "05-live", "code",
     "from workbook_utils import live\n\nlive.lock_queue(wb)"),
]


def apply(nb, rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    """Insert or update `rows`' cells in `nb` (rows of this notebook only); what changed."""
    import nbformat

    changes = []
    for _, after, cell_id, kind, source in rows:
        ids = [cell.get("id") for cell in nb.cells]
        if cell_id in ids:
            cell = nb.cells[ids.index(cell_id)]
            if cell.source != source or cell.cell_type != kind:
                cell.source = source
                changes.append(f"{cell_id}: source updated")
            continue
        if after not in ids:
            raise SystemExit(f"{cell_id}: no cell {after!r} to put it after (renamed? edit CELLS)")
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.insert(ids.index(after) + 1, make(source, id=cell_id))
        changes.append(f"{cell_id}: inserted after {after}")
    return changes


def main(argv: list[str] | None = None) -> int:
    import nbformat

    sys.path.insert(0, str(ROOT))
    from workbook_utils import slides

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook would change")
    args = parser.parse_args(argv)
    stale = 0
    for name in dict.fromkeys(row[0] for row in CELLS):
        path = NOTEBOOKS / name
        nb = nbformat.read(path, as_version=4)
        changes = apply(nb, [row for row in CELLS if row[0] == name])
        if changes:
            slides.apply(nb)
            stale += 1
            print(f"{name}: " + "; ".join(changes))
            if not args.check:
                nbformat.write(nb, path)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
