"""The `workbook` command: plain URLs for psql, doctor lines, short errors with non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys

from workbook_utils import lab, server


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
