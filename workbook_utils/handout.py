"""The handout a team takes back to its codebase (issue 26 §5): one checklist gathered from every notebook's summary
table, generated so that it never drifts. `workbook run` writes it as build/checklist.html, beside the pages.

A summary table is the markdown cell whose first line is `## Summary`; its rows are the lines that start with `|`
after the header and its `|---|` line. Its columns are "use" and "when" (then any others, e.g. a section link): on the
checklist each row is a box to tick, what to use, then when. The page is A4, three columns, 6.5 pt at least, and
tests/test_checklist.py proves in Chromium that it prints on one page: a row more means a row shorter elsewhere.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

SUMMARY = "## Summary"
RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")  # the |---|---| line under a table's header
ANCHOR = re.compile(r"\]\(#([\w-]+)\)")  # a link to a section of the same notebook


@dataclass
class Table:
    """One notebook's summary table: its title, the page it is rendered to, its header and rows (Markdown cells)."""

    title: str
    page: str
    header: list[str]
    rows: list[list[str]]


def cells_of(line: str) -> list[str]:
    """The cells of a Markdown table row (`|` inside backticks, and `\\|`, stay in their cell)."""
    cells, current, code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            code = not code
        if char == "|" and not code and not current.endswith("\\"):
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def summary_table(path: Path) -> Table:
    """The summary table of one notebook; a notebook without one is an error naming it."""
    import nbformat

    from .notebook_files import title

    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith(SUMMARY)), None)
    lines = [] if cell is None else [line for line in cell.source.splitlines() if line.startswith("|")]
    if len(lines) < 3 or not RULE.match(lines[1]):
        raise ValueError(f"{path.name}: no summary table (a markdown cell that starts {SUMMARY!r}, then a table)")
    header = cells_of(lines[0])
    if len(header) < 2 or not (header[0].startswith("use") and header[1].startswith("when")):
        raise ValueError(f"{path.name}: a summary table's columns are 'use', 'when' (then any others), not {header}")
    page = f"{path.stem}.html"  # `\|` is a pipe in a table's cell, code included (GitHub's tables)
    rows = [[ANCHOR.sub(rf"]({page}#\1)", c).replace("\\|", "|") for c in cells_of(line)] for line in lines[2:]]
    return Table(title(path), page, header, rows)


def tables() -> list[Table]:
    """Every notebook's summary table, in the notebooks' order."""
    from .notebook_files import notebook_paths

    return [summary_table(path) for path in notebook_paths()]


# One A4 page (tests/test_checklist.py prints it in Chromium): three columns, a box to tick per row, 6.5 pt at least.
CSS = """@page{size:A4;margin:7mm}
body{margin:0;font:6.5pt/1.2 "Liberation Sans",Arial,Helvetica,"DejaVu Sans Condensed",sans-serif;
columns:3;column-gap:4mm;column-fill:auto}
h1{column-span:all;font-size:10pt;margin:0 0 1.5mm} h1 small{font-size:6.5pt;font-weight:normal}
h2{font-size:7.5pt;margin:1.4mm 0 .3mm;break-after:avoid} h2 a{color:inherit;text-decoration:none}
ul{list-style:none;margin:0;padding:0} li{break-inside:avoid;position:relative;padding-left:1.3em;margin:.15mm 0}
li::before{content:"";position:absolute;left:0;top:.1em;width:.8em;height:.8em;border:.5pt solid #000}
.when::before{content:"\\2013\\a0"} .when{color:#333} a{color:inherit}
code{font:6.5pt "Liberation Mono","DejaVu Sans Mono",Consolas,monospace;overflow-wrap:anywhere}"""


def checklist_html() -> str:
    """The checklist as one printable HTML page: per notebook, a box to tick per summary row (what to use, and when)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    def md(text: str) -> str:
        inline = markdown2html_mistune(text).strip()
        return re.sub(r"^<p>(.*)</p>$", r"\1", inline, flags=re.S)

    sections = []
    for table in tables():
        items = "".join(f"<li>{md(use)} <span class=\"when\">{' '.join(md(c) for c in rest)}</span></li>"
                        for use, *rest in table.rows)
        sections.append(f'<section><h2><a href="{table.page}">{html.escape(table.title)}</a></h2>'
                        f"<ul>{items}</ul></section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Checklist</title>'
            f"<style>{CSS}</style></head>\n<body><h1>The database-integration workbook: the checklist "
            f"<small>use this \u2013 when that; tick what your codebase does</small></h1>"
            f'{"".join(sections)}</body></html>\n')


def write_checklist(build: Path) -> Path:
    """build/checklist.html (the folder is made if needed)."""
    out = build / "checklist.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(checklist_html(), encoding="utf-8")
    return out
