"""Presentation mode: RISE's slide metadata (`cell.metadata.slideshow.slide_type`), generated from the anatomy.

The facilitator presents the notebooks the learners run (JupyterLab with `jupyterlab-rise`: Alt+R). Which cell
starts a slide follows from the notebook's own structure, like the nav line, so it never drifts:

- the title cell and each heading cell of a section or a Part (`## …`) start a "slide";
- a sub-heading (`### …`) starts a "subslide" (below its section's slide);
- a code cell made only of `assert` statements (the notebook checking itself, read from its syntax tree) is "skip";
- any other code cell (a demo) is a "fragment": it appears when the presenter moves on;
- every other cell is "-" (it stays on the current slide).

The notebook's own metadata carries the RISE settings (`RISE`: a theme whose fonts come with it, for offline rooms).

    python -m workbook_utils.slides            # rewrite every notebook whose metadata is stale
    python -m workbook_utils.slides --check    # list them; exit 1 if any
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .questions import python_of

if TYPE_CHECKING:
    import nbformat

SLIDE, SUBSLIDE, FRAGMENT, SKIP, SAME = "slide", "subslide", "fragment", "skip", "-"
# The notebook's own RISE settings. The theme: RISE's default ("simple") and most of reveal.js's themes load their fonts
# from fonts.googleapis.com; "white" uses the fonts it ships, so a slideshow in an offline room asks nothing outside.
RISE = {"theme": "white"}


def is_assert_only(source: str) -> bool:
    """A code cell whose every statement is an `assert` (magics and comments aside)."""
    try:
        body = ast.parse(python_of(source)).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(statement, ast.Assert) for statement in body)


def slide_type(cell: nbformat.NotebookNode, first: bool = False) -> str:
    """The RISE slide type of one cell (`first`: the notebook's first cell, its title)."""
    if cell.cell_type == "code":
        return SKIP if is_assert_only(cell.source) else FRAGMENT
    line = cell.source.lstrip("\n").split("\n", 1)[0] if cell.cell_type == "markdown" else ""
    if first or line.startswith(("# ", "## ")):
        return SLIDE
    return SUBSLIDE if line.startswith("### ") else SAME


def slide_types(nb: nbformat.NotebookNode) -> list[str]:
    """The slide type of each cell, in order."""
    return [slide_type(cell, first=i == 0) for i, cell in enumerate(nb.cells)]


def slide_count(nb: nbformat.NotebookNode) -> int:
    """How many slides the slideshow has: the cells that start one (sub-slides are part of their slide)."""
    return slide_types(nb).count(SLIDE)


def stale_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Cells whose slide metadata is not the generated one (and the notebook's RISE settings, if not RISE's)."""
    settings = [] if nb.metadata.get("rise") == RISE else [f"notebook metadata: rise is {nb.metadata.get('rise')!r}, "
                                                              f"should be {RISE!r}"]
    return settings + [f"cell {i} ({cell.get('id', '?')}): slide_type {cell.metadata.get('slideshow', {}).get('slide_type')!r}, "
            f"should be {wanted!r}"
            for i, (cell, wanted) in enumerate(zip(nb.cells, slide_types(nb), strict=True))
            if cell.metadata.get("slideshow", {}).get("slide_type") != wanted]


def apply(nb: nbformat.NotebookNode) -> bool:
    """Write the generated slide types into the cells' metadata; whether anything changed."""
    changed = nb.metadata.get("rise") != RISE
    nb.metadata["rise"] = dict(RISE)
    for cell, wanted in zip(nb.cells, slide_types(nb), strict=True):
        if cell.metadata.get("slideshow", {}).get("slide_type") != wanted:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = wanted
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, list) the notebooks whose slide metadata is stale."""
    import nbformat

    from .notebook_files import notebook_paths

    parser = argparse.ArgumentParser(prog="python -m workbook_utils.slides", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of the workbook")
    parser.add_argument("--check", action="store_true", help="only list stale notebooks; exit 1 if any")
    args = parser.parse_args(argv)
    stale = 0
    for path in args.notebooks or notebook_paths():
        nb = nbformat.read(path, as_version=4)
        if problems := stale_cells(nb):
            stale += 1
            print(f"{path.name}: {len(problems)} slide setting(s) stale" + ("" if args.check else ", rewritten"))
            if not args.check:
                apply(nb)
                nbformat.write(nb, path)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
