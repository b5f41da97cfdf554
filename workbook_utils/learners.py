"""A workshop room on one shared server (issue 17): `workbook provision` makes a role and a database per learner.

Each learner gets a login role (SCRAM verifier computed here, so the password never reaches the server), a
database cloned from the seeded template in which they own every object, and CONNECT revoked from PUBLIC.
Roles carry a comment of their own and databases the workbook's marker, so `--drop` removes exactly those.
"""

from __future__ import annotations

import csv
import html
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from . import config, db, marker, seed, server, urls
from .errors import WorkbookError
from .outcomes import CLAIMS_DDL, OUTCOMES_DDL

if TYPE_CHECKING:
    import psycopg

GROUP = "workbook_learners"  # every learner is a member: the embedded server's pg_hba asks its members for a password
MARK = "workbook learner"  # COMMENT ON ROLE of every role provision made (and of GROUP)
PEAK = 19  # most sessions one notebook opens in its database at once (benchmarks/room.py peak: 08; 01, 04: 17)
CONNECTION_LIMIT = PEAK + 8  # headroom: a second kernel, %sql, psql in a terminal, a burst the 10 ms sampling missed
FACILITATOR = 10  # connections kept free for the facilitator (`workbook room` reads 8 databases at once)
PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


@dataclass
class Learner:
    """One learner: their role and database (same name) and the DATABASE_URL handed to them."""

    name: str
    url: str


def names(prefix: str, count: int) -> list[str]:
    """learner01, learner02, … (database and role share the name)."""
    if not PREFIX.match(prefix):
        raise WorkbookError(f"--prefix {prefix!r}: use lower-case letters, digits and _, starting with a letter.")
    return [f"{prefix}{i:02d}" for i in range(1, count + 1)]


def learner_url(admin_url: str, name: str, password: str) -> str:
    """The admin URL's host, port and options, with the learner's role, password and database."""
    parts = urlsplit(admin_url)
    hosts = parts.netloc.rpartition("@")[2]  # as written: an IPv6 address keeps its brackets, several hosts stay
    return parts._replace(netloc=f"{quote(name)}:{quote(password, safe='')}@{hosts}", path=f"/{name}").geturl()


def room_problems(conn: psycopg.Connection, learners: int) -> tuple[list[str], list[str]]:
    """(what stops this server holding the room, what only some lessons miss), each with what to change."""
    db.check_version(conn)
    settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('max_connections', "
                                 "'superuser_reserved_connections', 'reserved_connections')").fetchall())
    reserved = int(settings["superuser_reserved_connections"]) + int(settings.get("reserved_connections", 0))
    needed = learners * CONNECTION_LIMIT + reserved + FACILITATOR
    blocking, missing = [], []
    if int(settings["max_connections"]) < needed:
        blocking.append(f"max_connections is {settings['max_connections']}; {learners} learners × {CONNECTION_LIMIT} "
                        f"+ {reserved} reserved + {FACILITATOR} for you need {needed}: set max_connections = {needed} "
                        "(a restart; see the README on sizing a room)")
    preloaded = conn.execute("SELECT current_setting('pg_stat_statements.max', true) IS NOT NULL, "
                             "current_setting('auto_explain.log_min_duration', true) IS NOT NULL").fetchone()
    for lib, loaded in zip(("pg_stat_statements", "auto_explain"), preloaded, strict=True):
        if not loaded:
            missing.append(f"{lib} is not in shared_preload_libraries: add it (a restart) or its lessons skip")
    if conn.info.server_version < 160000:
        missing.append("PostgreSQL before 16: learners get no CREATEROLE, so notebook 01's limited-role demo skips")
    return blocking, missing


def _is_superuser(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]


def marked_roles(conn: psycopg.Connection, prefix: str) -> list[str]:
    """Roles provision made with this prefix (by their comment), in name order."""
    return [r[0] for r in conn.execute(
        "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) "
        "AND shobj_description(oid, 'pg_authid') = %s ORDER BY 1", [prefix, MARK]).fetchall()]


def _role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None


# The learner owns their database: they may `ALTER DATABASE … SET search_path` to shadow pg_catalog's functions, turn
# the workbook's tables into views over their own functions, or force row policies on them; the admin reading there
# would run that code with its own rights. The client's settings override the database's; views are refused.
GUARDED = "-c search_path=pg_catalog,pg_temp -c row_security=off"
PLANTED = """SELECT string_agg(c.oid::regclass::text, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace
             WHERE nspname = '_workbook' AND relkind NOT IN ('r', 'i', 'S')"""


