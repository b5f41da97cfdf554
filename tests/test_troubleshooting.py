"""FACILITATOR.md's troubleshooting covers every `Skipped:` line the code can print (issue 26 §1): each one found in
workbook_utils/ or a notebook's code is quoted in the guide by its fixed words, so a new one fails here until the
guide says what it means and how to fix it."""

from __future__ import annotations

import importlib
import re

import nbformat

from workbook_utils.config import project_root

ROOT = project_root()
GUIDE = " ".join((ROOT / "FACILITATOR.md").read_text().split())  # line breaks of the guide's paragraphs aside
LITERAL = re.compile(r"""f?(["'])Skipped:(.*?)\1(\s*,\s*(\w+)\.([A-Z_]+))?""")  # print("Skipped:", module.TEXT) too
CUT = re.compile(r"[(;:,]")


def sources() -> list[tuple[str, str]]:
    """(file name, code) of every module of workbook_utils and every notebook's code cells."""
    found = [(p.name, p.read_text()) for p in sorted((ROOT / "workbook_utils").rglob("*.py"))]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        found.append((path.name, "\n".join(c.source for c in cells if c.cell_type == "code")))
    return found


def fixed_words(message: str) -> str:
    """The words of a message that do not change: its longest run between `{…}` placeholders, cut at its first
    bracket, colon, comma or semicolon."""
    pieces = [CUT.split(piece)[0].strip(" .…") for piece in re.split(r"\{[^}]*\}", message)]
    return max(pieces, key=len)


def skipped_lines() -> dict[str, str]:
    """Each `Skipped:` message's fixed words → where it is printed."""
    found = {}
    for name, code in sources():
        for match in LITERAL.finditer(code):
            text = match.group(2)
            if not text.strip() and match.group(4):  # print("Skipped:", pgbouncer.INSTALL)
                text = getattr(importlib.import_module(f"workbook_utils.{match.group(4)}"), match.group(5))
            words = fixed_words(text)
            if len(words.split()) >= 2:  # not a mention of "Skipped:" itself in a docstring or a comment
                found[words] = name
    return found


def test_the_scan_finds_the_skipped_lines_a_room_meets():
    found = skipped_lines()
    assert len(found) >= 12
    assert {"may not create roles", "cloning a template database needs the CREATEDB right", "PgBouncer is not installed",
            "pg_stat_statements is not installed here", "auto_explain is not loaded on this server",
            "needs PostgreSQL"} <= set(found)


def test_every_skipped_line_is_quoted_in_the_guide():
    missing = [f"{words!r} ({where})" for words, where in skipped_lines().items() if words not in GUIDE]
    assert not missing, "FACILITATOR.md's troubleshooting does not quote: " + "; ".join(missing)


def test_the_messages_a_shared_room_meets_are_in_the_guide():
    workbook = (ROOT / "workbook_utils" / "workbook.py").read_text()
    assert "(an open kernel of notebook {number}?) holds its scratch schema" in workbook
    assert "an open kernel of notebook NN?) holds its scratch schema nbNN" in GUIDE
    knee = (ROOT / "workbook_utils" / "knee.py").read_text()
    for said in ("On a DATABASE_URL server the notebook cannot know the server's cores: the charts are the evidence.",
                 "The throughput did not have its shape"):
        assert said in knee and said in GUIDE
