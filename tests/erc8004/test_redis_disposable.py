"""Redis is disposable by design — proved: a private ``redis-server`` is flushed
(FLUSHALL: every queued message, every reserved-but-unacknowledged message, every
lock, rate-limit bucket and heartbeat gone) while the indexer is catching up and
deliveries are in flight. The sweepers then find what the lost messages left
behind (events without an evaluation, due deliveries whose message is gone, chains
whose poll never ran), and in the end every expected delivery reached the receiver
exactly once per ``webhook-id`` and the read model equals the chain's truth.

The sweepers' waits are shortened from tens of seconds to a few (stack_env) so the
test stays short; the mechanism is the production one.
"""

from __future__ import annotations

import time

import pytest
import redis

from actions.models import Delivery
from indexing.models import ChainCursor
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for
from tests.fixtures.truth import read_model_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_flushall_mid_run_loses_nothing(devnet_factory, webhook_receiver, redis_server, process_group):
    devnet = devnet_factory()
    pipeline = pipeline_build(devnet, webhook_receiver, seed=33, every_feedback=True, batch_size=6)
    chain_id = pipeline.chain.chain_id
    webhook_receiver.slow(0.05)
    group = process_group
    group.env = stack_env(redis_server, INDEXING_MAX_BLOCKS_PER_POLL="3")
    broker = redis.Redis.from_url(redis_server)

    pipeline.workload.run(200)
    group.worker("indexing")
    group.worker("triggers")
    group.worker("actions", pool="threads", concurrency=4)
    group.beat()

    # Mid-run: deliveries arriving, the indexer still behind, messages in Redis.
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= 5, timeout=120)
    head = devnet.w3.eth.block_number
    indexed = ChainCursor.objects.get(pk=chain_id).last_block_number or 0
    keys = broker.dbsize()
    broker.flushall()
    flushed_at = time.monotonic()
    arrived_at_flush = len(webhook_receiver.accepted)
    assert indexed < head, "the indexer had caught up before the flush: make the workload longer"
    assert keys > 0

    # New activity after the flush, on the same (emptied) Redis.
    pipeline.workload.run(40)
    head = devnet.w3.eth.block_number
    expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
    assert arrived_at_flush < expected
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=150), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived"
    )
    recovered_after = time.monotonic() - flushed_at
    wait_for(
        lambda: (ChainCursor.objects.get(pk=chain_id).last_block_number or 0) >= head, 60, what="indexing to finish"
    )
    assert len(webhook_receiver.accepted) == expected
    assert set(webhook_receiver.accepted.values()) == {1}
    assert all(r.verified for r in webhook_receiver.requests)
    assert read_model_diff(pipeline.workload.truth(), chain_id=chain_id) == []
    # The receiver counts a delivery as it answers; the sender records it just after.
    wait_for(lambda: set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}, 20, what="all succeeded")
    print(
        f"\nredis flushed ({keys} keys) after {arrived_at_flush}/{expected} deliveries, indexer at {indexed}; "
        f"all delivered {recovered_after:.1f}s after the flush"
    )