def enter(admin_url: str, name: str, application_name: str = "workbook-provision") -> psycopg.Connection:
    """The admin inside a learner's database, deaf to what its owner may have planted there (see GUARDED)."""
    import psycopg

    conn = db.connect(urls.with_database(admin_url, name), application_name=application_name, options=GUARDED)
    try:
        if conn.execute("SELECT current_setting('restrict_nonsystem_relation_kind', true)").fetchone()[0] is not None:
            conn.execute("SET restrict_nonsystem_relation_kind = 'view, foreign-table'")  # 17, 16.4, 15.8, 14.13 on
        if planted := conn.execute(PLANTED).fetchone()[0]:  # older minor releases: at least the workbook's schema
            raise WorkbookError(f"{planted} in {name} should be a table: not read (its owner replaced it?)")
    except (psycopg.Error, WorkbookError):
        conn.close()
        raise
    return conn


def _database_owner(admin_url: str, name: str) -> str | None:
    """The learner a database was provisioned for ('' when it is the workbook's but unfinished), None if not ours."""
    import psycopg

    try:
        with enter(admin_url, name) as conn:
            meta = marker.marker(conn)
    except (WorkbookError, psycopg.Error):  # not allowed in, or tampered with: not one we can vouch for
        return None
    return None if meta is None else meta.get("learner", "")


def _ensure_group(conn: psycopg.Connection) -> None:
    if not _role_exists(conn, GROUP):
        conn.execute(f"CREATE ROLE {GROUP} NOLOGIN")
        conn.execute(f"COMMENT ON ROLE {GROUP} IS '{MARK}'")


def _create_role(conn: psycopg.Connection, name: str, password: str, grouped: bool) -> None:
    """A login role whose password arrives as a SCRAM verifier, limited to CONNECTION_LIMIT sessions."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
    createrole = sql.SQL("CREATEROLE" if conn.info.server_version >= 160000 else "")  # PG16+: only its own roles
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {} CONNECTION LIMIT {}").format(
        sql.Identifier(name), createrole, sql.Literal(verifier), sql.Literal(CONNECTION_LIMIT)))
    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(MARK)))
    if grouped:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(GROUP), sql.Identifier(name)))


def _take_membership(conn: psycopg.Connection, name: str) -> None:
    """PostgreSQL 16+: a provisioner that is not a superuser must be a member of the role to give it a database."""
    from psycopg import sql

    if conn.info.server_version >= 160000 and not _is_superuser(conn):  # also for a role an interrupted run made
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER WITH SET TRUE, INHERIT TRUE").format(sql.Identifier(name)))


def _set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(verifier)))


# Everything in the clone not owned by the learner: schemas, tables, views, free-standing sequences, routines, types
# (identity sequences follow their table; extension members stay the extension's).
NOT_THEIRS = """
SELECT kind, name FROM (
    SELECT 'SCHEMA' AS kind, quote_ident(nspname) AS name, nspowner AS owner, oid, 'pg_namespace'::regclass AS cat
    FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
  UNION ALL
    SELECT CASE relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass::text, relowner, c.oid,
           'pg_class'::regclass
    FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace
    WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND nspname !~ '^pg_' AND nspname <> 'information_schema'
      AND NOT (relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                         AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
  UNION ALL
    SELECT CASE prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
           p.oid::regprocedure::text, proowner, p.oid, 'pg_proc'::regclass
    FROM pg_proc p JOIN pg_namespace n ON n.oid = pronamespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
  UNION ALL
    SELECT CASE typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, typowner, t.oid, 'pg_type'::regclass
    FROM pg_type t JOIN pg_namespace n ON n.oid = typnamespace
    WHERE typtype IN ('e', 'd', 'r', 'm') AND nspname !~ '^pg_' AND nspname <> 'information_schema'
) o
WHERE owner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = o.cat AND d.objid = o.oid AND d.deptype = 'e')
"""


def _hand_over(admin_url: str, name: str) -> None:
    """Inside the new database: mark it as this learner's, add the outcomes tables, give the learner every object."""
    from psycopg import sql

    with enter(admin_url, name) as conn, conn.transaction():
        conn.execute("INSERT INTO _workbook.meta VALUES ('learner', %s) ON CONFLICT (key) DO NOTHING", [name])
        conn.execute(OUTCOMES_DDL)
        conn.execute(CLAIMS_DDL)
        rows = conn.execute(NOT_THEIRS, [name]).fetchall()
        for kind, obj in rows:
            conn.execute(sql.SQL(f"ALTER {kind} {obj} OWNER TO {{}}").format(sql.Identifier(name)))


