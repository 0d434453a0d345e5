"""Graceful shutdown, on real worker processes: SIGTERM lands while a poller is
catching up and while a burst of deliveries is in flight; the workers finish (or
hand back) what they hold and exit 0; once restarted, the ground truth holds —
every expected delivery reached the receiver exactly once per ``webhook-id`` (not
even sent twice), and the read model equals what the chain says.

Both shutdown modes are exercised: the indexing worker gets a plain SIGTERM (Celery's
warm shutdown, as under ``make run``); the actions worker runs with
``REMAP_SIGTERM=SIGQUIT`` as in deploy/ (SIGTERM becomes a *soft* shutdown: running
tasks get ``CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT`` seconds, then whatever is still
reserved is requeued before the container's grace period ends).

Why it holds (settings.py, docs/runbook.md "Graceful drain"): running tasks finish;
``acks_late`` means messages the worker reserved but did not finish are not
acknowledged and go back to the queue; every task is idempotent (the poller's
lease and cursor check, the evaluation claim, the delivery claim).
"""

from __future__ import annotations

import signal
import time

import pytest

from actions.models import Delivery
from indexing.models import ChainCursor
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for
from tests.fixtures.truth import read_model_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_sigterm_mid_indexing_and_mid_delivery_loses_and_repeats_nothing(
    devnet_factory, webhook_receiver, redis_server, process_group
):
    devnet = devnet_factory()
    # Small blocks and small polls: indexing takes many poll tasks, so SIGTERM finds one running.
    pipeline = pipeline_build(devnet, webhook_receiver, seed=21, every_feedback=True, batch_size=6)
    chain_id = pipeline.chain.chain_id
    webhook_receiver.slow(0.4)  # a receiver that takes its time: sends are in flight when SIGTERM lands
    group = process_group
    group.env = stack_env(redis_server, INDEXING_MAX_BLOCKS_PER_POLL="2")

    pipeline.workload.run(260)
    head = devnet.w3.eth.block_number
    group.worker("triggers")
    # As deployed (docs/deploy.md), with a shorter soft-shutdown window than production's 15 s.
    deployed = {"REMAP_SIGTERM": "SIGQUIT", "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "3"}
    group.worker("actions", pool="threads", concurrency=4, **deployed)
    group.beat()
    group.worker("indexing")

    # SIGTERM the indexer while it is behind: the running poll finishes its batch.
    start = pipeline.workload.truth()["block_range"][0]
    wait_for(
        lambda: (
            (ChainCursor.objects.filter(pk=chain_id).values_list("last_block_number", flat=True).first() or 0)
            >= start + 6
        ),
        90,
        what="the indexer to be under way",
    )
    t0 = time.monotonic()
    assert group.stop("worker-indexing", signal.SIGTERM, timeout=60) == 0
    indexing_stop = time.monotonic() - t0
    cursor = ChainCursor.objects.get(pk=chain_id)
    assert cursor.last_block_number < head, "the indexer was not mid-work: make the workload longer"
    assert "Warm shutdown" in group.log("worker-indexing")

    # Restart it; once deliveries are flowing, SIGTERM the actions worker mid-burst.
    group.worker("indexing")
    expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
    assert expected >= 40
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= 10, timeout=120)
    # A send in flight (its row claimed) when SIGTERM lands — waited for, not hoped for.
    wait_for(lambda: Delivery.objects.filter(status="sending").exists(), 60, interval=0.02, what="a send in flight")
    t0 = time.monotonic()
    assert group.stop("worker-actions", signal.SIGTERM, timeout=60) == 0
    actions_stop = time.monotonic() - t0
    arrived_at_stop = len(webhook_receiver.accepted)
    assert arrived_at_stop < expected, "the burst was over before SIGTERM: slow the receiver down"
    # Sends were in flight at SIGTERM: the soft shutdown gave them their window.
    assert "Initiating Soft Shutdown" in group.log("worker-actions"), group.log("worker-actions")[-2000:]

    # Restart: everything arrives, once.
    group.worker("actions", pool="threads", concurrency=4, **deployed)
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=120), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived"
    )
    wait_for(
        lambda: (ChainCursor.objects.get(pk=chain_id).last_block_number or 0) >= head, 60, what="indexing to finish"
    )
    assert len(webhook_receiver.accepted) == expected
    assert set(webhook_receiver.accepted.values()) == {1}
    assert set(webhook_receiver.arrivals.values()) == {1}  # not even a second request
    assert all(r.verified for r in webhook_receiver.requests)
    assert read_model_diff(pipeline.workload.truth(), chain_id=chain_id) == []
    # The receiver counts a delivery as it answers; the sender records it just after.
    wait_for(lambda: set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}, 20, what="all succeeded")
    print(
        f"\nshutdown: indexing worker stopped in {indexing_stop:.1f}s at block {cursor.last_block_number}/{head}; "
        f"actions worker stopped in {actions_stop:.1f}s after {arrived_at_stop}/{expected} deliveries"
    )
