"""Presentation mode: every notebook's RISE slide metadata is the one generated from its anatomy, and the rules hold."""

from __future__ import annotations

import nbformat
import pytest

from workbook_utils import slides
from workbook_utils.notebook_files import notebook_paths

NOTEBOOKS = notebook_paths()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_slide_metadata_is_generated_and_current(path):
    nb = nbformat.read(path, as_version=4)
    stale = slides.stale_cells(nb)
    assert not stale, (f"{path.name}: slide metadata is stale (run `python -m workbook_utils.slides`): "
                       + "; ".join(stale[:5]))
    assert slides.slide_count(nb) >= 2  # the title and at least one section


def test_sections_start_slides_demos_are_fragments_and_asserts_are_skipped():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 04 · Title\n\ntext"),
        nbformat.v4.new_markdown_cell("Prerequisites: none."),
        nbformat.v4.new_markdown_cell("## 1. The lost update\n\nTwo customers…"),
        nbformat.v4.new_code_cell("reset()\nlost = run()"),
        nbformat.v4.new_code_cell("assert stock() == 9, stock()\n# a comment\nassert lost"),
        nbformat.v4.new_code_cell("assert stock() == 9\nprint(stock())"),  # prints too: shown
        nbformat.v4.new_code_cell("%%sql\nSELECT 1"),
        nbformat.v4.new_markdown_cell("### The race as a script"),
        nbformat.v4.new_markdown_cell("What to notice: ## is not a heading here"),
    ])
    assert slides.slide_types(nb) == ["slide", "-", "slide", "fragment", "skip", "fragment", "fragment", "subslide", "-"]
    assert slides.slide_count(nb) == 2
    assert len(slides.stale_cells(nb)) == 10  # 9 cells and the notebook's RISE settings
    assert slides.apply(nb) and not slides.stale_cells(nb) and not slides.apply(nb)  # idempotent
    nb.cells[3].metadata["slideshow"]["slide_type"] = "skip"
    assert slides.stale_cells(nb) == ["cell 3 (" + nb.cells[3].id + "): slide_type 'skip', should be 'fragment'"]


def test_the_live_controls_are_in_their_notebooks():
    import importlib.util

    from workbook_utils import config

    spec = importlib.util.spec_from_file_location("apply_controls", config.project_root() / "benchmarks" / "apply_controls.py")
    apply_controls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(apply_controls)
    assert apply_controls.main(["--check"]) == 0, "run `python benchmarks/apply_controls.py`"
