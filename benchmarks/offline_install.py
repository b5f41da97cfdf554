"""Prove the offline install (issue 18): a clean clone, a fresh virtual environment, no package index at all.

    make wheelhouse                                   # once, with network
    python3 benchmarks/offline_install.py [--quick]   # then, offline

It clones the committed checkout into a temporary folder and installs it the make-free way a Windows laptop
would (`python -m venv .venv`, `pip install -e ".[notebooks,test]"`) with PIP_NO_INDEX=1 and only this checkout's
wheelhouse/ to find packages in. Then it runs `make test` there (the whole suite, about 10 minutes on 2 cores),
or with --quick the make-free test path: `workbook seed --if-needed` + `pytest tests/test_structure.py
tests/test_packaging.py`. Not a test of the suite: the wheelhouse is downloaded, and the clone runs its own
embedded server (stopped at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["tests/test_structure.py", "tests/test_packaging.py"]


def step(title: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run one command, print it and its time; stop the proof at the first failure."""
    print(f"$ {' '.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, check=False)
    print(f"  {title}: {'ok' if result.returncode == 0 else f'FAILED (exit {result.returncode})'} "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    if result.returncode:
        raise SystemExit(result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="install, then only " + " and ".join(QUICK))
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone (its path is printed)")
    args = parser.parse_args()
    wheelhouse = ROOT / "wheelhouse"
    if not any(wheelhouse.glob("*.whl")):
        raise SystemExit(f"{wheelhouse} holds no wheels: run `make wheelhouse` first (it needs the network once).")
    where = Path(tempfile.mkdtemp(prefix="workbook-offline-"))
    clone = where / "workbook"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL", "WORKBOOK_HOME",
                                                            "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), PIP_DISABLE_PIP_VERSION_CHECK="1")
    bin_dir = clone / ".venv" / ("Scripts" if os.name == "nt" else "bin")
    try:
        print(f"offline install into {clone} (PIP_NO_INDEX=1, --find-links {wheelhouse})", flush=True)
        step("clean clone", ["git", "clone", "--quiet", str(ROOT), str(clone)], where, env)
        shutil.copytree(wheelhouse, clone / "wheelhouse")  # what `make` looks for; PIP_FIND_LINKS covers the rest
        step("fresh venv", [sys.executable, "-m", "venv", ".venv"], clone, env)
        step("install", [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-e", ".[notebooks,test]"],
             clone, env)
        if args.quick:
            env_tiny = {**env, "WORKBOOK_SCALE": "tiny"}
            step("seed", [str(bin_dir / "workbook"), "seed", "--if-needed"], clone, env_tiny)
            step("pytest", [str(bin_dir / "python"), "-m", "pytest", "-q", *QUICK], clone, env_tiny)
        else:
            step("make test", ["make", "test"], clone, env)
        print("offline install proven: no package index was used")
    finally:
        if (bin_dir / "workbook").exists():
            subprocess.run([str(bin_dir / "workbook"), "db", "stop"], cwd=clone, env=env, capture_output=True,
                           check=False)
        if args.keep:
            print(f"kept: {clone}")
        else:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
