"""Fault 1: ``kill -9`` of the actions worker in the middle of a delivery storm, then restart.

A storm of webhook deliveries (CI: ~200, full: ~2,000 — several triggers on one
destination, every feedback event matching each of them) is being sent by a real
thread-pool actions worker when its whole process tree gets SIGKILL: no warm or
soft shutdown, nothing handed back. Some sends are mid-request at that moment, some
reached the receiver but were not recorded yet, and the worker had reserved
(prefetched, unacknowledged) messages it never ran.

What recovers them — the production mechanism, only its waits shortened through
``stack_env``:

* a row left in ``sending`` keeps its lease (destination timeout + rate-limit wait +
  ``ACTIONS_LEASE_MARGIN_SECONDS``); the sweeper (``actions.sweep_deliveries``, every
  ``ACTIONS_SWEEP_INTERVAL``) records the lost attempt and makes the row due again;
* a row whose message died with the worker (reserved, not acknowledged: the message
  sits in kombu's "unacked" hash until ``CELERY_VISIBILITY_TIMEOUT``, an hour) is
  re-published by the dispatcher once ``ACTIONS_DISPATCH_GRACE_SECONDS`` passed;
* the same frozen payload goes out again, so a delivery that reached the receiver
  just before the kill is resent under the *same* ``webhook-id`` (counted and
  reported); a second id for one (event, trigger, destination) is impossible (the
  outbox key is unique) and the verdict checks it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from django.db.models import Count

from actions.models import Delivery, DeliveryStatus
from indexing.models import ChainCursor
from tests.faults.harness import FULL, sized, verdict_check
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for
from triggers.services import ActionSpec, trigger_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

# Shorter than production (30 s margin, 10 s sweep, 60 s grace) so recovery takes seconds.
RECOVERY_ENV = {
    "ACTIONS_LEASE_MARGIN_SECONDS": "2",
    "ACTIONS_SWEEP_INTERVAL": "1",
    "ACTIONS_DISPATCH_GRACE_SECONDS": "10",
}


def test_sigkill_actions_worker_mid_storm(devnet_factory, webhook_receiver, redis_server, process_group):
    target = sized(200, 2000)
    triggers = sized(4, 10)
    devnet = devnet_factory()
    pipeline = pipeline_build(devnet, webhook_receiver, seed=51, every_feedback=True)
    for n in range(1, triggers):  # more triggers on the same destination: each feedback fans out
        trigger_create(
            organization=pipeline.destination.organization,
            name=f"all feedback {n}",
            event_types=["NewFeedback"],
            actions=[ActionSpec(destination=pipeline.destination)],
        )
    chain_id = pipeline.chain.chain_id
    while low_feedback_count(pipeline.workload.truth(), every_feedback=True) * triggers < target:
        pipeline.workload.run(40)
    head = devnet.w3.eth.block_number
    expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True) * triggers

    webhook_receiver.slow(0.03)  # a little slow: sends are mid-request when the kill lands
    group = process_group
    group.env = {**stack_env(redis_server), **RECOVERY_ENV}
    group.worker("indexing")
    group.worker("triggers")
    group.worker("actions", pool="threads", concurrency=8)
    group.beat()
    t_start = time.monotonic()

    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected // 4, timeout=sized(120, 300)), (
        f"only {len(webhook_receiver.accepted)} of {expected} arrived before the kill"
    )
    in_flight = Delivery.objects.filter(status=DeliveryStatus.SENDING)
    wait_for(in_flight.exists, 30, interval=0.01, what="a send in flight")
    os.killpg(group.procs["worker-actions"].pid, signal.SIGKILL)
    killed = time.monotonic()
    assert group.stop("worker-actions", timeout=10) == -signal.SIGKILL
    arrived_at_kill = len(webhook_receiver.accepted)
    # What the dead worker had reserved stays in the transport's "unacked" hash until the
    # visibility timeout; the rows behind those messages are recovered long before.
    orphaned = redis.Redis.from_url(redis_server).hlen(group.env["REDIS_KEY_PREFIX"] + "celery:unacked")
    sending = list(Delivery.objects.filter(status=DeliveryStatus.SENDING).values_list("uuid", flat=True))
    answered_not_recorded = sum(1 for u in sending if str(u) in webhook_receiver.accepted)
    assert arrived_at_kill < expected, "the storm was over before the kill: make it bigger or slower"
    assert sending, "no send was in flight at the kill"

    group.worker("actions", pool="threads", concurrency=8)
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=sized(120, 300)), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived after the restart"
    )
    recovered = time.monotonic() - killed
    # The receiver counts a delivery as it answers; the sender records it just after.
    wait_for(lambda: not Delivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists(), 60, what="all recorded")
    settled = time.monotonic() - killed  # the last lost send's lease ran out and it was resent
    wait_for(
        lambda: (ChainCursor.objects.get(pk=chain_id).last_block_number or 0) >= head, 60, what="indexing to finish"
    )
    assert Delivery.objects.count() == expected
    # Never a second delivery (so a second webhook-id) for one (event, trigger, destination).
    keys = Delivery.objects.values("event_id", "trigger_id", "destination_id")
    assert not keys.annotate(n=Count("id")).filter(n__gt=1).exists()
    # A request the kill cut off mid-body reached the receiver with fewer bytes than its
    # Content-Length: its signature cannot verify, the receiver answered 401, and the
    # same webhook-id was resent in full. Not a delivery — set aside before the verdict.
    cut = [r for r in webhook_receiver.requests if len(r.body.encode()) < int(r.headers.get("content-length") or 0)]
    assert all(not r.verified and r.webhook_id in webhook_receiver.accepted for r in cut)
    webhook_receiver.requests[:] = [r for r in webhook_receiver.requests if r not in cut]
    verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_id, truth=pipeline.workload.truth())
    # Only a send caught between the receiver's answer and our record can go out twice.
    assert verdict.resent <= len(sending)
    print(
        f"\nworker kill ({'full' if FULL else 'ci'}): SIGKILL after {arrived_at_kill}/{expected} deliveries with "
        f"{len(sending)} sending ({answered_not_recorded} answered, not recorded) and {orphaned} messages orphaned; "
        f"all {verdict.distinct} arrived {recovered:.1f}s after the kill, all recorded succeeded after {settled:.1f}s "
        f"({time.monotonic() - t_start:.1f}s in all); "
        f"resent under the same webhook-id: {verdict.resent}; requests {verdict.requests} "
        f"(+{len(cut)} cut off mid-body by the kill)"
    )
