"""Write each section's minutes and the tracks that keep it into the notebooks (issue 26 §1): the table below is the one
place they are decided; `workbook_utils.tracks` reads them back from the notebooks and generates the schedule.

    python benchmarks/apply_tracks.py          # write the metadata (only cells that change are rewritten)
    python benchmarks/apply_tracks.py --check  # list what differs, exit 1 if anything does

A section is a `## ` heading that is not a Part heading; it is keyed by its number ("§3") or, unnumbered, by its
whole text ("Exercises (Part 1)", "Summary"). A section the table does not know, or a key of the table the notebook
has no section for, stops the script naming the notebook and the heading. The minutes of a Part's sections add up
to the Part's time in the notebook's own "Time:" line (tests/test_tracks.py holds them to it); the sections after
the last Part's key points (summary, glossary, going further) are reading for later: 0 minutes.
"""

from __future__ import annotations

import sys

ALL, TWO, ONE = ("1-day", "2-day", "3-day"), ("2-day", "3-day"), ("3-day",)
READ = {"Summary": (0, ALL), "Going further": (0, ALL), "Glossary": (0, ALL)}

TABLE: dict[str, dict[str, tuple[int, tuple[str, ...]]]] = {
    "00": {"§1": (3, ALL), "§2": (5, ALL), "§3": (4, ALL), "§4": (6, ALL), "§5": (4, ALL), "§6": (3, ALL),
           "Exercises": (15, ALL), **READ},
    "01": {"§1": (8, ALL), "§2": (10, ALL), "§3": (8, ALL), "§4": (7, ALL), "§5": (10, ALL),
           "Exercises (Part 1)": (12, ALL),
           "§6": (7, TWO), "§7": (6, TWO), "§8": (6, TWO), "§9": (8, ONE), "Exercises (Part 2)": (8, TWO), **READ},
    "02": {"§1": (8, ALL), "§2": (6, ALL), "§3": (8, ALL), "§4": (8, ALL), "§5": (8, ALL),
           "Exercises (Part 1)": (12, ALL),
           "§6": (8, TWO), "§7": (8, ONE), "§8": (6, ONE), "§9": (8, ONE), "Exercises (Part 2)": (10, TWO), **READ},
    "03": {"§1": (5, ALL), "§2": (6, ALL), "§3": (6, ALL), "§4": (5, ALL), "§5": (6, ALL), "§6": (6, ALL),
           "§7": (7, ALL), "Exercises (Part 1)": (14, ALL),
           "§8": (5, ONE), "§9": (6, ONE), "§10": (6, ONE), "§11": (5, ONE), "§12": (5, ONE), "§13": (6, ONE),
           "§14": (9, ONE), "Exercises (Part 2)": (8, ONE), **READ},
    "04": {"§1": (12, ALL), "§2": (10, ALL), "§3": (6, TWO), "§4": (6, TWO), "§5": (7, ALL), "§6": (10, ALL),
           "Exercises (Part 1)": (14, ALL),
           "§7": (10, ONE), "§8": (8, ONE), "§9": (8, ONE), "§10": (14, ONE), "Exercises (Part 2)": (10, ONE), **READ},
    "05": {"The setup: a real Alembic environment on a copy of the tables": (4, TWO),
           "§1": (12, TWO), "§2": (8, TWO), "§3": (10, TWO), "§4": (6, TWO), "Exercises (Part 1)": (10, TWO),
           "§5": (6, TWO), "§6": (7, TWO), "§7": (6, TWO), "§8": (7, TWO), "§9": (7, ONE), "§10": (7, ONE),
           "§11": (6, ONE), "§12": (5, ONE), "§13": (5, ONE), "Exercises (Part 2)": (14, TWO), **READ},
    "06": {"§1": (9, TWO), "§2": (8, TWO), "§3": (6, TWO), "Exercises (Part 1)": (12, TWO),
           "§4": (12, ONE), "§5": (8, ONE), "Exercises (Part 2)": (10, ONE), **READ},
    "07": {"The setup: empty tables, and pytest in a subprocess": (3, TWO),
           "§1": (16, TWO), "§2": (10, TWO), "Exercises (Part 1)": (16, TWO),
           "§3": (8, TWO), "§4": (8, TWO), "§5": (8, TWO), "§6": (8, TWO), "Exercises (Part 2)": (8, TWO), **READ},
    "08": {"§1": (12, TWO), "§2": (8, TWO), "§3": (12, TWO), "Exercises (Part 1)": (8, TWO),
           "§4": (15, ONE), "§5": (8, ONE), "Exercises (Part 2)": (12, ONE), **READ},
    "09": {"§1": (8, TWO), "§2": (5, TWO), "Exercises (Part 1)": (7, TWO),
           "§3": (10, TWO), "§4": (10, TWO), "§5": (8, TWO), "Exercises (Part 2)": (12, TWO),
           "The course in one screen": (0, ALL), **READ},
}


def main(check: bool) -> int:
    """Apply (or, with `check`, compare) the table; the number of cells that differ(ed)."""
    import nbformat

    from workbook_utils.notebook_files import notebook_paths
    from workbook_utils.tracks import META, section_cells

    differ = 0
    for path in notebook_paths():
        number = path.name[:2]
        table = TABLE.get(number)
        if table is None:
            raise SystemExit(f"{path.name}: not in benchmarks/apply_tracks.py's TABLE")
        nb = nbformat.read(path, as_version=4)
        found = section_cells(nb)
        for key, (_, heading) in found.items():
            if key not in table:
                raise SystemExit(f"{path.name}: the section {heading!r} is not in apply_tracks.py's TABLE (key {key!r})")
        if missing := [key for key in table if key not in found and key not in READ]:  # READ: where there is one
            raise SystemExit(f"{path.name}: TABLE names sections the notebook does not have: {', '.join(missing)}")
        changed = []
        for key, (index, _) in found.items():
            minutes, tracks = table[key]
            meta = nb.cells[index].metadata.setdefault(META, {})
            if meta.get("minutes") != minutes or meta.get("tracks") != list(tracks):
                meta.update(minutes=minutes, tracks=list(tracks))
                changed.append(key)
        differ += len(changed)
        if changed:
            print(f"{path.name}: {'differs' if check else 'written'}: {', '.join(changed)}")
            if not check:
                nbformat.write(nb, path)
    return differ


if __name__ == "__main__":
    sys.exit(1 if main("--check" in sys.argv[1:]) and "--check" in sys.argv[1:] else 0)
