"""The `workbook` command: plain URLs for psql, doctor lines, short errors with non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys

from workbook_utils import db, lab, server


def workbook(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbook_utils.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_db_url_is_accepted_by_psql():
    url = workbook("db", "url").stdout.strip()
    out = subprocess.run([str(server.bin_path("psql")), url, "-Atc", "SELECT count(*) FROM users"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "100"


def test_db_psql_passes_arguments_on_and_other_commands_refuse_extras():
    result = workbook("db", "psql", "-Atc", "SELECT count(*) FROM posts")
    assert result.returncode == 0 and result.stdout.strip() == "1000"
    result = workbook("db", "url", "--bogus")
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr


def test_db_status_reports_running():
    result = workbook("db", "status")
    assert result.returncode == 0 and "running on 127.0.0.1:" in result.stdout


def test_doctor_passes_on_the_embedded_server():
    result = workbook("doctor")
    assert result.returncode == 0, result.stdout
    assert "PROBLEM" not in result.stdout and "dataset seeded at scale tiny" in result.stdout


def test_doctor_on_an_unreachable_database_url_is_short_and_fails():
    result = workbook("doctor", DATABASE_URL="postgresql://app:secret@127.0.0.1:9/app")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    problem = [line for line in result.stdout.splitlines() if "PROBLEM" in line]
    assert len(problem) == 1 and "127.0.0.1:9" in problem[0] and "secret" not in result.stdout


def test_seed_against_a_foreign_database_is_refused(scratch_db):
    subprocess.run([str(server.bin_path("psql")), scratch_db, "-qc", "CREATE TABLE accounts (id int)"], check=True)
    result = workbook("seed", "--scale", "tiny", DATABASE_URL=scratch_db)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("workbook: Refusing") and "public.accounts" in result.stderr


def test_lab_settings_are_offline_and_root_safe(tmp_path):
    path = lab.install_overrides(tmp_path)
    assert '"checkForUpdates": false' in path.read_text()
    cmd = lab.lab_command()
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert "--KernelManager.transport=ipc" in cmd  # kernels over unix sockets: no TCP warning in the terminal


def test_doctor_names_only_notebooks_that_exist_and_use_the_library():
    from workbook_utils.doctor import _needed_by, notebooks_using
    from workbook_utils.notebook_files import notebook_paths

    assert "01" in notebooks_using("create_engine") and "00" not in notebooks_using("selectinload")
    assert set(notebooks_using("pg_stat_statements")) <= {p.name[:2] for p in notebook_paths()}
    assert _needed_by(["no_such_library"]) == ""
    both = sorted(set(notebooks_using("create_engine")) | set(notebooks_using("selectinload")))
    assert both[:2] == ["01", "02"]
    assert _needed_by(["create_engine", "selectinload"]) == "; used by notebooks " + ", ".join(both)  # each once, in order


def test_db_status_exits_3_when_stopped(tmp_path):
    result = workbook("db", "status", WORKBOOK_HOME=str(tmp_path))  # a home whose server never started
    assert result.returncode == 3 and result.stdout.strip() == "not running"


def test_db_start_and_stop_leave_the_embedded_server_alone_under_database_url(seeded):
    pid = server.status().pid
    for action in ("start", "stop"):
        result = workbook("db", action, DATABASE_URL=seeded)
        assert result.returncode == 0 and "leaves the embedded server alone" in result.stdout
    assert server.status().pid == pid


def test_reset_restores_the_dataset(seeded):
    with db.connect(seeded) as conn:
        conn.execute("DELETE FROM comments")
    result = workbook("reset", "--scale", "tiny")
    assert result.returncode == 0 and result.stdout.startswith("Dataset restored in ")
    with db.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM comments").fetchone()[0] == 2500


def test_run_reports_a_failing_notebook_and_exits_1(tmp_path, seeded):
    import nbformat

    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('fine')"),
                                         nbformat.v4.new_code_cell("1 / 0")])
    nbformat.write(nb, tmp_path / "notebooks" / "98_fails.ipynb")
    result = workbook("run", WORKBOOK_HOME=str(tmp_path), DATABASE_URL=seeded)  # seeded already: nothing to do
    assert result.returncode == 1, result.stderr
    assert "[1/1] 98_fails.ipynb: FAILED" in result.stdout and "ZeroDivisionError" in result.stdout
    assert "Kernel is running over TCP" not in result.stdout + result.stderr


def test_run_reads_6_as_06_and_refuses_a_notebook_that_does_not_exist():
    from workbook_utils.cli import notebook_numbers
    from workbook_utils.notebook_files import notebook_paths

    assert notebook_numbers(["6", "00"]) == ["06", "00"]
    result = workbook("run", "6", "42", "x")  # refused before anything runs
    existing = " ".join(p.name[:2] for p in notebook_paths())
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"workbook: no notebook 42, x: the notebooks are {existing}."
