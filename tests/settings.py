"""Test settings: the production settings module with test defaults in the
environment (real PostgreSQL and Redis on loopback, loopback allowed for outbound
HTTP because every receiver in the suite is a real local server).

Environment variables still win, so CI or a developer can point elsewhere.
"""

import os

os.environ.setdefault("ERC8004_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/erc8004")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# One key prefix per test session: two sessions (a developer's, CI's) can share
# the Redis server without consuming each other's Celery messages. Subprocesses the
# tests start inherit it through the environment.
os.environ.setdefault("REDIS_KEY_PREFIX", f"erc8004-test-{os.getpid()}:")
os.environ.setdefault("OUTBOUND_ALLOWLIST", "127.0.0.0/8,::1/128")
# The suite makes thousands of API calls as a handful of users from 127.0.0.1;
# throttling is tested on its own (tests/erc8004/test_auth.py) with low rates set there.
for _scope in ("USER", "APIKEY", "ANON", "LOGIN", "TEST_SEND"):
    os.environ.setdefault(f"THROTTLE_RATE_{_scope}", "1000000/min")

from erc8004.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users in tests
