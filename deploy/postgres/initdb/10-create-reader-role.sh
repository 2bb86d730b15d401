#!/usr/bin/env bash
# Create the read-only login role that Bellhop's workers connect as.
#
# The postgres image runs the files in /docker-entrypoint-initdb.d once, on
# the first start with an empty data directory, as POSTGRES_USER against
# POSTGRES_DB. The flights-loader service later grants this role SELECT on
# the flights table it creates, so a catalog query can read the data but
# never change it.
set -euo pipefail

reader="${BELLHOP_READER_USER:-bellhop_reader}"
password="${BELLHOP_READER_PASSWORD:?set BELLHOP_READER_PASSWORD on the postgres service}"

# psql substitutes :"name" as a quoted identifier and :'name' as a quoted
# literal, so neither value is ever spliced into the SQL text by the shell.
psql -v ON_ERROR_STOP=1 --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set reader="$reader" --set password="$password" \
  --set database="${POSTGRES_DB:-postgres}" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"database" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
SQL
echo "initdb: created the read-only role $reader"
