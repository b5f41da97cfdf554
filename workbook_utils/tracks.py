"""Tracks by the day (issue 26 §1): each section's minutes and the tracks that keep it are cell metadata of its heading
(`{"workbook": {"minutes": 8, "tracks": ["1-day", "2-day", "3-day"]}}`, written by benchmarks/apply_tracks.py);
this module reads them back, lays each track out by the day, and generates FACILITATOR.md's `<!-- tracks -->` part.

A section is a `## ` heading that is not a Part heading (anatomy.py), keyed by its number ("§3") or its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .anatomy import PART, parts
from .notebook_files import notebook_paths, title

if TYPE_CHECKING:
    import nbformat

META = "workbook"
TRACKS = {  # the notebooks of each day
    "1-day": [["00", "01", "02", "03", "04"]],
    "2-day": [["00", "01", "02", "03", "04"], ["05", "06", "07", "08", "09"]],
    "3-day": [["00", "01", "02", "03"], ["04", "05", "06"], ["07", "08", "09"]],
}
DAY = {"1-day": 300, "2-day": 360, "3-day": 360}  # minutes a day may take, breaks included (lunch aside)
BREAK = 10  # minutes between two notebooks of a day
SECTION = re.compile(r"^## (?!Part \d)(.+)$")
ANCHOR = re.compile(r"\s*<a id=[^>]*></a>\s*$")


@dataclass
class Section:
    """One section of a notebook: where it is, its heading, and what its metadata says."""

    notebook: str  # "03"
    key: str  # "§3", "Exercises (Part 1)"
    heading: str
    part: int
    minutes: int | None
    tracks: list[str]

    @property
    def exercises(self) -> bool:
        return self.key.startswith("Exercises")

    @property
    def label(self) -> str:
        """How the plan names it: "§3", "exercises", "setup"."""
        return "exercises" if self.exercises else "setup" if self.key.startswith("The setup") else self.key


def key_of(heading: str) -> str:
    """"3. Sequential scan vs index" → "§3"; an unnumbered heading is its own key (anchors aside)."""
    number = re.match(r"(\d+)\. ", heading)
    return f"§{number.group(1)}" if number else ANCHOR.sub("", heading).strip()


def section_cells(nb: nbformat.NotebookNode) -> dict[str, tuple[int, str]]:
    """Each section's key → (index of its heading cell, its heading)."""
    found = {}
    for i, cell in enumerate(nb.cells):
        first = cell.source.lstrip("\n").split("\n", 1)[0] if cell.cell_type == "markdown" else ""
        if (match := SECTION.match(first)) and not PART.match(first):
            found[key_of(match.group(1))] = (i, ANCHOR.sub("", match.group(1)).strip())
    return found


def sections(path: Path) -> list[Section]:
    """A notebook's sections with their Part and metadata (None minutes: no metadata)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    part_of = {i: part.number for part in parts(nb) for i in part.cells}
    found = []
    for key, (index, heading) in section_cells(nb).items():
        meta = nb.cells[index].metadata.get(META, {})
        found.append(Section(path.name[:2], key, heading, part_of[index], meta.get("minutes"), meta.get("tracks", [])))
    return found


def all_sections() -> dict[str, list[Section]]:
    """Every notebook's sections, by notebook number."""
    return {path.name[:2]: sections(path) for path in notebook_paths()}


def kept(track: str, found: list[Section]) -> list[Section]:
    """The sections a track keeps that take time in the room."""
    return [s for s in found if track in s.tracks and s.minutes]


def problems(found: dict[str, list[Section]] | None = None) -> list[str]:
    """Sections without metadata; tracks that keep a Part's section but not its exercises; days longer than allowed."""
    found = all_sections() if found is None else found
    out = [f"{nb}: {s.heading!r} has no minutes" for nb, secs in found.items() for s in secs if s.minutes is None]
    for track in TRACKS:
        for nb, secs in found.items():
            for part in {s.part for s in kept(track, secs)}:
                if not any(s.exercises and s.part == part for s in kept(track, secs)):
                    out.append(f"{track}: keeps Part {part} of {nb} but not its exercises")
        out += [f"{track}, day {d}: {m} minutes, more than {DAY[track]}"
                for d, m in enumerate(day_minutes(track, found), 1) if m > DAY[track]]
    return out


def day_minutes(track: str, found: dict[str, list[Section]]) -> list[int]:
    """Each day's minutes, breaks between notebooks included."""
    totals = []
    for day in TRACKS[track]:
        taught = [sum(s.minutes for s in kept(track, found[nb])) for nb in day]
        totals.append(sum(taught) + BREAK * (sum(1 for m in taught if m) - 1))
    return totals


def _clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def plan(found: dict[str, list[Section]] | None = None) -> str:
    """The tracks as Markdown: per track and day, each notebook's sections kept with their minutes, and the clock."""
    found = all_sections() if found is None else found
    paths = {p.name[:2]: p for p in notebook_paths()}
    out = []
    for track, days in TRACKS.items():
        totals = day_minutes(track, found)
        out.append(f"**{track} track** ({', '.join(f'day {d}: {_clock(m)}' for d, m in enumerate(totals, 1))}, "
                   f"breaks included)\n")
        for number, day in enumerate(days, 1):
            rows, clock = ["| clock | notebook | sections kept (minutes) | minutes |", "|---|---|---|---|"], 0
            for nb in day:
                keep = kept(track, found[nb])
                if not keep:
                    continue
                minutes = sum(s.minutes for s in keep)
                listed = ", ".join(f"{s.label} ({s.minutes})" for s in keep)
                rows.append(f"| {_clock(clock)}–{_clock(clock + minutes)} | {title(paths[nb])} | {listed} | {minutes} |")
                clock += minutes + BREAK
            out.append(f"Day {number}:\n\n" + "\n".join(rows) + "\n")
    return "\n".join(out).rstrip("\n")


TRACKS_BLOCK = re.compile(r"<!-- tracks -->.*?<!-- /tracks -->", re.S)


def update_guide(guide: Path) -> bool:
    """Rewrite the guide's tracks between their markers in place; True if it changed."""
    text = guide.read_text(encoding="utf-8")
    new = TRACKS_BLOCK.sub(lambda _: f"<!-- tracks -->\n{plan()}\n<!-- /tracks -->", text)
    if new != text:
        guide.write_text(new, encoding="utf-8")
    return new != text
