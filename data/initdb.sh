#!/usr/bin/env bash
# Docker init script (docker-compose.yml mounts data/ at /docker-entrypoint-initdb.d; the image runs
# top-level *.sh files once, on an empty data directory). It seeds with the same SQL as `workbook seed`:
# creates the application role and runs data/sql/*.sql as that role, at WORKBOOK_SCALE (default small).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
db="${POSTGRES_DB:-workbook}"
app_password="${WORKBOOK_PASSWORD:-workbook}"

psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
     -v app_password="$app_password" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE workbook LOGIN CREATEDB CREATEROLE PASSWORD %L', :'app_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'workbook') \gexec
GRANT pg_monitor, pg_signal_backend TO workbook;
ALTER DATABASE :"db" OWNER TO workbook;
GRANT ALL ON SCHEMA public TO workbook;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL

PGOPTIONS="-c workbook.scale=${WORKBOOK_SCALE:-small}" PGPASSWORD="$app_password" \
  psql -v ON_ERROR_STOP=1 -q --username workbook --dbname "$db" \
  $(for f in "$here"/sql/*.sql; do printf -- '-f %s ' "$f"; done)
