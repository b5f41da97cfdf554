"""`workbook provision`: three learners provisioned once prove what the issue promises.

They are made on the second server (the distribution's PostgreSQL, tests/second_server.py) where it is installed,
as a facilitator does on a shared server: DATABASE_URL names its admin; without it, on the embedded server. What
only the embedded server does (its pg_hba asks the learners' group for a password; a CREATEROLE admin that is no
superuser on PostgreSQL 16+) is proved there.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from workbook_utils import db, learners, pooling, server, urls
from workbook_utils.errors import WorkbookError

PREFIX = "roomtest"


def workbook(room_server, *args: str) -> subprocess.CompletedProcess:
    """The `workbook` command as the facilitator runs it (their DATABASE_URL on a shared server)."""
    return subprocess.run([sys.executable, "-m", "workbook_utils.cli", *args], capture_output=True, text=True,
                          timeout=120, env=room_server.admin_env())


def everything(admin_url: str, prefix: str = PREFIX) -> set[str]:
    """Roles and databases on the server whose name starts with the prefix (and the learners' group)."""
    with db.connect(admin_url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT 'role ' || rolname FROM pg_roles WHERE starts_with(rolname, %s) OR rolname = %s UNION ALL "
            "SELECT 'database ' || datname FROM pg_database WHERE starts_with(datname, %s)",
            [prefix, learners.GROUP, prefix]).fetchall()}


@pytest.fixture(scope="module")
def room(room_server, tmp_path_factory) -> dict:
    """Three learners (the embedded server cannot hold a room at their limit: --force), and what was there before."""
    admin_url = room_server.admin_url()
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
    before = everything(admin_url)
    out = tmp_path_factory.mktemp("room") / "learners.csv"
    said: list[str] = []
    with room_server.as_admin():
        made = learners.provision(3, prefix=PREFIX, out=out, scale="tiny", force=room_server.cluster is None,
                                  say=said.append)
    yield {"before": before, "out": out, "said": said, "urls": {lr.name: lr.url for lr in made}, "admin": admin_url,
           "server": room_server}
    with room_server.as_admin():
        learners.drop(PREFIX, say=lambda _: None)
    with db.connect(admin_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PREFIX}05")
        admin.execute(f"DROP ROLE IF EXISTS {PREFIX}_decoy")


def test_a_learners_url_keeps_the_admin_urls_hosts_and_options():
    url = learners.learner_url("postgresql://admin:pw@[::1]:6543,db2.example/workbook?sslmode=require", "l01", "s3")
    assert url == "postgresql://l01:s3@[::1]:6543,db2.example/l01?sslmode=require"  # IPv6 lost its brackets before


def test_a_room_the_server_cannot_hold_is_refused_before_anything_is_created(room):
    with room["server"].as_admin(), pytest.raises(WorkbookError, match=r"cannot hold the room: max_connections is "
                                                                        r"\d+; 30 learners"):
        learners.provision(30, prefix="roomfit", scale="tiny", say=lambda _: None)
    assert everything(room["admin"], "roomfit") <= {f"role {learners.GROUP}"}


def test_each_learner_owns_every_object_in_their_database(room):
    for name, url in room["urls"].items():
        with psycopg.connect(url) as conn:
            assert (conn.info.user, conn.info.dbname) == (name, name)
            others = conn.execute(learners.NOT_THEIRS, [name]).fetchall()
            assert others == [], others
            counts = conn.execute("""
                SELECT count(*) FILTER (WHERE relkind = 'r'), count(*) FILTER (WHERE relkind = 'S'),
                       count(*) FILTER (WHERE pg_get_userbyid(relowner) <> current_user)
                FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace
                WHERE nspname IN ('public', '_workbook') AND relkind IN ('r', 'S', 'i', 'v')
                  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')""").fetchone()
            assert counts[0] >= 8 and counts[1] >= 5 and counts[2] == 0, counts  # dataset, marker, outcomes
            schemas = conn.execute("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
                                   "WHERE nspname IN ('public', '_workbook')").fetchall()
            assert sorted(schemas) == [("_workbook", name), ("public", name)]
            role = conn.execute("SELECT rolconnlimit, rolcreaterole, rolsuper, rolcreatedb, "
                                "shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = current_user").fetchone()
            createrole = conn.info.server_version >= 160000  # only there does CREATEROLE manage just its own roles
            assert role == (learners.CONNECTION_LIMIT, createrole, False, False, learners.MARK)
            assert conn.execute("SELECT value FROM _workbook.meta WHERE key = 'learner'").fetchone()[0] == name


