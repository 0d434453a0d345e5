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
# Every test client is 127.0.0.1: a suite-wide budget far above what it sends, so only
# the throttling tests (own client address, own rate) ever see a 429.
os.environ.setdefault("API_THROTTLE_ANON", "100000/min")

from erc8004.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users in tests
