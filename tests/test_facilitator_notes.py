"""facilitator/notes/NN.md (issue 26 §1): every section of every notebook has its note, no note names a section the
notebook lacks, and what the notes quote is what the notebook shows: each `code` span, §N and exercise qN."""

from __future__ import annotations

import functools
import re

import nbformat
import pytest

from workbook_utils.config import project_root
from workbook_utils.notebook_files import notebook_paths
from workbook_utils.tracks import section_cells

NOTES = project_root() / "facilitator" / "notes"
OUTSIDE = {"build/checklist.html", "workbook run", "workbook reset", "workbook doctor"}  # the guide's, not a notebook's
PARTS = ("**Misconceptions learners bring**", "**Projector or hands-on.**", "**Stretch goal for the fast ones.**")


@functools.cache
def _read(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _note(path) -> str:
    note = NOTES / f"{path.name[:2]}.md"
    assert note.exists(), f"{note} is missing"
    return note.read_text()


def _text(nb) -> str:
    """Everything a learner sees of a notebook: its cells' sources, spaces collapsed."""
    return " ".join(" ".join(cell.source for cell in nb.cells).split())


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name[:2])
def test_every_section_has_its_note_and_every_note_its_section(path):
    note, nb = _note(path), _read(path)
    headings = [heading for _, heading in sorted(section_cells(nb).values())]
    assert re.findall(r"^## (.+)$", note, re.M) == headings
    assert all(part in note for part in PARTS)
    assert all(re.search(rf"## {re.escape(h)}\nSay: ", note) for h in headings), "each section's note starts with Say:"


def unshown(note: str, nb) -> list[str]:
    """What a note quotes that its notebook does not show: `code` spans, §N, exercises qN."""
    shown, keys = _text(nb), set(section_cells(nb))
    body = note.split("\n", 1)[1]  # the title quotes the notebook's own
    spans = {" ".join(span.split()) for span in re.findall(r"`([^`]+)`", body)} - OUTSIDE
    asked = set(re.findall(r"\b(q\d)\.check\(", shown))
    return sorted({f"`{s}`" for s in spans if s not in shown} | ({f"§{n}" for n in re.findall(r"§(\d+)", body)} - keys)
                  | (set(re.findall(r"\b(q\d)\b", body)) - asked))


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name[:2])
def test_a_note_quotes_only_what_its_notebook_shows(path):
    assert unshown(_note(path), _read(path)) == []


def test_a_span_a_section_or_an_exercise_the_notebook_lacks_is_named():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 1. A pool\n\n`pool_size=5`"),
                                         nbformat.v4.new_code_cell("q1.check(____)")])
    note = "# title\n\n## 1. A pool\nSay: `pool_size=5`, `max_overflow=0`, §1 and §2, q1 and q2."
    assert unshown(note, nb) == ["`max_overflow=0`", "q2", "§2"]