def test_the_password_reaches_the_server_only_as_a_scram_verifier(room):
    url = room["urls"][f"{PREFIX}01"]
    password = psycopg.conninfo.conninfo_to_dict(url)["password"]
    with db.connect(urls.with_database(room["admin"], f"{PREFIX}01")) as admin:  # its pg_stat_statements view
        stored = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [f"{PREFIX}01"]).fetchone()[0]
        statements = admin.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s",
                                   [f"%{password}%"]).fetchone()[0]
        logged = admin.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s",
                               [f"%{stored[:30]}%"]).fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$4096:") and password not in stored
    assert statements == 0 and logged >= 1  # pg_stat_statements saw the CREATE ROLE, with the verifier only
    assert password not in room["server"].log.read_text(errors="replace")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(password, "not-the-password"), connect_timeout=5)


def test_a_learner_cannot_enter_another_learners_database(room):
    url = room["urls"][f"{PREFIX}01"]
    with pytest.raises(psycopg.OperationalError, match="does not have CONNECT privilege"):
        psycopg.connect(urls.with_database(url, f"{PREFIX}02"), connect_timeout=5)


def test_handouts_carry_the_urls_and_the_terminal_no_password(room):
    rows = list(csv.DictReader(room["out"].open()))
    assert [r["learner"] for r in rows] == sorted(room["urls"]) and all(r["DATABASE_URL"] == room["urls"][r["learner"]]
                                                                        for r in rows)
    page = room["out"].with_suffix(".html").read_text()
    assert page.count("<section>") == 3 and f"DATABASE_URL='{room['urls'][f'{PREFIX}02']}' WORKBOOK_SCALE=tiny make lab" in page
    assert oct(room["out"].stat().st_mode & 0o777) == "0o600"
    passwords = [psycopg.conninfo.conninfo_to_dict(u)["password"] for u in room["urls"].values()]
    assert not any(p in line for p in passwords for line in room["said"])
    names = ["learners.csv", "learners.html", "teamb-learners.csv", "teamb-learners.html"]
    ignored = subprocess.run(["git", "check-ignore", *names], capture_output=True, text=True,
                             cwd=Path(__file__).parents[1])
    assert ignored.stdout.split() == names  # the default --out, and the one a second room is told to use


def test_rerun_adds_missing_learners_refuses_foreign_databases_and_keeps_data(room):
    first = room["urls"][f"{PREFIX}01"]
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS my_notes; CREATE TABLE my_notes AS SELECT 'mine' AS note")
    with db.connect(room["admin"]) as admin:
        admin.execute(f"CREATE DATABASE {PREFIX}05")  # somebody else's, with a name provision would pick
    refused = workbook(room["server"], "provision", "--learners", "5", "--prefix", PREFIX, "--out", str(room["out"]),
                       "--force")
    assert refused.returncode == 1 and f"Databases {PREFIX}05 exist but the workbook did not provision" in refused.stderr
    assert f"role {PREFIX}04" not in everything(room["admin"])  # refused before creating anything
    with room["server"].as_admin(), pytest.raises(WorkbookError, match=r"holds another room's learners "
                                                                        r"\(roomtest01, roomtest02, roomtest03\)"):
        learners.provision(1, prefix="roomother", out=room["out"], scale="tiny", force=True, say=lambda _: None)
    assert everything(room["admin"], "roomother") <= {f"role {learners.GROUP}"}  # the first room's URLs are kept
    room["out"].chmod(0o644)
    result = workbook(room["server"], "provision", "--learners", "4", "--prefix", PREFIX, "--out", str(room["out"]),
                      "--force")
    assert result.returncode == 0, result.stderr
    assert f"{PREFIX}01: already there" in result.stdout and f"{PREFIX}04: ready" in result.stdout
    rows = {r["learner"]: r["DATABASE_URL"] for r in csv.DictReader(room["out"].open())}
    assert rows[f"{PREFIX}01"] == first and len(rows) == 4
    assert oct(room["out"].stat().st_mode & 0o777) == "0o600"  # made private again
    assert not any(psycopg.conninfo.conninfo_to_dict(u)["password"] in result.stdout + result.stderr
                   for u in rows.values())
    with psycopg.connect(first) as conn:
        assert conn.execute("SELECT note FROM my_notes").fetchone() == ("mine",)
    with psycopg.connect(rows[f"{PREFIX}04"]) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 100


