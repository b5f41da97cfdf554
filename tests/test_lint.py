"""The code passes the project's ruff rules (pyproject.toml [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys

from workbook_utils.config import project_root


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "workbook_utils", "tests", "benchmarks", "data/migrations"],
                            cwd=project_root(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout
