"""The handout (issue 26 §5): build/checklist.html holds every row of every notebook's summary table, and nothing else."""

from __future__ import annotations

import html
import re

import nbformat
import pytest

from workbook_utils import handout
from workbook_utils.notebook_files import notebook_paths


def _words(markdown_or_html: str, tags: bool = True) -> str:
    """The text a reader sees: tags (of HTML), Markdown marks and links' targets out, entities decoded, spaces
    collapsed. Markdown keeps its `<…>`: in code they are text (`CREATE DATABASE "<template>_<worker>"`)."""
    text = re.sub(r"<[^>]+>", "", markdown_or_html) if tags else markdown_or_html
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = html.unescape(text).replace("`", "").replace("**", "").replace("\\|", "|")
    return " ".join(text.split())


def _summary_rows(path) -> list[str]:
    """The rows of a notebook's summary table, read here without the module under test: its text per row."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "markdown" and c.source.startswith("## Summary"))
    rows = [line for line in cell.source.splitlines() if line.startswith("|")][2:]
    return [_words(re.sub(r"(?<!\\)\|", " ", row), tags=False) for row in rows]  # a cell's bounds; `\|` is a pipe in it


@pytest.fixture(scope="module")
def sections() -> list[str]:
    page = handout.checklist_html()
    assert page.count("<section>") == len(notebook_paths())
    return re.findall(r"<section>(.*?)</section>", page, re.S)


def test_every_summary_row_of_every_notebook_is_on_the_checklist_and_nothing_else(sections):
    for path, section in zip(notebook_paths(), sections, strict=True):
        shown = [_words(" ".join(re.findall(r"<td>(.*?)</td>", tr, re.S)))
                 for tr in re.findall(r"<tr>(.*?)</tr>", section, re.S) if "<td>" in tr]
        assert shown == _summary_rows(path), path.name
        assert f'<a href="{path.stem}.html">{path.name[:2]} · ' in section


def test_a_notebook_without_a_summary_table_is_named(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 42 · x"),
                                         nbformat.v4.new_markdown_cell("## Summary\n\nno table")])
    path = tmp_path / "42_x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="42_x.ipynb: no summary table"):
        handout.summary_table(path)


def test_a_pipe_inside_code_stays_in_its_cell():
    assert handout.cells_of("| `a | b` | when |") == ["`a | b`", "when"]