def _create_database(conn: psycopg.Connection, name: str, template: str) -> None:
    from psycopg import sql

    ident = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
        ident, sql.Identifier(template), ident))
    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(ident, ident))


def _template(scale: str, say: Callable[[str], None]) -> str:
    """Seed the workbook database at `scale` on this server if needed (creating it); the name of its template copy."""
    from psycopg import sql

    dbname = urlsplit(urls.libpq_url(scale)).path.lstrip("/")
    if config.external_url():  # the embedded server's seed creates its own
        with db.connect(urls.admin_url()) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    seed.seed_if_needed(scale, progress=say)
    with db.connect(urls.admin_url()) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [seed.template_name(dbname)]).fetchone() is None:
            raise WorkbookError(f"The template copy {seed.template_name(dbname)} is missing (this role may not create "
                                "databases?): provision needs a role with CREATEDB and CREATEROLE.")
    return seed.template_name(dbname)


def _known_passwords(out: Path, prefix: str) -> dict[str, str]:
    """learner → URL from an earlier run's CSV, so re-running keeps the URLs already handed out."""
    if not out.exists():
        return {}
    with out.open(newline="") as f:
        known = {row["learner"]: row["DATABASE_URL"] for row in csv.DictReader(f)}
    if others := [n for n in known if not re.fullmatch(rf"{prefix}\d{{2,}}", n)]:  # overwriting would lose their URLs
        shown = ", ".join(others[:3]) + (" …" if len(others) > 3 else "")
        raise WorkbookError(f"{out} holds another room's learners ({shown}): nothing was created. "
                            f"Pass --out {prefix}-learners.csv (or move that file).")
    return known


def _check_fit(conn: psycopg.Connection, count: int, force: bool, say: Callable[[str], None]) -> None:
    """Refuse a room this server cannot hold (unless forced); say what only some lessons miss."""
    blocking, missing = room_problems(conn, count)
    for line in missing:
        say(f"  note: {line}")
    if blocking and not force:
        raise WorkbookError("This server cannot hold the room: " + "; ".join(blocking) +
                            ". Nothing was created (--force provisions anyway).")
    for line in blocking:
        say(f"  warning (--force): {line}")


def _check_names(conn: psycopg.Connection, admin_url: str, prefix: str,
                 wanted: list[str]) -> tuple[set[str], dict[str, str]]:
    """(roles provision made, database → its learner or '') for the wanted names; refuses names someone else took."""
    ours = set(marked_roles(conn, prefix))
    foreign = [n for n in wanted if n not in ours and _role_exists(conn, n)]
    if foreign:
        raise WorkbookError(f"Roles {', '.join(foreign)} exist but provision did not make them: nothing was "
                            "created. Choose another --prefix.")
    present = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [wanted])]
    owners = {n: _database_owner(admin_url, n) for n in present}
    refused = [n for n, owner in owners.items() if owner not in ("", n)]
    if refused:
        raise WorkbookError(f"Databases {', '.join(refused)} exist but the workbook did not provision them: "
                            "nothing was created, nothing touched. Choose another --prefix.")
    return ours, owners


def provision(count: int, prefix: str = "learner", out: Path | None = None, scale: str | None = None,
              force: bool = False, say: Callable[[str], None] = print) -> list[Learner]:
    """Create the missing learners (existing ones keep their data); write the CSV and the printable page."""
    scale = scale or config.scale()
    wanted = names(prefix, count)
    out = out or config.project_root() / "learners.csv"
    admin_url = urls.admin_url()
    with db.connect(admin_url, application_name="workbook-provision") as conn:
        _check_fit(conn, count, force, say)
        ours, owners = _check_names(conn, admin_url, prefix, wanted)
    known = _known_passwords(out, prefix)
    template = _template(scale, say)
    grouped = not config.external_url()  # a shared server's pg_hba.conf is its DBA's, and GROUP maybe another admin's
    if grouped:
        server.require_passwords(GROUP)  # the embedded server trusts everyone else on 127.0.0.1
    made = []
    with db.connect(admin_url, application_name="workbook-provision") as conn:
        if grouped:
            _ensure_group(conn)
        for name in wanted:
            start = time.perf_counter()
            url = known.get(name)
            if name not in ours or url is None:
                password = secrets.token_urlsafe(18)  # letters, digits, - and _: nothing to quote in a URL
                url = learner_url(admin_url, name, password)
                if name not in ours:
                    _create_role(conn, name, password, grouped)
                else:  # an earlier run's learner whose URL is not in this CSV
                    _set_password(conn, name, password)
                    say(f"  {name}: not in {out.name}, so it gets a new password (its data stays)")
            _take_membership(conn, name)
            owner = owners.get(name, "")
            if name not in owners:
                _create_database(conn, name, template)
            if not owner:
                _hand_over(admin_url, name)
                say(f"  {name}: ready in {time.perf_counter() - start:.1f} s")
            else:
                say(f"  {name}: already there, left as it is")
            made.append(Learner(name, url))
    write_handouts(made, out, scale)
    say(f"{len(made)} learners; their URLs and passwords are in {out} and {out.with_suffix('.html')} "
        "(hand them out; never commit them).")
    return made


