"""In a real (headless) Chromium, offline: the slideshow opens with one slide per section, and 04's race player renders
and changes its output when "Next step" is clicked. No page asks anything of a host other than this machine.

One JupyterLab and one Chromium serve the whole module (starting them is most of its time).
"""

from __future__ import annotations

import shutil
import time

import nbformat
import pytest
from sqlalchemy import text

from tests import browser
from workbook_utils import config, slides

if why := browser.missing():
    pytest.skip(why, allow_module_level=True)

NOTEBOOK = "04_transactions_and_locking_races.ipynb"
SCHEMA = "nb_player_browser"
PLAYER = f"""\
from workbook_utils import db, race_player, urls

engine = db.make_engine(urls.database_url(), connect_args={{"options": "-c search_path={SCHEMA}"}})
race_player.widget(engine)"""


@pytest.fixture(scope="module")
def player_schema(seeded):
    from workbook_utils import db, urls

    engine = db.make_engine(urls.database_url())
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; "
                          f"CREATE TABLE {SCHEMA}.products (id int PRIMARY KEY, inventory int NOT NULL); "
                          f"INSERT INTO {SCHEMA}.products VALUES (1, 10)"))
    yield SCHEMA
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    engine.dispose()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, player_schema):
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(config.project_root() / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PLAYER)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}),
        root / "player.ipynb")
    with browser.jupyterlab(root) as running:
        yield running


@pytest.fixture(scope="module")
def browser_pages(lab):
    """Chromium with the two pages the tests look at, loading side by side (most of their time is waiting for the
    server and the kernels), and the recorder of every request they make."""
    from playwright.sync_api import sync_playwright

    recorder = browser.Recorder()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser.CHROMIUM, args=browser.CHROMIUM_FLAGS)
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(60_000)
        context.on("request", recorder)
        pages = {}
        for name, path in [("slideshow", f"rise/{NOTEBOOK}"), ("player", "lab/tree/player.ipynb?reset")]:
            pages[name] = context.new_page()
            pages[name].goto(lab.page_url(path), wait_until="commit")  # what RISE's Alt+R shows beside the notebook
        yield pages, recorder
        chromium.close()


@pytest.fixture
def pages(browser_pages):
    """The pages; after each test, every request they made so far stayed on this machine."""
    pages, recorder = browser_pages
    yield pages
    assert recorder.urls, "no request recorded: the recorder saw nothing"
    assert not recorder.outside(), f"requests left the machine: {recorder.outside()[:5]}"


def test_the_slideshow_opens_with_one_slide_per_section(lab, pages):
    nb = nbformat.read(lab.root / NOTEBOOK, as_version=4)
    expected = slides.slide_count(nb)
    page = pages["slideshow"]
    page.wait_for_function(f"document.querySelectorAll('.reveal .slides > section').length >= {expected}")
    assert page.locator(".reveal .slides > section").count() == expected
    assert page.locator(".reveal .slides > section").first.locator("h1").inner_text().startswith("04 · ")  # the title
    page.locator(".reveal .slides > section.present").first.wait_for()  # reveal.js shows the first one


def test_the_race_player_renders_and_next_step_changes_it(pages):
    page = pages["player"]
    panel = page.locator(".jp-NotebookPanel:visible")
    page.wait_for_selector("text=| Idle")  # the kernel is up
    panel.locator(".jp-CodeCell").first.click()
    page.keyboard.press("Shift+Enter")
    next_step = panel.locator("button:has-text('Next step')")
    next_step.wait_for()
    widget = panel.locator(".widget-output").first
    widget.locator("table").wait_for()
    before = widget.inner_text()
    assert "→" in before and "pg_locks" not in before  # the script, nothing run yet
    next_step.click()
    widget.locator("img").wait_for()  # the lanes of step 1
    deadline = time.monotonic() + 30
    while "pg_locks after this step" not in widget.inner_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    after = widget.inner_text()
    assert after != before and "pg_locks after this step" in after
    assert page.locator(".Toastify__toast").count() == 0  # no "get notified about Jupyter news?" (it would fetch)
