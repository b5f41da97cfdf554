"""What a learner sees: `workbook lab` opened in a real (headless) Chromium, timed, with a screenshot.

    apt-get install chromium          # Debian/Ubuntu; any Chromium or Chrome will do (--chromium PATH)
    .venv/bin/pip install playwright  # only the driver: the browser is the one above
    .venv/bin/python benchmarks/lab_in_browser.py [--notebook 00_start_here.ipynb]

Runs `workbook lab` as `make lab` does (the second time: everything already in place), opens the notebook,
and checks that it opens straight into the project's kernel (no "Select Kernel" dialog), that no notification
pops up (JupyterLab's news and update checks reach for the network), and that the setup cell runs and prints
its one line. Prints the times and saves build/lab_in_browser.png. Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]  # no connections to the outside world


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"JupyterLab did not answer at {url} within {timeout} s")


def check(page, notebook: str) -> dict[str, float]:
    """Open the notebook, wait for an idle kernel, run the setup cell; the moments each happened."""
    start = time.perf_counter()
    panel = page.locator(".jp-NotebookPanel:visible")  # the notebook's own tab, not others left open
    panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
    page.wait_for_selector("text=| Idle", timeout=60_000)  # the status bar: "Python 3 (ipykernel) | Idle"
    ready = time.perf_counter() - start
    dialogs = page.locator(".jp-Dialog").count()
    toasts = page.locator(".Toastify__toast").count()
    kernel = panel.locator(".jp-KernelName").first.inner_text()
    panel.locator(".jp-CodeCell").first.click()  # select the setup cell …
    time.sleep(0.5)
    page.keyboard.press("Shift+Enter")  # … and run it, as a learner would
    output = panel.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=120_000)
    ran = time.perf_counter() - start
    text = output.inner_text()
    problems = []
    if dialogs:
        problems.append(f"{dialogs} dialog(s) open")
    if toasts:
        problems.append(f"{toasts} notification(s) shown")
    if "Python 3" not in kernel:
        problems.append(f"kernel is {kernel!r}")
    if not text.startswith(f"Notebook {notebook[:2]} · PostgreSQL"):
        problems.append(f"setup cell printed {text!r}")
    print(f"kernel: {kernel} · setup cell printed: {text.strip()}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return {"notebook open, kernel idle": ready, "setup cell done": ran, "problems": len(problems)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", default="00_start_here.ipynb")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("needs playwright: .venv/bin/pip install playwright") from None
    if not args.chromium:
        raise SystemExit("needs Chromium: apt-get install chromium (or pass --chromium PATH)")
    notebook = ROOT / "notebooks" / args.notebook
    committed = notebook.read_bytes()  # JupyterLab saves what it opened: put the file back afterwards
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_PORT": str(port), "JUPYTER_TOKEN": token, "BROWSER": "true"}  # BROWSER: open none
    t0 = time.perf_counter()
    lab = subprocess.Popen([str(ROOT / ".venv" / "bin" / "workbook"), "lab"], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}")
        served = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{args.notebook}?reset&token={token}")  # reset: no old tabs
            shot = ROOT / "build" / "lab_in_browser.png"
            shot.parent.mkdir(exist_ok=True)
            try:
                result = check(page, args.notebook)
            finally:
                page.screenshot(path=str(shot))  # also when a check timed out: the picture says why
                browser.close()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down on SIGTERM
        lab.wait(timeout=30)
        notebook.write_bytes(committed)
    print(f"workbook lab → server answering   {served:6.2f} s   (second start: budget 'seconds')")
    print(f"page → notebook open, kernel idle {result['notebook open, kernel idle']:6.2f} s")
    print(f"page → setup cell done            {result['setup cell done']:6.2f} s")
    print(f"screenshot: {shot}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
