"""The migration half of the rollback procedure (docs/runbook.md, "Migrations and
rollback"): on a scratch PostgreSQL database, every app migrates forward, back to
zero (newest app first, as a rollback would), and forward again — so every
migration in the tree can be reverted with ``manage.py migrate <app> <name>``."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from django.db import connection

from tests.fixtures.processes import BASE_DIR, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

# Project apps, dependents first.
ROLLBACK_ORDER = ("triggers", "actions", "agents", "indexing", "erc8004")

SCRIPT = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
for app in {order!r}:
    call_command("migrate", app, "zero", verbosity=0)
call_command("migrate", verbosity=0)
call_command("migrate", check_unapplied=True, verbosity=0)
print("round trip ok")
"""


@pytest.fixture
def scratch_database():
    name = f"erc8004_migrations_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_every_migration_goes_forward_back_and_forward_again(scratch_database):
    env = subprocess_env()
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + scratch_database
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(order=ROLLBACK_ORDER)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "round trip ok" in result.stdout
