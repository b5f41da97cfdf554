"""Every generated part of the workbook, rewritten from its source: `python -m workbook_utils.regenerate`.

Run it after adding, renaming or re-timing a notebook or a section: the navigation lines (file names and titles),
the facilitator's schedule (each notebook's Time line), the tracks by the day (each section's metadata) and the
slide types (the anatomy). Tests fail while any of them is stale.
"""

from __future__ import annotations

from . import config, slides
from .notebook_files import update_navigation, update_schedule
from .tracks import update_guide


def main() -> None:
    """Rewrite what is stale and say what changed."""
    guide = config.project_root() / "FACILITATOR.md"
    for path in update_navigation():
        print(f"navigation updated: {path.name}")
    if update_schedule(guide):
        print("schedule updated: FACILITATOR.md")
    if update_guide(guide):
        print("tracks updated: FACILITATOR.md")
    slides.main([])


if __name__ == "__main__":
    main()
