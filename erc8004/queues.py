"""Redis access shared by the rooms: one client per process, and the depth of a
Celery queue as the broker stores it.

Kombu's Redis transport keeps a queue as a Redis list named after it, prefixed with
the transport's ``global_keyprefix`` (``REDIS_KEY_PREFIX + "celery:"`` here), plus
one extra list per non-zero priority step (``<queue>\\x06\\x16<step>``). The depth is
the sum of their lengths: messages waiting, not the ones a worker already reserved.
Works the same against the embedded Redis-protocol server (fakeredis).
"""

from __future__ import annotations

import functools
import os

import redis
from django.conf import settings

__all__ = ("queue_depth", "redis_client")

# kombu.transport.redis: Channel.sep and PRIORITY_STEPS.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


@functools.lru_cache(maxsize=8)
def _client(url: str, pid: int) -> redis.Redis:
    # Keyed by pid: a forked worker child must not share its parent's sockets.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def redis_client(url: str | None = None) -> redis.Redis:
    """The process's client for ``REDIS_URL`` (locks, rate limits) or another URL."""
    return _client(url or settings.REDIS_URL, os.getpid())


def queue_depth(name: str) -> int:
    """Messages waiting in Celery queue ``name`` (all priority lists)."""
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith(("redis://", "rediss://", "unix://")):
        return 0
    prefix = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("global_keyprefix", "")
    keys = [prefix + name] + [f"{prefix}{name}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]
    pipe = redis_client(broker).pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    return int(sum(pipe.execute()))
