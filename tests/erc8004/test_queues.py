"""erc8004/queues.py: the depth of a Celery queue as kombu stores it, on real Redis and
on the embedded Redis-protocol server (fakeredis)."""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.test import override_settings

from erc8004.queues import queue_depth, redis_client


def test_depth_counts_every_priority_list_under_the_prefix():
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    name = f"depth-test-{time.monotonic_ns()}"
    client = redis_client(settings.CELERY_BROKER_URL)
    try:
        assert queue_depth(name) == 0
        client.rpush(prefix + name, "a", "b")
        client.rpush(f"{prefix}{name}\x06\x166", "c")  # a priority-6 message
        client.rpush(name, "not ours")  # another deployment's key, no prefix
        assert queue_depth(name) == 3
    finally:
        client.delete(prefix + name, f"{prefix}{name}\x06\x166", name)


def test_depth_on_the_embedded_server():
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address
        url = f"redis://{host}:{port}/0"
        with override_settings(CELERY_BROKER_URL=url):
            prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
            redis_client(url).rpush(prefix + "actions", "x", "y")
            assert queue_depth("actions") == 2
    finally:
        server.shutdown()
        server.server_close()
