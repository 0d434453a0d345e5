"""scripts/backup.sh and scripts/restore.sh against the real PostgreSQL: a database
with data is backed up, restored into a new database, and the two are compared
table by table (row counts and a digest of every row). A tampered archive and a
non-empty target are refused."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

from actions.services import destination_create, destination_test
from tests.fixtures.factories import make_event, make_feedback_event, make_org
from tests.fixtures.processes import BASE_DIR

pytestmark = pytest.mark.django_db(transaction=True)

if not shutil.which("pg_dump") or not shutil.which("pg_restore"):
    pytest.skip("the PostgreSQL client tools are not installed", allow_module_level=True)


def url(name: str) -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{name}"


def table_digests(dsn: str) -> dict[str, tuple[int, str]]:
    """Every public table: (row count, md5 of all its rows in a stable order)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        tables = [row[0] for row in cursor.fetchall()]
        out = {}
        for table in tables:
            cursor.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM \"{table}\" t"  # noqa: S608
            )
            out[table] = cursor.fetchone()
    conn.close()
    return out


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BASE_DIR / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def scratch_database():
    """A new, empty database on the same server; dropped afterwards."""
    name = f"erc8004_restore_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_backup_restore_round_trip_is_identical(tmp_path: Path, scratch_database: str):
    org = make_org()
    for index in range(1, 30):
        make_feedback_event(agent_id=index % 5, value=index * 3, index=index, block_number=100 + index)
    make_event("Registered", {"agentId": "7", "owner": "0x" + "ab" * 20, "agentURI": "ipfs://x"}, agent_id=7)
    destination = destination_create(
        organization=org, name="hook", channel="webhook", config={"url": "https://receiver.example/hook"}
    )
    destination_test(destination=destination)  # an outbox row with a frozen payload and an encrypted secret
    source = url(settings.DATABASES["default"]["NAME"])

    backup = run("backup.sh", "-o", str(tmp_path), source)
    assert backup.returncode == 0, backup.stderr
    assert "backup: " in backup.stdout
    [dump] = tmp_path.glob("*.dump")
    manifest = dump.with_suffix(".manifest")
    assert "# last_migration: " in manifest.read_text()
    assert (tmp_path / f"{dump.name}.sha256").exists()

    restore = run("restore.sh", str(dump), url(scratch_database))
    assert restore.returncode == 0, restore.stderr
    assert "verified" in restore.stdout

    before, after = table_digests(source), table_digests(url(scratch_database))
    assert after == before
    assert before["indexing_chainevent"][0] == 30
    assert before["actions_delivery"][0] == 1

    # Restoring again over the now non-empty database is refused without --force ...
    again = run("restore.sh", str(dump), url(scratch_database))
    assert again.returncode == 1
    assert "restore into an empty database" in again.stderr
    # ... and with --force it replaces it and verifies again.
    forced = run("restore.sh", "--force", str(dump), url(scratch_database))
    assert forced.returncode == 0, forced.stderr
    assert table_digests(url(scratch_database)) == before


def test_a_damaged_archive_is_refused(tmp_path: Path, scratch_database: str):
    backup = run("backup.sh", "-o", str(tmp_path), url(settings.DATABASES["default"]["NAME"]))
    assert backup.returncode == 0, backup.stderr
    [dump] = tmp_path.glob("*.dump")
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])  # truncated in transit
    restore = run("restore.sh", str(dump), url(scratch_database))
    assert restore.returncode == 1
    assert "checksum mismatch" in restore.stderr
    assert table_digests(url(scratch_database)) == {}  # nothing was restored
