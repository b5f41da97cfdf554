"""Settings read from the environment: DATABASE_URL, scale, where the workbook keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WorkbookError

SCALES = ("tiny", "small", "large")
DEFAULT_SCALE = "small"


def project_root() -> Path:
    """The workbook checkout (WORKBOOK_HOME overrides it)."""
    if home := os.environ.get("WORKBOOK_HOME"):
        return Path(home).resolve()
    return Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Git-ignored folder holding the embedded server's data directory, socket and log."""
    return project_root() / ".workbook"


def scale() -> str:
    """The dataset scale for this run, from WORKBOOK_SCALE (default: small)."""
    value = os.environ.get("WORKBOOK_SCALE", DEFAULT_SCALE).strip().lower() or DEFAULT_SCALE
    if value not in SCALES:
        raise WorkbookError(f"WORKBOOK_SCALE={value!r} is not a scale; use one of {', '.join(SCALES)}.")
    return value


def external_url() -> str | None:
    """DATABASE_URL when the user points the workbook at their own server, else None."""
    return os.environ.get("DATABASE_URL") or None
