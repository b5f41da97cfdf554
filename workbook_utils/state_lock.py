"""A file lock in .workbook/ that serializes starting the server and seeding across processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .config import state_dir
from .errors import WorkbookError

WAIT = 60.0  # seconds a second process waits for the first one to finish starting or seeding
_held: set[str] = set()  # locks this process holds: taking one again (seed → start) is a no-op


def _try_lock(f) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process holds it."""
    if os.name == "nt":
        import msvcrt

        f.seek(0)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def hold(name: str, doing: str, wait: float | None = None) -> Iterator[None]:
    """Hold .workbook/<name>.lock while `doing` (e.g. "starting the server"); the lock goes when the process does."""
    if name in _held:
        yield
        return
    path = state_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    wait = WAIT if wait is None else wait
    with open(path, "a+") as f:  # closing the file (or the process dying) releases the lock
        deadline = time.monotonic() + wait
        while not _try_lock(f):
            if time.monotonic() > deadline:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise WorkbookError(f"Waited {wait:.0f} s for {path}, held by {holder}. "
                                    "Let it finish, or end that process and try again.")
            time.sleep(0.1)
        f.seek(0)
        f.truncate()
        command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:80]
        f.write(f"process {os.getpid()} ({command}), {doing} since {time.strftime('%H:%M:%S')}")
        f.flush()
        _held.add(name)
        try:
            yield
        finally:
            _held.discard(name)
            f.truncate(0)
