"""environment.yml, docker-compose.yml and the docker init script agree with what the workbook expects."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import tomllib
import uuid

import yaml

from workbook_utils import db, marker, server, urls
from workbook_utils.config import project_root

from .conftest import fingerprint

ROOT = project_root()


def test_environment_yml_installs_this_project_with_every_extra_make_uses():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    extras = set(re.fullmatch(r'-e "?\.\[([a-z,]+)\]"?', pip[0]).group(1).split(","))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    makefile = (ROOT / "Makefile").read_text()
    assert extras == set(project["optional-dependencies"]) == set(re.search(r"-e '\.\[([a-z,]+)\]'", makefile)
                                                                  .group(1).split(","))
    conda_names = {re.split(r"[<>=]", d)[0] for d in env["dependencies"] if isinstance(d, str)}
    assert conda_names == {"python", "pip"}, "dependencies belong in pyproject.toml, not twice"


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["postgres"]


def test_compose_uses_the_same_major_version_and_settings():
    svc = _compose()
    assert svc["image"] == f"postgres:{server.MAJOR}"
    settings = dict(arg.split("=", 1) for arg in svc["command"][1:] if arg != "-c")
    for name in ("max_connections", "shared_preload_libraries", "log_lock_waits", "deadlock_timeout",
                 "pg_stat_statements.max"):
        assert settings[name] == server.SETTINGS[name].strip("'"), name


def test_compose_binds_loopback_has_healthcheck_and_seeds_from_data():
    svc = _compose()
    assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
    assert "pg_isready" in " ".join(svc["healthcheck"]["test"])
    assert "./data:/docker-entrypoint-initdb.d:ro" in svc["volumes"]
    # The image runs top-level *.sh/*.sql of that folder: only initdb.sh, which runs data/sql/ itself.
    top_level = sorted(p.name for p in (ROOT / "data").iterdir() if p.suffix in (".sh", ".sql", ".gz"))
    assert top_level == ["initdb.sh"]


def test_docker_init_script_seeds_the_same_data_as_workbook_seed(seeded):
    """Run data/initdb.sh the way the postgres image would, against a fresh database on the embedded server."""
    name = f"docker_{uuid.uuid4().hex[:8]}"
    with db.connect(urls.admin_url()) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "PATH": f"{server.bin_path('psql').parent}:{os.environ['PATH']}",
               "PGHOST": "127.0.0.1", "PGPORT": str(server.status().port),
               "POSTGRES_USER": "postgres", "POSTGRES_DB": name, "WORKBOOK_SCALE": "tiny"}
        subprocess.run(["bash", str(ROOT / "data" / "initdb.sh")], env=env, check=True, capture_output=True,
                       timeout=120)
        url = urls.with_database(seeded, name)
        assert fingerprint(url) == fingerprint(seeded)
        with db.connect(url) as conn:
            assert marker.seeded_scale(conn) == "tiny"
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'users'").fetchone()[0]
            assert owner == urls.APP_ROLE
    finally:
        with db.connect(urls.admin_url()) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _compose_pgbouncer() -> tuple[dict, configparser.ConfigParser]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["pgbouncer"]
    (mounted,) = svc["configs"]
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(compose["configs"][mounted["source"]]["content"])
    assert mounted["target"] == "/etc/pgbouncer/pgbouncer.ini"  # the image uses an existing config as it is
    return svc, ini


def test_compose_pgbouncer_is_pinned_transaction_mode_on_loopback_after_the_database():
    svc, ini = _compose_pgbouncer()
    image, _, tag = svc["image"].partition(":")
    assert tag and tag != "latest", "pin the PgBouncer image: notebook 09's demos depend on its version"
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert int(settings["max_client_conn"]) > 100   # its default of 100 is below notebook 09's burst
    assert settings["max_prepared_statements"] == "0"   # 1.18's behaviour, which notebook 09 shows failing
    assert svc["ports"] and all(p.startswith("127.0.0.1:") for p in svc["ports"])
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_pgbouncer_defines_every_database_notebook_09_uses():
    """WORKBOOK_PGBOUNCER_URL makes notebook 09 use that PgBouncer: it needs the same aliases and pool sizes."""
    _, ini = _compose_pgbouncer()
    source = "\n".join("".join(c["source"]) for c in json.loads(
        (ROOT / "notebooks" / "09_pools_in_production.ipynb").read_text())["cells"])

    def number(word: str) -> int:  # a literal, or the last number on the line that assigns the name
        return int(word) if word.isdigit() else int(re.findall(rf"\b{word}\b.* = .*?(\d+)$", source, re.M)[0])

    started = {alias: number(size) for alias, size in re.findall(r'"(\w+)": pgbouncer\.entry\([^,]+, (\w+)\)', source)}
    used = set(re.findall(r'(?:client|bouncer\.url|watch_pools)\((?:bouncer, )?"(\w+)"', source))
    assert started and used <= set(started) | {"pgbouncer"}, used - set(started)
    compose = {alias: int(re.search(r"pool_size=(\d+)", entry)[1]) for alias, entry in ini["databases"].items()}
    assert compose == started
    assert all("user=" in entry for entry in ini["databases"].values())  # auth_type any: each logs in as a role
