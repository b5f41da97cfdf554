"""`setup("NN")`: the first code cell of every notebook. Makes the notebook stand alone and says where it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import config, db, seed, urls

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine


# Demos of features newer than the oldest server the workbook runs on (PostgreSQL 15): the major version each needs.
# A notebook asks wb.needs(feature); `workbook doctor` names the ones a server will skip.
NEWER = {"last_idx_scan": 16, "EXPLAIN (GENERIC_PLAN)": 16, "transaction_timeout": 17, "NOT NULL … NOT VALID": 18,
         "RETURNING old": 18}

# This notebook's sessions, and only in this database and of this role: on a shared server other learners run the
# same notebook, under the same application_name, in their own databases.
CLOSE_SQL = """SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s
               AND datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"""


@dataclass
class Workbook:
    """What a notebook works with: its engine, URL, scale and a scratch schema of its own."""

    number: str
    scale: str
    url: str
    version: str  # e.g. "15.18"
    version_num: int = 0  # server_version_num, e.g. 150018
    engines: list[Engine] = field(default_factory=list, repr=False)

    @property
    def schema(self) -> str:
        """The notebook's scratch schema (recreated empty by setup) for anything it mutates."""
        return f"nb{self.number}"

    @property
    def app_name(self) -> str:
        """application_name of this notebook's sessions, as seen in pg_stat_activity."""
        return f"workbook-nb{self.number}"

    def needs(self, feature: str) -> bool:
        """True if this server has `feature` (one of NEWER); else prints the one line saying its demo is skipped."""
        major = NEWER[feature]
        if self.version_num >= major * 10000:
            return True
        print(f"Skipped: {feature} needs PostgreSQL {major} (this server is {self.version}).")
        return False

    @property
    def engine(self) -> Engine:
        """The notebook's default engine (created on first use)."""
        if not self.engines:
            self.make_engine()
        return self.engines[0]

    def make_engine(self, url: str | None = None, **kwargs: Any) -> Engine:
        """A new engine (on the workbook database unless `url` says otherwise), tagged with this notebook's name."""
        kwargs.setdefault("connect_args", {}).setdefault("application_name", self.app_name)
        engine = db.make_engine(url or self.url, **kwargs)
        self.engines.append(engine)
        return engine

    def scratch_copy(self, tables: list[str], indexes: list[str] = ()) -> Engine:
        """Copy dataset tables into the scratch schema (keys and indexes, but no foreign keys), plus `indexes`.

        Returns an engine on which the ORM models map to the copies, so a notebook may change them freely.
        """
        s = self.schema
        sql = [f"DROP TABLE IF EXISTS {s}.{t}; CREATE TABLE {s}.{t} (LIKE public.{t} INCLUDING ALL); "
               f"INSERT INTO {s}.{t} SELECT * FROM public.{t}" for t in tables]
        sql += [f"CREATE INDEX ON {s}.{index}" for index in indexes] + [f"ANALYZE {s}.{t}" for t in tables]
        with db.connect(self.url) as conn, conn.transaction():
            db.bounded(conn, "; ".join(sql), f"another session (an open kernel of notebook {self.number}?) uses "
                                             f"the tables in {s}: shut that kernel down, then run this cell again")
        return self.engine.execution_options(schema_translate_map={None: s})

    def query(self, sql: str, **params: Any) -> pd.DataFrame:
        """Run a SELECT and return a DataFrame."""
        import pandas as pd
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(text(sql), params).mappings().all())

    def close(self) -> None:
        """End every session of this notebook (engines and %sql); each reconnects on next use, so later cells still work."""
        for engine in self.engines:
            engine.dispose()  # closes the pooled connections; the engine itself stays usable
        with db.connect(self.url) as conn:  # connections still checked out (a Session never closed) end too
            conn.execute(CLOSE_SQL, [f"{self.app_name}%"])
        try:
            from sql.connection import Connection  # ipython-sql, when %sql was used
        except ImportError:
            return
        for conn in Connection.connections.values():
            if conn.internal_connection.in_transaction():
                conn.internal_connection.rollback()
            conn.internal_connection.invalidate()  # the server session ends; the next %sql opens a new one


def setup(number: str) -> Workbook:
    """Start/seed what is missing, recreate the scratch schema, print one line saying where we run."""
    scale = config.scale()
    seed.seed_if_needed(scale)
    url = urls.libpq_url(scale)
    with db.connect(url) as conn:
        version, version_num = db.check_version(conn), conn.info.server_version
        db.bounded(conn, f"DROP SCHEMA IF EXISTS nb{number} CASCADE; CREATE SCHEMA nb{number}",
                   f"another session (an open kernel of notebook {number}?) holds its scratch schema nb{number}: "
                   "shut that kernel down, then run this cell again")
    wb = Workbook(number=number, scale=scale, url=urls.database_url(scale), version=version,
                  version_num=version_num)
    source = "DATABASE_URL" if config.external_url() else "embedded server"
    print(f"Notebook {number} · PostgreSQL {version} ({source}, {urls.where(url)}) · scale {scale}")
    return wb
