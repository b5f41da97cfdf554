"""In a real (headless) Chromium, offline: the slideshow opens with one slide per section, 04's race player renders
and changes its output when "Next step" is clicked, and the live controls of 01, 02 and 05 render and change their
output when moved, then leave no session behind. No page asks anything of a host other than this machine.

One JupyterLab and one Chromium serve the whole module (starting them is most of its time).
"""

from __future__ import annotations

import re
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
# The live controls of 01 §5, 02 §2 and 05 §3 (workbook_utils/live.py) on a scratch schema of their own, nbbrowser:
# the cells after the player's, in its notebook (a third JupyterLab page and kernel cost ~4 s more CPU on 2 cores,
# and once left the player's kernel not idle after 60 s at load 10)
CONTROLS = ["""\
from workbook_utils import live, setup

wb = setup("browser")
engine = wb.scratch_copy(["users", "posts", "comments"], indexes=["posts(user_id)", "comments(post_id)"])""",
            "live.n_plus_one(wb, engine)", "live.lock_queue(wb, lock_timeout=\"50 ms\", hold=0.2)",
            "live.pool_sweep(wb, clients=4)", "wb.close()"]
CONTROLS_APP = "workbook-nbbrowser"  # their sessions' application_name (and its suffixes)
SESSIONS = f"""SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '{CONTROLS_APP}%'
               AND datname = current_database() AND pid <> pg_backend_pid()"""


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
        # the controls' sessions, if a test failed before their wb.close(), then their scratch schema
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                          f"'{CONTROLS_APP}%' AND datname = current_database() AND pid <> pg_backend_pid()"))
        conn.execute(text("DROP SCHEMA IF EXISTS nbbrowser CASCADE"))
    engine.dispose()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, player_schema):
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(config.project_root() / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    cells = [nbformat.v4.new_code_cell(source) for source in [PLAYER, *CONTROLS]]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), root / "player.ipynb")
    with browser.jupyterlab(root) as running:
        yield running


@pytest.fixture(scope="module")
def browser_pages(lab):
    """Chromium with the pages the tests look at, loading side by side (most of their time is waiting for the
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


def run_cell(page, number: int):
    """Run the notebook's cell `number` (0: the player, 1 to 5: CONTROLS) as a learner does (Shift+Enter in it),
    wait until it finished, and return the cell."""
    cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").nth(number)
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()  # [ ]: or the count of its last run
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + 60
    while ((now := prompt.inner_text()) == before or not re.search(r"\[\d+\]", now)) and time.monotonic() < deadline:
        time.sleep(0.05)  # [*] while it runs
    assert re.search(r"\[\d+\]", now) and now != before, f"cell {number} did not run: {now}"
    return cell


def output_changes(output, before: str, timeout: float = 30) -> str:
    """The output's text once it differs from `before` (a control reran its demo)."""
    deadline = time.monotonic() + timeout
    while (now := output.inner_text()) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


@pytest.fixture(scope="module")
def controls_page(browser_pages):
    """The notebook's page with the controls' first cell run: the setup and the scratch copies."""
    pages, _ = browser_pages
    page = pages["player"]
    page.wait_for_selector("text=| Idle")  # the kernel is up
    assert "Notebook browser · PostgreSQL" in run_cell(page, 1).locator(".jp-OutputArea").inner_text()
    return page


def test_n_plus_one_renders_and_selectinload_turns_51_statements_into_2(pages, controls_page):
    cell = run_cell(controls_page, 2)
    output = cell.locator(".widget-output")
    output.get_by_text("lazy, N = 50: 51 statements").wait_for()
    before = output.inner_text()
    assert "nbbrowser.posts" in before  # the SQL sent is shown
    cell.locator(".widget-toggle-button", has_text="selectinload").click()
    after = output_changes(output, before)
    assert after.startswith("selectinload, N = 50: 2 statements"), after


def test_lock_queue_renders_and_no_lock_timeout_makes_one_long_wait(pages, controls_page):
    cell = run_cell(controls_page, 3)
    output = cell.locator(".widget-output")
    output.get_by_text("ALTER TABLE:").wait_for()
    before, chart = output.inner_text(), output.locator("img").get_attribute("src")
    attempts = int(re.search(r"ALTER TABLE: (\d+) attempt", before)[1])
    assert attempts >= 2 and "last: ok" in before, before  # 50 ms, then retried, behind a 0.2 s blocker
    cell.locator(".widget-toggle-button", has_text="none").click()
    after = output_changes(output, before)
    waited = re.search(r"ALTER TABLE: 1 attempt\(s\), waited \[(\d+)\] ms, last: ok", after)
    assert waited and int(waited[1]) >= 180, after  # queued as long as the blocker lasted
    assert output.locator("img").get_attribute("src") != chart  # the timeline was redrawn


def test_pool_sweep_renders_and_the_io_share_slider_redraws_it(pages, controls_page):
    cell = run_cell(controls_page, 4)
    output = cell.locator(".widget-output")
    output.get_by_text("knee at pool").wait_for()
    before, chart = output.inner_text(), output.locator("img").get_attribute("src")
    assert "÷ 0.50 CPU share" in before, before  # 50% of each request waiting
    handle = cell.locator(".widget-hslider", has_text="I/O share").locator(".noUi-handle")
    handle.focus()
    controls_page.keyboard.press("ArrowRight")  # one step: 60%
    after = output_changes(output, before)
    assert "knee at pool" in after and "÷ 0.40 CPU share" in after, after
    assert output.locator("img").get_attribute("src") != chart  # the sweep was redrawn


def test_the_controls_leave_no_session_behind(pages, controls_page, seeded):
    from workbook_utils import db

    with db.connect(seeded) as conn:  # autocommit: pg_stat_activity is read afresh by each statement, not per transaction
        run_cell(controls_page, 2).get_by_text("N = 50").wait_for()  # 02's control: its engine keeps a session
        assert conn.execute(SESSIONS).fetchone()[0] >= 1  # so that what follows can fail
        run_cell(controls_page, 5)  # wb.close(), run from the browser
        deadline = time.monotonic() + 5
        while (left := conn.execute(SESSIONS).fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.1)  # a terminated session leaves pg_stat_activity a moment later
    assert left == 0, f"{left} sessions of the controls' notebook left open"
