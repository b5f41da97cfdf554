"""`ast.parse` that survives another thread parsing at the same time (CPython 3.11).

CPython 3.11 counts the depth of the AST objects it builds in one counter per interpreter, shared by every
thread (gh-106905, fixed in 3.12/3.13's own ways): when a second thread builds AST objects meanwhile (a traceback
formatted in a migration's background thread: 3.11's traceback module calls `ast.parse` for its `^^^` markers),
the first one may end with `SystemError: AST constructor recursion depth mismatch` although its source is fine.
The checkers parse on the calling thread, one at a time (a lock), and parse again if another thread interfered.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()
ATTEMPTS = 5


def parse(source: str) -> ast.Module:
    """`ast.parse(source)`, serialised with the checkers' other parses and retried on 3.11's spurious SystemError."""
    for attempt in range(ATTEMPTS):
        try:
            with _LOCK:
                return ast.parse(source)
        except SystemError as error:  # only the spurious one: any other SystemError is a real bug, raised as it is
            if "recursion depth mismatch" not in str(error) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
