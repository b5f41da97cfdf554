"""The browser tests' harness: one JupyterLab and one headless Chromium per test module, both offline.

Playwright drives the system's Chromium (`apt-get install chromium`) through `executable_path`: it never downloads
a browser. JupyterLab runs on a free 127.0.0.1 port with a token, in a temporary directory with its own settings,
and makes no request of its own to the outside (no news, no update check, a read-only extension manager).
`Recorder` keeps every request the pages make, so that a test can assert that none left the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-default-apps"]  # Chromium's own calls home: none
LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}
# The user settings a room gets from `workbook lab` (workbook_utils.lab.OVERRIDES): no news, no update check.
SETTINGS = {"settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            '{"checkForUpdates": false, "fetchNews": "false"}',
            # What the tests do not use, and that costs start-up time: the language-server scan, terminals.
            "config/jupyter_server_config.json":
            '{"ServerApp": {"jpserver_extensions": {"jupyter_lsp": false, "jupyter_server_terminals": false}}}',
            "config/labconfig/page_config.json":
            '{"disabledExtensions": {"@jupyterlab/lsp-extension": true, "@jupyterlab/terminal-extension": true}}'}


def missing() -> str:
    """Why the browser tests cannot run here ('' when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Skipped: the browser tests need playwright (pip install -e '.[test]')."
    if not CHROMIUM:
        return "Skipped: the browser tests need Chromium (apt-get install chromium; .ci/run installs it)."
    return ""


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and the directory it serves."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen = field(repr=False)

    def page_url(self, path: str) -> str:
        return f"{self.url}/{path}{'&' if '?' in path else '?'}token={self.token}"


@contextmanager
def jupyterlab(root: Path, timeout: float = 90) -> Iterator[Lab]:
    """JupyterLab serving `root`, offline, until the block ends (then stopped with its kernels)."""
    port, token = free_port(), secrets.token_hex(16)
    home = root / ".lab"
    for name, text in SETTINGS.items():
        path = home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "BROWSER": "true"}
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.name == "posix":
        command.append("--KernelManager.transport=ipc")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "lab.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield Lab(url, token, root, process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down on SIGTERM
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


class Recorder:
    """Every request the pages of a browser context make (frames and workers included)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, request) -> None:
        self.urls.append(request.url)

    def outside(self) -> list[str]:
        """The requests that would leave the machine (data:, blob: and about: URLs stay in the page)."""
        return [url for url in self.urls
                if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL]
