"""Helpers for the database-integration workbook. Import the module you need; nothing heavy loads here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .notebook import Workbook


def setup(number: str) -> Workbook:
    """The first code cell of every notebook (see workbook_utils.notebook.setup)."""
    from .notebook import setup as _setup

    return _setup(number)
