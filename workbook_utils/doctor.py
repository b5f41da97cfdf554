"""`workbook doctor`: one line per check, each saying ok or what is wrong and how to fix it."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from . import config, db, marker, server, urls
from .errors import WorkbookError

Check = tuple[bool, str]
# Each library defines these settings once it is loaded; reading them needs no superuser (SHOW shared_preload_libraries does).
PRELOADED = {"pg_stat_statements": "pg_stat_statements.max", "auto_explain": "auto_explain.log_min_duration"}


def checks() -> Iterator[Check]:
    """Run the checks in order; stop after the first one that makes the rest meaningless."""
    yield sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} (3.11 or newer needed)"
    try:
        scale = config.scale()
        url = urls.libpq_url(scale)
    except WorkbookError as exc:
        yield False, str(exc)
        return
    if config.external_url():
        yield True, f"target: DATABASE_URL → {urls.where(url)}"
    else:
        st = server.status()
        yield st.running, (f"embedded server running on 127.0.0.1:{st.port}" if st.running
                           else "embedded server is not running → `workbook db start` (or `make lab`)")
        if not st.running:
            return
    try:
        conn = db.connect(url)
    except WorkbookError as exc:
        yield False, str(exc)
        return
    with conn:
        yield from _server_checks(conn, scale)


def notebooks_using(word: str) -> list[str]:
    """Numbers of the notebooks whose code or text mentions `word` (so messages name only notebooks that exist)."""
    from .notebook_files import notebook_paths

    return [path.name[:2] for path in notebook_paths() if word in path.read_text(encoding="utf-8")]


def _needed_by(libraries: list[str]) -> str:
    """"; used by notebooks 03, 08" for these libraries, or nothing when no notebook uses them."""
    numbers = sorted({n for lib in libraries for n in notebooks_using(lib)})
    return f"; used by notebook{'s' * (len(numbers) > 1)} {', '.join(numbers)}" if numbers else ""


def version_line(version: str, num: int) -> str:
    """"PostgreSQL 15.18 (15 or newer needed); demos that need a newer one skip: …" (from workbook.NEWER)."""
    from .workbook import NEWER

    skipped = [f"{feature} ({major})" for feature, major in NEWER.items() if num < major * 10000]
    return (f"PostgreSQL {version} ({db.MIN_SERVER_VERSION // 10000} or newer needed)"
            + (f"; demos that need a newer one skip: {', '.join(skipped)}" if skipped else ""))


def _server_checks(conn, scale: str) -> Iterator[Check]:
    try:
        version = db.check_version(conn)
        yield True, version_line(version, conn.info.server_version)
    except WorkbookError as exc:  # too old: nothing else would help
        yield False, str(exc)
        return
    missing = [lib for lib, setting in PRELOADED.items()
               if conn.execute("SELECT current_setting(%s, true)", [setting]).fetchone()[0] is None]
    yield not missing, ("preloaded: " + ", ".join(PRELOADED) if not missing else
                        f"not preloaded: {', '.join(missing)} → add to shared_preload_libraries and restart the server "
                        f"(the embedded server and docker-compose.yml do this){_needed_by(missing)}")
    has_ext = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    yield bool(has_ext), ("extension pg_stat_statements installed" if has_ext else
                          "extension pg_stat_statements missing → as a superuser: CREATE EXTENSION pg_stat_statements")
    limit, reserved = (int(conn.execute(f"SHOW {name}").fetchone()[0])
                       for name in ("max_connections", "superuser_reserved_connections"))
    yield limit >= 20, f"max_connections = {limit} ({reserved} reserved for superusers)" + (
        "" if limit >= 20 else " → the pooling demos need at least 20")
    seeded = marker.seeded_scale(conn)
    yield seeded == scale, (f"dataset seeded at scale {scale}" if seeded == scale else
                            f"dataset not seeded at scale {scale} (found: {seeded or 'none'}) → `workbook seed --scale {scale}`")
