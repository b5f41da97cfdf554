"""The handout (issue 26 §5): build/checklist.html holds every row of every notebook's summary table, and nothing else,
a box to tick per row, and prints on one A4 page in a real (headless) Chromium, no text under 6.5 pt."""

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
def page_html() -> str:
    return handout.checklist_html()


@pytest.fixture(scope="module")
def sections(page_html) -> list[str]:
    assert page_html.count("<section>") == len(notebook_paths())
    return re.findall(r"<section>(.*?)</section>", page_html, re.S)


def test_every_summary_row_of_every_notebook_is_on_the_checklist_and_nothing_else(sections):
    for path, section in zip(notebook_paths(), sections, strict=True):
        shown = [_words(item) for item in re.findall(r"<li>(.*?)</li>", section, re.S)]
        assert shown == _summary_rows(path), path.name
        assert f'<a href="{path.stem}.html">{path.name[:2]} · ' in section


def _pages(pdf: bytes) -> int:
    """The pages of a PDF Chromium printed (its page objects are not compressed; pypdf is not a dependency)."""
    return len(re.findall(rb"/Type\s*/Page\b", pdf))


def test_the_checklist_prints_on_one_a4_page_and_no_text_is_under_6_5_pt(page_html):
    from tests import browser

    if why := browser.missing():
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    twice = page_html.replace("</body>", re.search(r"<section>.*</section>", page_html, re.S)[0] + "</body>")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser.CHROMIUM, args=browser.CHROMIUM_FLAGS)
        try:
            page = chromium.new_page()
            page.set_content(page_html)
            smallest = page.evaluate("""() => Math.min(...[...document.body.querySelectorAll('*')]
                .filter(e => e.textContent.trim()).map(e => parseFloat(getComputedStyle(e).fontSize)))""")
            pages = _pages(page.pdf(format="A4"))
            page.set_content(twice)  # the counter counts: every row twice takes two pages
            pages_twice = _pages(page.pdf(format="A4"))
        finally:
            chromium.close()
    assert smallest >= 6.5 * 96 / 72 - 0.01, f"text of {smallest * 72 / 96:.2f} pt on the checklist"
    assert pages == 1, f"the checklist prints on {pages} A4 pages: shorten the summary tables' rows"
    assert pages_twice == 2


@pytest.mark.parametrize(("summary", "said"), [
    ("| when | use |\n|---|---|\n| a | b |", "a summary table's columns are 'use', 'when'"),
    ("no table", "no summary table")])
def test_a_summary_table_that_is_missing_or_not_use_then_when_is_named(tmp_path, summary, said):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 42 · x"),
                                         nbformat.v4.new_markdown_cell(f"## Summary\n\n{summary}")])
    path = tmp_path / "42_x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match=f"42_x.ipynb: {said}"):
        handout.summary_table(path)


def test_a_pipe_inside_code_stays_in_its_cell():
    assert handout.cells_of("| `a | b` | when |") == ["`a | b`", "when"]
    assert handout.cells_of(r"| a \| b | when |") == [r"a \| b", "when"]  # GitHub's escaped pipe, outside code too
