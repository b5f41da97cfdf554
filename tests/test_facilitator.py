"""FACILITATOR.md cannot drift: every command in its console blocks is run here, its schedule is generated.

The commands run in a throwaway copy of the workbook (WORKBOOK_HOME: its own embedded server, at scale tiny), so
stopping or deleting the server there leaves the suite's alone. Commands that download or run the whole suite
are dry-run (`make -n`) here and proven where this says; a room's commands run with 2 learners.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbook_utils.config import project_root
from workbook_utils.notebook_files import SCHEDULE, notebook_paths, schedule

ROOT = project_root()
GUIDE = (ROOT / "FACILITATOR.md").read_text()
BIN = Path(sys.executable).parent  # this environment's `workbook` and `python`


def _commands() -> list[str]:
    """Each `$ command` line of the guide's console blocks, without its trailing comment."""
    blocks = re.findall(r"```console\n(.*?)```", GUIDE, re.S)
    return [line.strip()[2:] for block in blocks for line in block.splitlines() if line.strip().startswith("$ ")]


COMMANDS = list(dict.fromkeys(_commands()))


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """A copy of the workbook (Makefile, notebooks) with an embedded server of its own, stopped at the end."""
    home = tmp_path_factory.mktemp("room")
    shutil.copy(ROOT / "Makefile", home)
    shutil.copy(ROOT / "pyproject.toml", home)
    shutil.copytree(ROOT / "notebooks", home / "notebooks")
    env = {**os.environ, "WORKBOOK_HOME": str(home), "WORKBOOK_SCALE": "tiny",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DATABASE_URL", None)
    yield home, env
    subprocess.run([str(BIN / "workbook"), "db", "stop"], env=env, capture_output=True, timeout=60, check=False)


def _run(command: str, home: Path, env: dict[str, str], extra: str = "") -> subprocess.CompletedProcess:
    args = shlex.split(command, comments=True) + shlex.split(extra)
    return subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=180, check=False)


