#!/bin/sh
# First start: initdb with POSTGRES_USER/POSTGRES_PASSWORD (read from the environment, never from the image), create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql; then the server on every interface with password auth.
set -eu
: "${POSTGRES_USER:?set POSTGRES_USER}" "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp); printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then createdb -U "$POSTGRES_USER" "$POSTGRES_DB"; fi
  for f in /docker-entrypoint-initdb.d/*.sql; do [ -e "$f" ] && psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "${POSTGRES_DB:-postgres}" -f "$f"; done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
