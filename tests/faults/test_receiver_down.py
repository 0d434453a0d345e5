"""Fault scenario 6: a webhook receiver that is down for a while (docs/reliability.md).

Issue text: "A receiver that is down for 5 minutes (breaker opens, nothing lost, all
delivered after)."

The whole stack runs as it is deployed — a Celery worker per queue and beat, as
subprocesses on a private ``redis-server`` — in front of a real anvil devnet with a
workload and the signature-verifying receiver. The receiver's port is closed
(``down()``: connection refused, like a crashed host) while feedback keeps arriving
on-chain. What must happen, and is checked:

* the destination's circuit breaker opens (``Destination.breaker_state`` observed
  ``open`` in the database, as ``/metrics`` reports it) — so a down receiver costs a
  probe per cooldown, not an attempt per delivery;
* no delivery is dead-lettered: every row waits (retry ladder, breaker) in
  PostgreSQL;
* after ``up()`` a probe closes the breaker and every expected delivery arrives
  exactly once per ``webhook-id`` (harness verdict), the read model equals the chain.

Sizes: CI — down ~25 s, breaker cooldown 3 s and a retry ladder of seconds (set the
way an operator would: ``Destination.cooldown_seconds`` and ``ACTIONS_RETRY_LADDER``);
full (``FAULTS_FULL=1``) — down 5 minutes with the production defaults (cooldown 60 s,
ladder 5 s, 30 s, 2 min, 10 min, …), so the time to recover is what an operator sees.
"""

from __future__ import annotations

import time

import pytest

from actions.models import Attempt, BreakerState, Delivery, DeliveryStatus, Destination
from indexing.models import ChainCursor
from tests.faults.harness import OFFLINE_ENV, sized, verdict_check
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

OUTAGE_SECONDS = sized(25.0, 300.0)
COOLDOWN_SECONDS = sized(3, 60)  # the Destination's own breaker cooldown (production default: 60)
# None: the production ladder (settings.ACTIONS_RETRY_LADDER's default).
RETRY_LADDER = sized("1,2,3,3,3,3,3,3,3,3,3,3", None)
RECOVERY_TIMEOUT = sized(90.0, 900.0)


@pytest.mark.timeout(sized(240, 1500))
def test_receiver_down_breaker_opens_nothing_lost_all_delivered_after(
    devnet_factory, webhook_receiver, redis_server, process_group
):
    started = time.monotonic()
    devnet = devnet_factory()
    pipeline = pipeline_build(devnet, webhook_receiver, seed=61, every_feedback=True, batch_size=20)
    chain_id = pipeline.chain.chain_id
    destination = pipeline.destination
    Destination.objects.filter(pk=destination.pk).update(cooldown_seconds=COOLDOWN_SECONDS)
    overrides = {"ACTIONS_RETRY_LADDER": RETRY_LADDER} if RETRY_LADDER else {}
    group = process_group
    group.env = stack_env(redis_server, **OFFLINE_ENV, **overrides)
    if not RETRY_LADDER:
        group.env.pop("ACTIONS_RETRY_LADDER", None)
    # One worker per queue, as make run and deploy/ start them.
    group.worker("indexing")
    group.worker("triggers")
    group.worker("actions", pool="threads", concurrency=4)
    group.beat()

    # Before the outage: the pipeline works.
    pipeline.workload.run(60)
    before = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
    assert before > 0
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= before, timeout=120), "no delivery before the outage"

    # The outage: port closed; feedback keeps coming (in two bursts: at once and half-way).
    webhook_receiver.down()
    down_at = time.monotonic()
    pipeline.workload.run(60)
    states: set[str] = set()
    opened_at: float | None = None
    burst_2_done = False
    while time.monotonic() - down_at < OUTAGE_SECONDS:
        state = Destination.objects.filter(pk=destination.pk).values_list("breaker_state", flat=True).get()
        states.add(state)
        if state == BreakerState.OPEN and opened_at is None:
            opened_at = time.monotonic() - down_at
        if not burst_2_done and time.monotonic() - down_at > OUTAGE_SECONDS / 2:
            pipeline.workload.run(40)
            burst_2_done = True
        time.sleep(0.25)
    expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
    held = expected - before
    # Every held delivery exists (indexed, evaluated, in the outbox) before the receiver returns.
    wait_for(lambda: Delivery.objects.count() == expected, 60, what="the outage's deliveries to be created")
    failed_attempts = Attempt.objects.filter(outcome="failure", delivery__destination=destination).count()
    assert BreakerState.OPEN in states, f"the breaker never opened during the outage (seen: {states})"
    assert not Delivery.objects.filter(status=DeliveryStatus.DEAD).exists(), "a delivery was dead-lettered"
    assert len(webhook_receiver.accepted) == before, "something was accepted while the receiver was down"
    # The breaker is what keeps a down receiver cheap: far fewer attempts than deliveries held.
    assert failed_attempts < held, f"{failed_attempts} failed attempts for {held} held deliveries"

    # Back up: everything arrives, once.
    webhook_receiver.up()
    up_at = time.monotonic()
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=RECOVERY_TIMEOUT), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived {RECOVERY_TIMEOUT:.0f}s after up()"
    )
    last_arrival = max(r.at for r in webhook_receiver.requests if 200 <= r.status < 300)
    recovered_after = last_arrival - up_at
    head = devnet.w3.eth.block_number
    wait_for(lambda: (ChainCursor.objects.get(pk=chain_id).last_block_number or 0) >= head, 60, what="indexing")
    wait_for(
        lambda: set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED},
        30,
        what="every delivery recorded as succeeded",
    )
    verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_id, truth=pipeline.workload.truth())
    destination.refresh_from_db()
    assert destination.breaker_state == BreakerState.CLOSED
    refused = sum(1 for r in webhook_receiver.requests if not 200 <= r.status < 300)
    print(
        f"\nreceiver down {OUTAGE_SECONDS:.0f}s (cooldown {COOLDOWN_SECONDS}s, ladder "
        f"{RETRY_LADDER or 'production default'}): breaker open "
        f"{opened_at:.1f}s after down; {held} deliveries held, {failed_attempts} failed attempts, 0 dead; "
        f"all {verdict.distinct} delivered once ({verdict.resent} resent ids, {refused} refused requests), "
        f"last one {recovered_after:.1f}s after up(); test {time.monotonic() - started:.0f}s"
    )
