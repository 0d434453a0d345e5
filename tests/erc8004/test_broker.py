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

from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
from indexing.devnet.workload import Workload
from indexing.models import ChainCursor, RpcEndpoint
from tests.faults.servers import PrivateRedis
from tests.fixtures.processes import stack_env, wait_for
from tests.fixtures.rpc_proxy import FaultPlan

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


def test_a_poll_running_when_the_broker_goes_away_finishes_and_gives_its_lease_back(
    anvil_factory, rpc_proxy_factory, process_group, tmp_path
):
    """Celery can kill a task that is running when the broker connection drops
    (worker_cancel_long_running_tasks_on_connection_loss). A prefork child killed
    mid-poll never released the chain's lease: indexing stood still for
    INDEXING_LEASE_SECONDS (150 s) after a Redis blip — found by
    tests/faults/test_redis_outage.py. The poll must finish and release it instead —
    and finishing after the worker reconnected must not kill the worker when its
    message is acknowledged (erc8004/broker.py)."""
    from web3 import HTTPProvider, Web3

    anvil = anvil_factory()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    deployment = devnet_deploy(w3=w3)
    slow = rpc_proxy_factory(anvil.rpc_url, FaultPlan(rate_timeout=1.0, timeout_seconds=1.0))
    chain = devnet_register_chain(rpc_url=slow.url, chain_id=w3.eth.chain_id, deployment=deployment)
    RpcEndpoint.objects.filter(chain=chain).exclude(url=slow.url).delete()
    workload = Workload(w3, deployment, seed=5)
    workload.run(20)
    workload.close()
    with PrivateRedis(tmp_path) as broker:
        env = stack_env(broker.url)
        process_group.env = env
        worker = process_group.worker("indexing", pool="prefork", concurrency=1)
        producer = Celery("test-broker", broker=broker.url, set_as_current=False)
        producer.conf.broker_transport_options = {"global_keyprefix": env["REDIS_KEY_PREFIX"] + "celery:"}
        producer.send_task("indexing.tasks.poll_chain", args=(chain.chain_id,), queue="indexing")
        producer.close()
        cursor = ChainCursor.objects.filter(pk=chain.chain_id)
        wait_for(lambda: cursor.exclude(lease_owner="").exists(), 30, interval=0.05, what="the poll to hold the lease")

        broker.kill()  # every request to the node takes a second: the poll is mid-run
        time.sleep(1)
        broker.start()

        wait_for(
            lambda: cursor.filter(lease_owner="", last_block_number__isnull=False).exists(),
            30,
            what="the poll to finish and release its lease (not killed holding it)",
        )
        assert "Terminating it instead" not in process_group.log("worker-indexing")
        # Its message belonged to the broken connection: settling it (acknowledging on a
        # closed channel, when the poll ends after the reconnect) must not take the worker
        # down either — whether that happens depends on timing; the full-size outage
        # scenario (tests/faults/test_redis_outage.py) is where it was seen.
        time.sleep(3)
        assert worker.poll() is None, process_group.log("worker-indexing")[-3000:]
        assert "Unrecoverable error" not in process_group.log("worker-indexing")
