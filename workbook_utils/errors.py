"""The one exception the workbook shows its users, and the first line of any other."""

from __future__ import annotations


class WorkbookError(Exception):
    """A problem the user can fix, shown as one short message instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback (see IPython's InteractiveShell).
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its class name when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
