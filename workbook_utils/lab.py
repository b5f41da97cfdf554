"""Start JupyterLab on notebooks/, offline-friendly: bound to 127.0.0.1, no news or update checks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import config

# JupyterLab settings installed into the environment: no pop-ups that reach for the network.
OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}


def install_overrides(prefix: Path = Path(sys.prefix)) -> Path:
    """Write JupyterLab's overrides.json into this environment (merging with any already there)."""
    path = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(OVERRIDES)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def lab_command() -> list[str]:
    """The jupyter lab command line for this environment (with --allow-root when run as root)."""
    args = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={config.project_root() / 'notebooks'}"]
    if os.name == "posix":
        args.append("--KernelManager.transport=ipc")  # unix sockets: no "Kernel is running over TCP" warning
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # JupyterLab refuses root otherwise (containers, CI)
    return args


def start_lab() -> int:
    """Replace this process with JupyterLab; it prints the URL with its token."""
    install_overrides()
    cmd = lab_command()
    os.execv(cmd[0], cmd)
    return 0  # not reached
