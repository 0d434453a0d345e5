"""Shared fixtures: a real Celery worker on the real Redis broker, and (from
tests/fixtures/devnet.py) a real anvil chain with the project's contracts."""

from __future__ import annotations

import pytest
from django.conf import settings

pytest_plugins = (
    "tests.fixtures.processes",
    "tests.fixtures.devnet",
    "tests.fixtures.worker",
    "tests.fixtures.rpc_proxy",
    "tests.fixtures.receivers",
    "tests.fixtures.accounts",
)


@pytest.fixture(scope="session", autouse=True)
def _redis_clean_prefix():
    """Start and end every session with no keys under this session's prefix."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)

    def wipe() -> None:
        for key in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000):
            client.delete(key)

    wipe()
    yield
    wipe()
