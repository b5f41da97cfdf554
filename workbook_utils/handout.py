"""The handout a team takes back to its codebase (issue 26 §5): one checklist gathered from every notebook's summary
table, generated so that it never drifts. `workbook run` writes it as build/checklist.html, beside the pages.

A summary table is the markdown cell whose first line is `## Summary`; its rows are the lines that start with `|`
after the header and its `|---|` line.
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
    """The cells of a Markdown table row (`|` inside backticks stays in its cell)."""
    cells, current, code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            code = not code
        if char == "|" and not code:
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
    page = f"{path.stem}.html"
    rows = [[ANCHOR.sub(rf"]({page}#\1)", c) for c in cells_of(line)] for line in lines[2:]]
    return Table(title(path), page, cells_of(lines[0]), rows)


def tables() -> list[Table]:
    """Every notebook's summary table, in the notebooks' order."""
    from .notebook_files import notebook_paths

    return [summary_table(path) for path in notebook_paths()]


CSS = """@page{size:A4;margin:8mm} body{font:7pt/1.2 sans-serif;margin:0 auto;max-width:60em}
h1{font-size:11pt;margin:0 0 .3em} h2{font-size:8pt;margin:.4em 0 .1em;break-after:avoid}
table{border-collapse:collapse;width:100%;table-layout:fixed} td,th{vertical-align:top;padding:.05em .3em;
border-top:1px solid #ccc;overflow-wrap:anywhere} th{text-align:left;font-weight:normal;font-style:italic}
code{font-size:6.5pt;white-space:normal} p{margin:0} section{break-inside:avoid}"""


def checklist_html() -> str:
    """The checklist as one printable HTML page: per notebook, its summary rows (what to use, and when)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    def md(text: str) -> str:
        inline = markdown2html_mistune(text).strip()
        return re.sub(r"^<p>(.*)</p>$", r"\1", inline, flags=re.S)

    sections = []
    for table in tables():
        head = "<tr>" + "".join(f"<th>{md(c)}</th>" for c in table.header) + "</tr>"
        rows = head + "".join("<tr>" + "".join(f"<td>{md(c)}</td>" for c in row) + "</tr>" for row in table.rows)
        sections.append(f'<section><h2><a href="{table.page}">{html.escape(table.title)}</a></h2>'
                        f"<table>{rows}</table></section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Checklist</title>'
            f"<style>{CSS}</style></head>\n<body><h1>The database-integration workbook: the checklist</h1>"
            f'{"".join(sections)}</body></html>\n')


def write_checklist(build: Path) -> Path:
    """build/checklist.html (the folder is made if needed)."""
    out = build / "checklist.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(checklist_html(), encoding="utf-8")
    return out