def write_handouts(learners: list[Learner], out: Path, scale: str) -> None:
    """learners.csv (learner, DATABASE_URL) and a printable page with one card per learner, readable by you only."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.chmod(0o600)  # also when an earlier file was readable by others
    with out.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # `cut -d, -f2` in a shell gives a URL without a stray \r
        writer.writerow(["learner", "DATABASE_URL"])
        writer.writerows([(lr.name, lr.url) for lr in learners])
    cards = "\n".join(
        f"<section><h2>{html.escape(lr.name)}</h2><p>Your database:</p><pre>{html.escape(lr.url)}</pre>"
        f"<p>In the workbook folder, run:</p><pre>DATABASE_URL='{html.escape(lr.url)}' WORKBOOK_SCALE={scale} make lab</pre>"
        "<p>Check it with <code>workbook doctor</code> (same variables). Keep this card to yourself.</p></section>"
        for lr in learners)
    page = out.with_suffix(".html")
    page.touch(mode=0o600)
    page.chmod(0o600)
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>Workshop room</title><style>body{font-family:sans-serif}"
        "section{border:1px dashed #999;padding:0 1em;margin:1em 0;page-break-inside:avoid}"
        "pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.5em}</style>\n" + cards + "\n")


def _created_by(conn: psycopg.Connection, name: str) -> list[str]:
    """Roles this learner created (PostgreSQL 16+ gives a role's creator ADMIN OPTION on it), e.g. notebook 01's."""
    return [r[0] for r in conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s) AND m.admin_option ORDER BY 1",
        [name]).fetchall()]


def drop(prefix: str = "learner", say: Callable[[str], None] = print) -> list[str]:
    """Drop the learners provision made with this prefix (roles they created first); what was dropped."""
    from psycopg import sql

    names(prefix, 0)  # validates the prefix
    admin_url = urls.admin_url()
    dropped, kept = [], set()
    with db.connect(admin_url, application_name="workbook-provision") as conn:
        learners = marked_roles(conn, prefix)
        theirs = {n: _created_by(conn, n) for n in learners}
        for name in learners:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
            if exists and _database_owner(admin_url, name) == name:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
                dropped.append(f"database {name}")
            elif exists:  # and its owner with it: a role cannot be dropped while it owns a database
                say(f"  left alone: database {name} and role {name} (no readable marker of the workbook's for {name})")
                kept |= {f"database {name}", f"role {name}", *(f"role {r}" for r in theirs[name])}
                continue
            for role in [*theirs[name], name]:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                dropped.append(f"role {role}")
        others = conn.execute(
            "SELECT 'role ' || rolname FROM pg_roles WHERE starts_with(rolname, %s) UNION ALL "
            "SELECT 'database ' || datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
            [prefix, prefix]).fetchall()
        for (other,) in others:
            if other not in kept:  # already named, with the reason
                say(f"  left alone: {other} (not made by workbook provision)")
        members = conn.execute("SELECT count(*) FROM pg_auth_members WHERE roleid = "
                               "(SELECT oid FROM pg_roles WHERE rolname = %s)", [GROUP]).fetchone()[0]
        if members == 0 and not config.external_url() and marked_roles(conn, GROUP):  # the last room here is gone
            conn.execute(f"DROP ROLE {GROUP}")
    say(f"dropped {len([d for d in dropped if d.startswith('database')])} databases and "
        f"{len([d for d in dropped if d.startswith('role')])} roles")
    return dropped
