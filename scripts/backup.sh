#!/usr/bin/env bash
# Back up the erc8004 PostgreSQL database: a pg_dump custom-format archive (-Fc) plus a
# manifest of per-table row counts taken in the *same snapshot* as the dump, so
# scripts/restore.sh can prove the restore is complete, and a SHA-256 of the archive.
#
#   scripts/backup.sh [-o DIR] [DATABASE_URL]      (default: $DATABASE_URL, ./backups)
#
# Only PostgreSQL needs a backup: Redis holds messages, locks and counters that the
# sweepers rebuild (docs/architecture.md, docs/runbook.md "Backup and restore").
# Needs the PostgreSQL client tools (pg_dump, pg_restore, psql) of the server's major
# version or newer. Exit status: 0 on a verified backup, non-zero otherwise.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
out_dir=backups
while getopts "o:h" opt; do
  case "$opt" in
    o) out_dir=$OPTARG ;;
    h) usage 0 ;;
    *) usage 2 ;;
  esac
done
shift $((OPTIND - 1))
url=${1:-${DATABASE_URL:-}}
[ -n "$url" ] || { echo "backup: no database URL (argument or DATABASE_URL)" >&2; exit 2; }
for tool in pg_dump pg_restore psql sha256sum; do
  command -v "$tool" >/dev/null || { echo "backup: $tool not found" >&2; exit 2; }
done

mkdir -p "$out_dir"
db=$(psql "$url" -X -A -t -v ON_ERROR_STOP=1 -c "SELECT current_database()")
stamp=$(date -u +%Y%m%dT%H%M%SZ)
base="$out_dir/erc8004-$db-$stamp"
tmp="$base.dump.partial"
trap 'rm -f "$tmp" "$base.manifest.partial"' EXIT

# One REPEATABLE READ transaction exports its snapshot: the row counts below and
# pg_dump both see exactly the same database state, however busy it is.
coproc PSQL { psql "$url" -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1; }
echo "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();" >&"${PSQL[1]}"
read -r -t 30 snapshot <&"${PSQL[0]}" || { echo "backup: could not open a snapshot" >&2; exit 1; }
cat >&"${PSQL[1]}" <<'SQL'
SELECT 'server_version', current_setting('server_version');
SELECT CASE WHEN to_regclass('public.django_migrations') IS NULL THEN $$SELECT 'last_migration', ''$$
  ELSE $$SELECT 'last_migration', coalesce((SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1), '')$$
  END \gexec
SELECT 'END_HEADER', '';
SELECT coalesce(string_agg(format('SELECT %L, count(*) FROM public.%I', tablename, tablename), ' UNION ALL ' ORDER BY tablename), 'SELECT NULL, NULL WHERE false')
FROM pg_tables WHERE schemaname = 'public' \gexec
SELECT 'END', '';
SQL
{
  echo "# erc8004 backup manifest"
  echo "# database: $db"
  echo "# taken_at: $stamp"
  while IFS=$'\t' read -r -t 60 key value <&"${PSQL[0]}"; do
    [ "$key" = END_HEADER ] && break
    echo "# $key: $value"
  done
  while IFS=$'\t' read -r -t 300 table count <&"${PSQL[0]}"; do
    [ "$table" = END ] && break
    printf '%s\t%s\n' "$table" "$count"
  done
} > "$base.manifest.partial"

pg_dump --format=custom --no-owner --no-privileges --snapshot="$snapshot" --file="$tmp" "$url"
echo "COMMIT;" >&"${PSQL[1]}"
exec {PSQL[1]}>&-
wait "$PSQL_PID" 2>/dev/null || true

# Checks: the archive is readable and holds every table the manifest counted.
[ -s "$tmp" ] || { echo "backup: empty archive" >&2; exit 1; }
toc=$(pg_restore --list "$tmp") || { echo "backup: pg_restore cannot read the archive" >&2; exit 1; }
missing=0
while IFS=$'\t' read -r table _count; do
  case "$table" in "#"*|"") continue ;; esac
  grep -q "TABLE DATA public $table " <<<"$toc" || { echo "backup: no data for table $table" >&2; missing=1; }
done < "$base.manifest.partial"
[ "$missing" = 0 ] || exit 1

mv "$tmp" "$base.dump"
mv "$base.manifest.partial" "$base.manifest"
(cd "$(dirname "$base")" && sha256sum "$(basename "$base").dump" > "$(basename "$base").dump.sha256")
tables=$(grep -vc '^#' "$base.manifest" || true)
rows=$(awk -F'\t' '!/^#/ {s += $2} END {print s + 0}' "$base.manifest")
echo "backup: $base.dump ($(du -h "$base.dump" | cut -f1), $tables tables, $rows rows, $(grep '^# last_migration' "$base.manifest" | cut -d' ' -f3))"
