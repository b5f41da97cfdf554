"""Helpers for the database-integration workbook. Import the module you need; nothing heavy loads here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .workbook import Workbook


def setup(number: str) -> Workbook:
    """The first code cell of every notebook (see workbook_utils.workbook.setup)."""
    from .workbook import setup as _setup

    return _setup(number)
