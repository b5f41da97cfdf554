#!/usr/bin/env bash
# Docker init script (docker-compose.yml mounts data/ at /docker-entrypoint-initdb.d; the image runs
# top-level *.sh files once, on an empty data directory). It seeds with the same SQL as `workbook seed`:
# data/admin/provision.sql makes the application role (as the embedded server's set-up does), which gets a
# password here; then data/sql/*.sql runs as that role, at WORKBOOK_SCALE (default small).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
db="${POSTGRES_DB:-workbook}"
app_password="${WORKBOOK_PASSWORD:-workbook}"

psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}" --dbname "$db" -f "$here/admin/provision.sql"
psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
     -v app_password="$app_password" <<'SQL'
ALTER ROLE workbook PASSWORD :'app_password';
SQL

PGOPTIONS="-c workbook.scale=${WORKBOOK_SCALE:-small}" PGPASSWORD="$app_password" \
  psql -v ON_ERROR_STOP=1 -q --username workbook --dbname "$db" \
  $(for f in "$here"/sql/*.sql; do printf -- '-f %s ' "$f"; done)
