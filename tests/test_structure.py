"""Notebooks keep one shape: numbered title, the setup call first, exercises, summary, no outputs; README lists them."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from workbook_utils import anatomy, questions
from workbook_utils.config import project_root
from workbook_utils.notebook_files import NAV, nav_line, notebook_paths

NOTEBOOKS = notebook_paths()
ANATOMY = NOTEBOOKS  # every notebook is in design §6's anatomy


def _load(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_file_name_is_numbered_snake_case(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_h1_with_the_notebook_number(path):
    headings = [line for cell in _load(path)["cells"] if cell["cell_type"] == "markdown"
                for line in "".join(cell["source"]).splitlines() if line.startswith("# ")]
    assert len(headings) == 1 and headings[0].startswith(f"# {path.name[:2]} · "), headings


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_setup_call(path):
    first = next(c for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert "".join(first["source"]) == f'from workbook_utils import setup\n\nwb = setup("{path.name[:2]}")'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_exercises_and_summary_sections(path):
    text = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
    assert "\n## Exercises" in "\n" + text and "\n## Summary" in "\n" + text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_the_project_kernel(path):
    nb = _load(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_readme_lists_every_notebook_in_order_with_its_title():
    readme = (project_root() / "README.md").read_text()
    listed = re.findall(r"\]\(notebooks/(\d\d_[a-z0-9_]+\.ipynb)\)", readme)
    assert listed == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        title = next(line[2:] for c in _load(path)["cells"] if c["cell_type"] == "markdown"
                     for line in "".join(c["source"]).splitlines() if line.startswith("# "))
        assert f"[{title}](notebooks/{path.name})" in readme


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (project_root() / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make lab" in first_block and "make test" in first_block
    assert "make test" in (project_root() / ".ci" / "run").read_text()


@pytest.mark.parametrize("i", range(len(NOTEBOOKS)), ids=[p.name for p in NOTEBOOKS])
def test_navigation_lines_are_generated_and_current(i):
    """Top and bottom carry the line `python -m workbook_utils.regenerate` writes from the file names and titles."""
    text = "\n".join("".join(c["source"]) for c in _load(NOTEBOOKS[i])["cells"] if c["cell_type"] == "markdown")
    assert NAV.findall(text) == [nav_line(NOTEBOOKS, i)] * 2
    html = markdown2html_mistune(nav_line(NOTEBOOKS, i))  # rendered, the links are links, not raw text
    assert '<a href="../README.md#notebooks">Contents</a>' in html


@pytest.mark.parametrize("path", ANATOMY, ids=lambda p: p.name)
def test_anatomy_headings_first_parts_with_exercises_key_points_and_restart_cells_questions_from_the_checkers(path):
    """Design §6, as `workbook_utils.anatomy` and `workbook_utils.questions` check it (a room learner of
    tests/test_notebooks.py restarts the kernel at each Part's restart cell: that proves the restarts)."""
    number, nb = path.name[:2], nbformat.read(path, as_version=4)
    problems = (anatomy.heading_problems(nb) + anatomy.notice_problems(nb) + anatomy.part_problems(nb, number)
                + questions.question_problems(nb, number, questions.questions_of(number)))
    printed = [f"cell {i}: prints its question: the question cell above says it" for i, cell in enumerate(nb.cells)
               if cell.cell_type == "code" and re.search(r"print\(q\d+\.question\)", cell.source)]
    assert not problems + printed, "\n".join(problems + printed)
