#!/usr/bin/env bash
# Restore an erc8004 backup made by scripts/backup.sh into a PostgreSQL database, and
# prove it complete: every table's row count must equal the count the backup took in
# the dump's own snapshot.
#
#   scripts/restore.sh [--force] BACKUP.dump [TARGET_DATABASE_URL]   (default: $DATABASE_URL)
#
# The target should be an empty database (createdb); --force restores over an existing
# one (pg_restore --clean --if-exists). Stop every process that writes to the target
# first (web, workers, beat: docs/runbook.md "Restore"). Afterwards run
# `manage.py migrate` (a newer release may need later migrations) and
# `manage.py healthcheck`. Exit status: 0 when the restore is verified.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
force=0
args=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) usage 0 ;;
    *) args+=("$arg") ;;
  esac
done
[ "${#args[@]}" -ge 1 ] || usage 2
dump=${args[0]}
url=${args[1]:-${DATABASE_URL:-}}
[ -n "$url" ] || { echo "restore: no target database URL (argument or DATABASE_URL)" >&2; exit 2; }
[ -s "$dump" ] || { echo "restore: $dump is missing or empty" >&2; exit 2; }

# 1. The archive is the one the backup wrote, and readable.
if [ -f "$dump.sha256" ]; then
  (cd "$(dirname "$dump")" && sha256sum --quiet -c "$(basename "$dump").sha256") \
    || { echo "restore: checksum mismatch: $dump was altered or truncated" >&2; exit 1; }
else
  echo "restore: warning: no $dump.sha256 to check the archive against" >&2
fi
pg_restore --list "$dump" >/dev/null || { echo "restore: pg_restore cannot read $dump" >&2; exit 1; }
manifest=${dump%.dump}.manifest

# 2. The target answers, and is empty unless --force.
tables=$(psql "$url" -X -A -t -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
clean=()
if [ "$tables" != 0 ]; then
  if [ "$force" = 1 ]; then
    clean=(--clean --if-exists)
    echo "restore: target has $tables tables; --force: dropping and recreating what the backup holds"
  else
    echo "restore: target already has $tables tables; restore into an empty database (createdb) or pass --force" >&2
    exit 1
  fi
fi

# 3. Restore in one transaction: all of it, or nothing.
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction "${clean[@]}" --dbname="$url" "$dump"

# 4. Verify against the manifest (row counts from the dump's own snapshot).
if [ -f "$manifest" ]; then
  bad=0
  checked=0
  while IFS=$'\t' read -r table expected; do
    case "$table" in "#"*|"") continue ;; esac
    actual=$(psql "$url" -X -A -t -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM public.\"$table\"")
    checked=$((checked + 1))
    if [ "$actual" != "$expected" ]; then
      echo "restore: $table has $actual rows, the backup had $expected" >&2
      bad=1
    fi
  done < "$manifest"
  [ "$bad" = 0 ] || { echo "restore: INCOMPLETE" >&2; exit 1; }
  echo "restore: verified $checked tables against $(basename "$manifest")"
else
  echo "restore: warning: no manifest next to $dump; row counts not verified" >&2
fi
echo "restore: done. Next: manage.py migrate, then manage.py healthcheck, then start the services."
