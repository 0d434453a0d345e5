"""erc8004/broker.py: a worker holding messages survives its broker going away.

Before the repair, a Celery 5.7 worker that held any unacknowledged message when
its Redis connection broke (a task with a countdown is held for the whole
countdown) died with "Unrecoverable error: AttributeError" — found by
tests/faults/test_redis_outage.py, where the indexing worker holds the retries of
off-chain file fetches. A real worker subprocess, a real ``redis-server`` that is
killed and started again (empty) on the same port.
"""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from tests.faults.servers import PrivateRedis
from tests.fixtures.processes import stack_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_redis_urls_resolve_to_our_transport_and_keep_their_scheme():
    """redis:// and rediss:// get the repaired transport; the URL kombu logs and its
    TLS defaults for rediss (both keyed on the scheme name) are unchanged."""
    from erc8004.broker import Transport
    from erc8004.celery import app

    with app.connection_for_write() as conn:
        assert conn.transport_cls == "redis"
        assert isinstance(conn.transport, Transport)
        assert conn.as_uri().startswith("redis://")
    with app.connection_for_write("rediss://127.0.0.1:6380/0") as conn:
        assert isinstance(conn.transport, Transport)
        assert conn.ssl  # kombu's rediss default (no broker_use_ssl given)


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_worker_holding_messages_survives_its_broker_going_away(process_group, tmp_path, pool):
    with PrivateRedis(tmp_path) as broker:
        env = stack_env(broker.url)
        prefix = env["REDIS_KEY_PREFIX"]
        process_group.env = env
        worker = process_group.worker("indexing", pool=pool, concurrency=2)
        client = redis.Redis.from_url(broker.url)
        producer = Celery("test-broker", broker=broker.url, set_as_current=False)
        producer.conf.broker_transport_options = {"global_keyprefix": prefix + "celery:"}

        def send(countdown: float | None = None) -> None:
            producer.send_task("erc8004.tasks.heartbeat", args=("indexing",), queue="indexing", countdown=countdown)

        # Held: the worker reserved them and waits for their countdown, unacknowledged.
        for _ in range(3):
            send(countdown=600)
        wait_for(lambda: client.hlen(prefix + "celery:unacked") >= 3, 30, what="the worker to hold 3 messages")

        broker.kill()
        time.sleep(2)  # the worker notices at once (its connection is closed); give it time to die, if it does
        assert worker.poll() is None, process_group.log("worker-indexing")[-3000:]
        broker.start()  # empty

        # It reconnected and consumes again: a heartbeat sent now is stamped.
        client = redis.Redis.from_url(broker.url)
        deadline = time.monotonic() + 40
        while not client.exists(f"{prefix}heartbeat:indexing") and time.monotonic() < deadline:
            send()
            time.sleep(1)
        assert client.exists(f"{prefix}heartbeat:indexing"), process_group.log("worker-indexing")[-3000:]
        assert worker.poll() is None
        assert "Unrecoverable error" not in process_group.log("worker-indexing")
        producer.close()
