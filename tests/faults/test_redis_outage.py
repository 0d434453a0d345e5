"""Fault 2: Redis stopped (SIGKILL) for a while, then back *empty*, in the middle of
indexing and delivery.

tests/erc8004/test_redis_disposable.py proves that losing Redis's *contents*
(FLUSHALL) loses nothing. This is the outage around it: for ``DOWN_SECONDS`` (CI: a
few, full: 20) there is no broker at all — beat cannot publish its ticks, workers
lose their consumer connection with messages reserved, a poll or an evaluation that
commits meanwhile cannot publish what follows it, the rate limiter and heartbeats
fail — and then a new, empty ``redis-server`` answers on the same port. The chain
keeps moving during the outage.

Nobody restarts anything: the worker and beat processes must reconnect by
themselves (Celery's broker connection retry), and the sweepers must rebuild every
message the outage lost from the rows in PostgreSQL. The verdict is the same as for
every fault: each expected delivery arrived once per ``webhook-id``, nothing
unexpected, and the read model equals the chain.
"""

from __future__ import annotations

import time

import pytest
import redis

from actions.models import Delivery, DeliveryStatus
from indexing.models import ChainCursor
from tests.faults.harness import FULL, sized, verdict_check
from tests.faults.servers import PrivateRedis
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

DOWN_SECONDS = sized(4, 20)


def prefix_key(env: dict[str, str], key: str) -> str:
    return env["REDIS_KEY_PREFIX"] + key


def test_redis_down_then_back_empty(devnet_factory, webhook_receiver, process_group, tmp_path):
    devnet = devnet_factory()
    pipeline = pipeline_build(devnet, webhook_receiver, seed=61, every_feedback=True, batch_size=6)
    chain_id = pipeline.chain.chain_id
    webhook_receiver.slow(0.05)
    group = process_group
    with PrivateRedis(tmp_path) as redis_server:
        # Off-chain files are fetched on the indexing queue too: as deployed (prefork, 2
        # children) a slow fetch never holds up a poll, and ipfs:// goes to a closed
        # loopback port (no internet in tests; files are not what this test is about).
        group.env = stack_env(redis_server.url, INDEXING_MAX_BLOCKS_PER_POLL="3", IPFS_GATEWAYS="http://127.0.0.1:9")
        pipeline.workload.run(sized(200, 400))
        group.worker("indexing", pool="prefork", concurrency=2)
        group.worker("triggers")
        group.worker("actions", pool="threads", concurrency=4)
        group.beat()

        # Mid-run: deliveries arriving, the indexer still behind, and workers holding
        # unacknowledged messages (file-fetch retries wait out their countdown reserved;
        # that is what used to kill a worker when its broker went away: erc8004/broker.py).
        assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= 5, timeout=120)
        unacked = prefix_key(group.env, "celery:unacked")
        broker = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: broker.hlen(unacked) > 0, 30, what="workers to hold unacknowledged messages")
        held = broker.hlen(unacked)
        indexed = ChainCursor.objects.get(pk=chain_id).last_block_number or 0
        redis_server.kill()
        down_at = time.monotonic()
        arrived_at_kill = len(webhook_receiver.accepted)
        assert indexed < devnet.w3.eth.block_number, "the indexer had caught up before the outage"

        # The chain does not wait for our Redis.
        pipeline.workload.run(40)
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        dead = {name: proc.returncode for name, proc in group.procs.items() if proc.poll() is not None}
        arrived_during = len(webhook_receiver.accepted) - arrived_at_kill
        redis_server.start()
        up_at = time.monotonic()
        down_for = up_at - down_at

        head = devnet.w3.eth.block_number
        expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
        assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=sized(150, 300)), (
            f"{len(webhook_receiver.accepted)} of {expected} arrived; dead processes: {dead}"
        )
        recovered_after = time.monotonic() - up_at
        wait_for(
            lambda: (ChainCursor.objects.get(pk=chain_id).last_block_number or 0) >= head,
            60,
            what="indexing to finish",
        )
        wait_for(
            lambda: not Delivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists(), 60, what="all recorded"
        )
        settled_after = time.monotonic() - up_at
        still_dead = {name: proc.returncode for name, proc in group.procs.items() if proc.poll() is not None}
        assert not dead, f"processes died during the outage: {dead}"
        assert not still_dead, f"processes died after the outage: {still_dead}"
        verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_id, truth=pipeline.workload.truth())
        print(
            f"\nredis outage ({'full' if FULL else 'ci'}): down {down_for:.1f}s after {arrived_at_kill}/{expected} "
            f"deliveries (indexer at {indexed}, {held} messages held unacknowledged, {arrived_during} arrived during "
            f"the outage); back empty, all "
            f"{verdict.distinct} delivered {recovered_after:.1f}s later (indexed and recorded after "
            f"{settled_after:.1f}s); resent under the same webhook-id: "
            f"{verdict.resent}; no process restarted"
        )
