"""The embedded server's application role and databases, made from data/admin/provision.sql (docker runs it too)."""

from __future__ import annotations

from pathlib import Path

from . import config, db, marker, server, urls

PROVISION_SQL = Path(__file__).resolve().parent.parent / "data" / "admin" / "provision.sql"


def ensure_database(scale: str) -> None:
    """Embedded server: start it, create the scale's database if missing, provision its role and extension, mark it.

    Provisioning runs every time (a few ms, every statement idempotent): a database half-made by an interrupted
    first run is completed, and a role made by an older release gets what this one grants.
    """
    if config.external_url():
        return
    server.start()
    name = urls.database_name(scale)
    with db.connect(urls.admin_url()) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')
    with db.connect(urls.with_database(urls.admin_url(), name)) as conn:
        conn.execute(PROVISION_SQL.read_text())
    with db.connect(urls.libpq_url(scale)) as conn:
        marker.mark(conn)
