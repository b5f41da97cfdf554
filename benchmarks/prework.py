"""Time a learner's pre-work (issue 26 §1, FACILITATOR.md "Before day 1"): a clean clone, a fresh virtual environment,
`pip install -e ".[notebooks,test]"`, `workbook doctor`, and the first seed at the default scale `small`.

    python3 benchmarks/prework.py

It installs from whatever index pip is configured with (its cache helps, as on a laptop that installed once);
offline, set PIP_NO_INDEX=1 and PIP_FIND_LINKS=wheelhouse (benchmarks/offline_install.py proves that path). The clone
runs its own embedded server, stopped and deleted at the end. Prints each step's time and the total: the figure the
guide quotes as "measured on …".
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, args: list[str], cwd: Path, env: dict[str, str], fail_ok: bool = False) -> float:
    """Run one command, print its time; stop at the first failure (unless `fail_ok`: the doctor before the seed)."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    print(f"  {title}: {'ok' if result.returncode == 0 else f'exit {result.returncode}'} in {took:.0f} s", flush=True)
    if result.returncode and not fail_ok:
        print(result.stdout[-2000:] + result.stderr[-2000:])
        raise SystemExit(result.returncode)
    return took


def main() -> None:
    where = Path(tempfile.mkdtemp(prefix="workbook-prework-"))
    clone = where / "workbook"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL", "WORKBOOK_HOME",
                                                            "VIRTUAL_ENV", "WORKBOOK_SCALE")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    bin_dir = clone / ".venv" / ("Scripts" if os.name == "nt" else "bin")
    print(f"pre-work on {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    total = 0.0
    try:
        total += step("clean clone", ["git", "clone", "--quiet", str(ROOT), str(clone)], where, env)
        total += step("fresh venv", [sys.executable, "-m", "venv", ".venv"], clone, env)
        total += step("install", [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-e",
                                  ".[notebooks,test]"], clone, env)
        total += step("workbook doctor (before the seed: says what is missing)", [str(bin_dir / "workbook"), "doctor"],
                      clone, env, fail_ok=True)
        total += step("first seed, scale small", [str(bin_dir / "workbook"), "seed", "--if-needed"], clone, env)
        total += step("workbook doctor", [str(bin_dir / "workbook"), "doctor"], clone, env)
        print(f"pre-work: {total / 60:.1f} minutes in all")
    finally:
        if (bin_dir / "workbook").exists():
            subprocess.run([str(bin_dir / "workbook"), "db", "stop"], cwd=clone, env=env, capture_output=True,
                           check=False)
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
