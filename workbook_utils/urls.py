"""Where the workbook's databases are: libpq and SQLAlchemy URLs, for the embedded server or DATABASE_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from . import config, server
from .errors import WorkbookError

APP_ROLE = "workbook"  # the demos connect as this ordinary role, the way an application does


def database_name(scale: str) -> str:
    """Embedded database for a scale: `workbook` (small), `workbook_tiny`, `workbook_large`."""
    return "workbook" if scale == "small" else f"workbook_{scale}"


def plain(url: str) -> str:
    """A libpq URL: DATABASE_URL with any SQLAlchemy driver suffix removed."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+")[0]
    if not sep or base not in ("postgresql", "postgres"):
        raise WorkbookError(f"DATABASE_URL must be a PostgreSQL URL such as postgresql://user:password@host:5432/db "
                            f"(it starts with {scheme!r}).")
    return f"postgresql://{rest}"


def with_database(url: str, name: str) -> str:
    """The same server, role and options, another database."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def libpq_url(scale: str | None = None) -> str:
    """Plain URL of the workbook database (psql and pgbench accept it)."""
    if ext := config.external_url():
        return plain(ext)
    return f"postgresql://{APP_ROLE}@127.0.0.1:{server.port()}/{database_name(scale or config.scale())}"


def database_url(scale: str | None = None) -> str:
    """SQLAlchemy URL of the workbook database, naming the psycopg 3 driver explicitly."""
    return libpq_url(scale).replace("postgresql://", "postgresql+psycopg://", 1)


def admin_url() -> str:
    """Who creates databases: the embedded superuser, or DATABASE_URL's own role on its server."""
    if ext := config.external_url():
        return with_database(plain(ext), "postgres")
    return server.superuser_url()


def where(url: str) -> str:
    """host:port/dbname of a URL, for messages (never the password)."""
    p = urlsplit(url)
    return f"{p.hostname or 'localhost'}:{p.port or 5432}{p.path}"