def _ready(home: Path, env: dict[str, str]) -> None:
    """The room's server started and seeded (again, after a command that removed it)."""
    result = _run("workbook seed --if-needed", home, env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_guide_has_commands_and_the_readme_links_it():
    assert len(COMMANDS) >= 12
    assert "](FACILITATOR.md)" in (ROOT / "README.md").read_text()


def test_the_schedule_is_generated_from_the_notebooks_time_lines():
    assert SCHEDULE.findall(GUIDE) == [schedule()], "run python -m workbook_utils.regenerate"
    assert all(f"[{p.name[:2]} · " in GUIDE for p in notebook_paths())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_of_the_guide_runs(command, room, tmp_path):
    home, env = room
    words = shlex.split(command, comments=True)
    if words[0].startswith("DATABASE_URL="):  # a learner's command on the shared server
        _learner_command(words[1:], home, env)
        return
    if words[:2] in (["workbook", "provision"], ["workbook", "room"]):
        _room_command(words, home, env)
        return
    if words[:2] == ["make", "wheelhouse"]:  # downloads: benchmarks/offline_install.py proves the wheelhouse
        out = _run(command, home, env, "-n").stdout
        assert "pip download --quiet --only-binary=:all: --dest wheelhouse -r wheelhouse/requirements.txt" in out
        for platform in re.findall(r'PLATFORMS="([^"]*)"', command)[0].split() if "PLATFORMS" in command else []:
            assert platform in out
        return
    if command == "make test":  # the suite itself (.ci/run runs it): here, that it installs offline when it can
        assert "--no-index" not in _run(command, home, env, "-n VENV=/nonexistent").stdout
        (home / "wheelhouse").mkdir(exist_ok=True)
        (home / "wheelhouse" / "x-1-py3-none-any.whl").touch()
        try:
            out = _run(command, home, env, "-n VENV=/nonexistent").stdout
        finally:
            shutil.rmtree(home / "wheelhouse")
        assert out.count("pip install --quiet --no-index --find-links wheelhouse") == 2 and "pytest" in out
        return
    if words[:2] == ["workbook", "run"]:  # every notebook: tests/test_handouts.py runs it on 00, and --solutions on 02
        handouts = (ROOT / "tests" / "test_handouts.py").read_text()
        assert "test_run_writes_the_index_and_the_solutions_edition_of_02" in handouts
        assert all(f'"{word}"' in handouts for word in words[1:])
        return
    if command == "git checkout notebooks/":
        _a_learners_notebooks_put_back(tmp_path, env)
        return
    _ready(home, env)
    result = _run(command, home, env, f"VENV={sys.prefix}" if words[0] == "make" else "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    expected = {"workbook doctor": "dataset seeded at scale tiny", "workbook db start": "running on 127.0.0.1",
                "workbook db status": "running on 127.0.0.1", "workbook reset": "Dataset restored",
                "workbook db stop": "stopped", "workbook db psql": "application_name"}
    said = next((v for k, v in expected.items() if command.startswith(k)), "")
    assert said in result.stdout, result.stdout
    if command == "workbook doctor":
        assert "PROBLEM" not in result.stdout
    if command in ("make clean-state", "workbook db stop"):
        status = _run("workbook db status", home, env)
        assert status.returncode == 3 and "not running" in status.stdout
        assert (home / ".workbook").exists() == (command == "workbook db stop")


def _room_command(words: list[str], home: Path, env: dict[str, str]) -> None:
    """A room's commands on the stand-in server (max_connections 50, too small for a room): 2 learners, with --force."""
    _ready(home, env)
    provision = ["workbook", "provision", "--learners", "2", "--force", "--out", "learners.csv"]
    if "--learners" in words:
        words = words[:words.index("--learners")] + provision[2:5] + words[words.index("--learners") + 2:]
    else:  # the room and --drop need learners to show and remove (provision keeps the ones that exist)
        assert _run(shlex.join(provision), home, env).returncode == 0
    result = _run(shlex.join(words), home, env)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "Traceback" not in said
    passwords = re.findall(r"postgresql://[^:/]+:([^@]+)@", (home / "learners.csv").read_text())
    assert len(passwords) == 2 and not any(p in said for p in passwords), "passwords only in the hand-out files"
    if "--drop" in words:
        assert "dropped 2 databases and 2 roles" in said, said
    else:
        assert all(f"learner{n:02d}" in said or f"learner{n}" in said for n in (1, 2)), said


def _learner_command(words: list[str], home: Path, env: dict[str, str]) -> None:
    """A learner's command run with learner01's URL from learners.csv, as their card says."""
    _ready(home, env)
    provision = ["workbook", "provision", "--learners", "2", "--force", "--out", "learners.csv"]
    assert _run(shlex.join(provision), home, env).returncode == 0
    with (home / "learners.csv").open(newline="") as f:
        url = next(row["DATABASE_URL"] for row in csv.DictReader(f) if row["learner"] == "learner01")
    result = _run(shlex.join(words), home, {**env, "DATABASE_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Dataset restored" in result.stdout and "learner01" in result.stdout + result.stderr
    assert url.split(":")[2].split("@")[0] not in result.stdout + result.stderr  # never the password


def _a_learners_notebooks_put_back(tmp_path: Path, env: dict[str, str]) -> None:
    """A clone with a notebook JupyterLab saved outputs into: the command restores the committed one."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], check=True, timeout=60)
    first = sorted((clone / "notebooks").glob("*.ipynb"))[0]
    committed = first.read_text()
    first.write_text(committed.replace('"outputs": []', '"outputs": [{"output_type": "stream"}]', 1))
    result = _run("git checkout notebooks/", clone, env)
    assert result.returncode == 0 and first.read_text() == committed


def test_the_readme_make_free_path_installs_what_make_installs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Without make")[1].split("```")[1]
    make = re.search(r"-e '(\.\[[a-z,]+\])'", (ROOT / "Makefile").read_text()).group(1)
    assert f'pip install -e "{make}"' in block
    assert [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("workbook")] == [
        "workbook lab", "workbook seed --if-needed"]
