"""Laptops without make (issue 18 §4): POSIX-only calls in workbook_utils stay where they are guarded, and each
guard does what it says. These run on Linux; they keep the Windows and macOS paths from regressing unseen."""

from __future__ import annotations

import ast
import re
import signal

import pytest

from workbook_utils import server
from workbook_utils.config import project_root
from workbook_utils.errors import WorkbookError

POSIX_ONLY = re.compile(r"\bimport (fcntl|pwd|grp|termios|resource)\b|\bos\.(geteuid|getuid|killpg|setsid|fork|"
                        r"getpgid|setpgrp|sysconf)\b|\bsignal\.SIG(QUIT|KILL|HUP|USR1|USR2|CHLD)\b|/proc|useradd|"
                        r"\bos\.kill\(|transport = \"ipc\"|transport=ipc")
# Every function that makes a POSIX-only call, and the guard in its body that keeps other systems away from it.
GUARDED = {
    ("state_lock", "_try_lock"): 'os.name == "nt"',
    ("server", "_as_root"): 'hasattr(os, "geteuid")',
    ("server", "_give_to_os_user"): 'sys.platform.startswith("linux")',
    ("server", "stop"): 'getattr(signal, "SIGQUIT", signal.SIGTERM)',
    ("lab", "lab_command"): 'os.name == "posix"',
    ("notebook_files", "_client"): 'os.name == "posix"',
    ("workload", "_cpu_ticks"): "",  # called only by cpu_of_others, below, inside its guard
    ("workload", "_server_ticks"): "",
    ("workload", "cpu_of_others"): "except (OSError, ValueError)",
    ("workload", "postmaster_pid"): "except (OSError, ValueError)",
}


def _posix_only_functions() -> dict[tuple[str, str], str]:
    """(module, function) → source, for every top-level function or method of workbook_utils that makes a
    POSIX-only call (comments aside)."""
    found = {}
    for path in sorted((project_root() / "workbook_utils").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        for node in [*tree.body, *(n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body)]:
            if isinstance(node, ast.FunctionDef):  # module functions and methods, nested functions included
                body = ast.get_source_segment(source, node) or ""
                if POSIX_ONLY.search("\n".join(ln for ln in body.splitlines() if not ln.strip().startswith("#"))):
                    found[(path.stem, node.name)] = body
    return found


def test_posix_only_calls_are_only_where_they_are_guarded():
    found = _posix_only_functions()
    assert set(found) == set(GUARDED), "a new POSIX-only call: guard it (os.name, sys.platform) and list it here"
    for where, guard in GUARDED.items():
        assert guard in found[where], f"{where}: the guard {guard!r} is gone"


def test_the_stop_of_last_resort_works_where_there_is_no_sigquit(monkeypatch, tmp_path):
    """pg_ctl stop failed: server.stop() signals the postmaster itself, with SIGTERM where SIGQUIT is missing."""
    sent = []
    monkeypatch.delattr(signal, "SIGQUIT")  # as on Windows
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path))  # the state lock of a folder of the test's own
    monkeypatch.setattr(server, "status", lambda: server.Status(True, 1, 99999, tmp_path))
    monkeypatch.setattr(server, "_call_pg_ctl", lambda *args: 1)
    monkeypatch.setattr(server, "_pid", lambda: 99999)
    monkeypatch.setattr(server.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(server.time, "sleep", lambda seconds: None)
    server.stop()
    assert sent == [(99999, signal.SIGTERM)]


def test_root_outside_linux_is_told_to_run_as_an_ordinary_user(monkeypatch, tmp_path):
    monkeypatch.setattr(server, "_as_root", lambda: True)
    monkeypatch.setattr(server.sys, "platform", "darwin")
    with pytest.raises(WorkbookError, match="run the workbook as an ordinary user"):
        server._give_to_os_user(tmp_path)



def test_the_readme_says_what_windows_lacks_for_notebook_09():
    """Notebook 09 skips its fork demo without a POSIX system and its PgBouncer sections without a pgbouncer program."""
    windows = (project_root() / "README.md").read_text().split("## Without make")[1].split("\n## ")[0]
    assert "fork" in windows and "`pgbouncer` program" in windows and "WORKBOOK_PGBOUNCER_URL" in windows