def test_drop_removes_exactly_what_provision_made(room):
    limited = pooling.create_limited_role(room["urls"][f"{PREFIX}01"], f"{PREFIX}01_nb01", 8)  # notebook 01's demo
    with db.connect(room["admin"]) as admin:
        creates_roles = admin.info.server_version >= 160000  # before 16, learners get no CREATEROLE
        admin.execute(f"DROP ROLE IF EXISTS {PREFIX}_decoy; CREATE ROLE {PREFIX}_decoy")
    assert (limited is not None) == creates_roles, "on 16+ a learner may create notebook 01's limited role and log in"
    result = workbook(room["server"], "provision", "--drop", "--prefix", PREFIX)
    assert result.returncode == 0, result.stderr
    assert f"left alone: database {PREFIX}05" in result.stdout and f"left alone: role {PREFIX}_decoy" in result.stdout
    assert f"dropped 4 databases and {4 + creates_roles} roles" in result.stdout  # and the role one of them created
    group = {f"role {learners.GROUP}"}
    assert everything(room["admin"]) - group == room["before"] - group | {f"database {PREFIX}05", f"role {PREFIX}_decoy"}


def test_on_the_embedded_server_the_learners_group_is_asked_for_a_password(tmp_path):
    """The embedded server trusts 127.0.0.1: provision puts learners in a group its pg_hba asks for their SCRAM
    password; --drop removes the group with its last member (and never while another room still uses it)."""
    admin = urls.admin_url()  # no DATABASE_URL: the embedded server's superuser
    learners.drop("roomhba", say=lambda _: None)
    try:
        url = learners.provision(1, prefix="roomhba", out=tmp_path / "l.csv", scale="tiny", force=True,
                                 say=lambda _: None)[0].url
        password = psycopg.conninfo.conninfo_to_dict(url)["password"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [learners.GROUP]).fetchone()[0]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url.replace(password, "not-the-password"), connect_timeout=5)
        assert password not in (server.pgdata() / "server.log").read_text(errors="replace")
    finally:
        learners.drop("roomhba", say=lambda _: None)
    assert everything(admin, "roomhba") <= {f"role {learners.GROUP}"}
    with db.connect(admin) as conn:
        group, members = conn.execute("SELECT count(*), count(m.member) FROM pg_roles r LEFT JOIN pg_auth_members m "
                                      "ON m.roleid = r.oid WHERE r.rolname = %s", [learners.GROUP]).fetchone()
    assert bool(group) == bool(members), "the group goes with its last member, and stays while a room uses it"


def test_an_admin_that_is_no_superuser_provisions_through_database_url(monkeypatch, tmp_path):
    """As on a managed server: DATABASE_URL names a CREATEROLE CREATEDB role (not a superuser) and a database for the
    template, not there yet; the learners' group exists already, made by another admin (the embedded superuser)."""
    admin = urls.admin_url()
    try:
        with db.connect(admin) as conn:
            conn.execute("CREATE ROLE roomadmin LOGIN CREATEROLE CREATEDB")
            learners._ensure_group(conn)  # as a room this superuser provisioned earlier left it
        monkeypatch.setenv("DATABASE_URL", urls.with_database(admin.replace("//postgres@", "//roomadmin@"), "roomtpl"))
        learners.provision(1, prefix="roomurl", out=tmp_path / "l.csv", scale="tiny", force=True, say=lambda _: None)
        with db.connect(urls.admin_url()) as conn:  # as a run interrupted after the role: no database, no SET yet
            conn.execute("DROP DATABASE roomurl01")
            conn.execute("REVOKE roomurl01 FROM roomadmin GRANTED BY roomadmin")  # CREATE ROLE's own grant stays
        made = learners.provision(2, prefix="roomurl", out=tmp_path / "l.csv", scale="tiny", force=True,
                                  say=lambda _: None)
        for learner in made:
            with psycopg.connect(learner.url) as conn:
                assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 100
                assert conn.execute(learners.NOT_THEIRS, [learner.name]).fetchall() == []
        assert learners.drop("roomurl", say=lambda _: None).count("role roomurl01") == 1
        assert everything(admin, "roomurl") - {f"role {learners.GROUP}"} == set()
    finally:
        learners.drop("roomurl", say=lambda _: None)
        with db.connect(admin) as conn:
            conn.execute("DROP DATABASE IF EXISTS roomtpl WITH (FORCE)")
            conn.execute("DROP DATABASE IF EXISTS roomtpl_template WITH (FORCE)")
            conn.execute("DROP ROLE IF EXISTS roomadmin")
