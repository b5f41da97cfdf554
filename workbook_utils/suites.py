"""Test modules written to a temporary folder and run by pytest in a subprocess (notebook 07).

The notebook writes a small test suite (a conftest, the code under test, its failing and fixed test modules),
runs it as a reader would run `pytest` in a terminal, and asserts on the outcome of each test. Every run is
bounded: a timeout on the subprocess, and `lock_timeout`/`statement_timeout` on every session it opens. The suites
need no third-party pytest plugin, so pytest loads none (PYTEST_DISABLE_PLUGIN_AUTOLOAD): the installed ones (Faker's,
anyio's …) would add over a second to every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import project_root
from .errors import WorkbookError

if TYPE_CHECKING:
    import pandas as pd

SESSION_LIMITS = "-c lock_timeout=5s -c statement_timeout=30s"


@dataclass
class Report:
    """What one pytest run said: one row per test (module, test, outcome, message) and pytest's own summary."""

    tests: pd.DataFrame
    output: str
    properties: dict[str, dict[str, str]]  # {"module::test": what its fixtures recorded in user_properties}

    def count(self, outcome: str) -> int:
        """How many tests ended with `outcome` ("passed", "failed", "error", "skipped")."""
        return int((self.tests["outcome"] == outcome).sum())

    def outcomes(self) -> dict[str, str]:
        """{"module::test": outcome} for every test, in the order pytest ran them."""
        return {f"{r.module}::{r.test}": r.outcome for r in self.tests.itertuples()}

    def message(self, test: str) -> str:
        """The failure (or error) message of the first test whose "module::test" name contains `test`."""
        rows = self.tests[[test in f"{r.module}::{r.test}" for r in self.tests.itertuples()]]
        if rows.empty:
            raise WorkbookError(f"no test named like {test!r} ran; these did: {', '.join(self.outcomes())}")
        return rows["message"].iloc[0]

    def show(self) -> None:
        """Print pytest's summary lines (what a terminal shows at the end of a run)."""
        print(self.output.strip())


def _parse(junit: Path) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """One row per <testcase> of pytest's JUnit XML (module, test, outcome, first line of the message); properties."""
    import pandas as pd

    rows, properties = [], {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            if (found := case.find(tag)) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (found.get("message") or found.text or "").strip().splitlines()[0]
                break
        module = case.get("classname", "").split(".")[0]
        rows.append({"module": module, "test": case.get("name"), "outcome": outcome, "message": message})
        properties[f"{module}::{case.get('name')}"] = {p.get("name"): p.get("value") for p in case.iter("property")}
    return pd.DataFrame(rows, columns=["module", "test", "outcome", "message"]), properties


def run(files: dict[str, str], url: str, app_name: str, schema: str, order: list[str] | None = None,
        timeout: float = 120.0, env: dict[str, str] | None = None) -> Report:
    """Write `files` ({relative path: text}) to a temporary folder and run pytest there, in a subprocess.

    The tests read DATABASE_URL; libpq reads PGAPPNAME (their sessions' name) and PGOPTIONS (search_path =
    `schema`, plus lock and statement timeouts). `order` names the test modules in the order to run them
    (default: every test_*.py, sorted). `env` adds environment variables (PYTEST_XDIST_WORKER, say).
    """
    with tempfile.TemporaryDirectory(prefix="workbook-tests-") as folder:
        for name, text in files.items():
            path = Path(folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        modules = order or sorted(n for n in files if Path(n).name.startswith("test_"))
        junit = Path(folder, "report.xml")
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "DATABASE_URL": url, "PGAPPNAME": app_name,
               "PGOPTIONS": f"-c search_path={schema} {SESSION_LIMITS}",
               "PYTHONPATH": os.pathsep.join([str(project_root()), os.environ.get("PYTHONPATH", "")]), **(env or {})}
        command = [sys.executable, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider", "--tb=no", "-rfE",
                   "--color=yes", "-o", "verbosity_assertions=2",
                   "--junitxml", str(junit), "-o", "junit_family=xunit2", "--rootdir", folder, *modules]
        try:
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise WorkbookError(f"pytest did not finish within {timeout:g} s (a test waiting on a lock?); "
                                "run the cell again") from exc
        if not junit.exists():  # pytest could not even collect: show why
            raise WorkbookError(f"pytest ran no tests: {(done.stdout + done.stderr).strip()[-2000:]}")
        tests, properties = _parse(junit)
        return Report(tests, done.stdout.replace(folder + os.sep, ""), properties)
