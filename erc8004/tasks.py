"""Tasks of the project package: the worker heartbeat (erc8004/health.py)."""

from __future__ import annotations

import json
import time

from celery import shared_task
from django.conf import settings

__all__ = ("heartbeat",)


@shared_task(name="erc8004.tasks.heartbeat", bind=True, ignore_result=True)
def heartbeat(self, queue: str) -> None:
    """Stamp "a worker of ``queue`` took a message just now". Beat publishes one to
    every queue (settings: ``erc8004-heartbeat-<queue>``), so the stamp's age is how
    long that queue has gone without a consumer. The stamp outlives a few missed
    ticks (TTL) so a stale one is reported as stale, not as never seen."""
    from .health import heartbeat_key
    from .queues import redis_client

    stamp = {"at": time.time(), "worker": self.request.hostname or ""}
    ttl = max(3600, 10 * settings.HEALTH_HEARTBEAT_MAX_AGE)
    redis_client().set(heartbeat_key(queue), json.dumps(stamp), ex=ttl)
