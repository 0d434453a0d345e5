"""Fault scenario 5: reorgs of depth 1 to 5 while triggers fire (docs/reliability.md).

Issue text: "Reorgs of depth 1 to 5 while triggers fire (confirmations 0): retractions
sent for every delivery of an orphaned event, none for the others."

The stack runs as deployed (a Celery worker per queue and beat, subprocesses on a
private ``redis-server``) and follows a devnet at the tip (confirmations 0). Each
round, with anvil's snapshot/revert (``Workload.snapshot``/``revert`` keep the ground
truth in step with the chain):

1. snapshot; a branch of transactions mined in one block, padded with empty blocks to
   ``depth`` blocks; wait until the indexer has it and its first notifications arrived
   (the receiver answers slowly, so the rest of the branch's deliveries are still
   waiting in the outbox);
2. revert and mine a *different* branch (the workload's random stream goes on), one
   block longer: a reorg of exactly ``depth`` blocks for the indexer.

Verdict (the product's rule, actions/services.py ``delivery_retract``): a notification
of an orphaned event that was attempted gets exactly one retraction (kind
``retraction``, webhook ``event.retracted`` whose ``retracts`` names the original's
delivery id); one never attempted is cancelled instead and never reaches the
receiver; every notification of an event that stayed canonical arrived exactly once
and was never retracted; the read model equals the final chain's truth.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from actions.models import Delivery, DeliveryKind, DeliveryStatus
from indexing.models import ChainCursor, ChainEvent
from tests.faults.harness import OFFLINE_ENV, sized, verdict_check
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for
from triggers.models import EventEvaluation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

DEPTHS = sized([1, 2, 3, 4, 5], [1, 2, 3, 4, 5] * 4)
BRANCH_OPS = sized(24, 40)  # transactions per branch (about a third are feedback: notifications)


@dataclass
class _ReceiverView:
    """The part of a WebhookReceiver's record that belongs to some deliveries (by
    webhook-id), so the harness verdict can be run per delivery kind."""

    accepted: Counter = field(default_factory=Counter)
    requests: list = field(default_factory=list)


def _view(receiver, ids: set[str]) -> _ReceiverView:
    return _ReceiverView(
        accepted=Counter({k: v for k, v in receiver.accepted.items() if k in ids}),
        requests=[r for r in receiver.requests if r.webhook_id in ids],
    )


def _feedback(truth: dict) -> int:
    return low_feedback_count(truth, every_feedback=True)


def _mine_to(w3, number: int) -> None:
    """Pad with empty blocks up to ``number``."""
    missing = number - w3.eth.block_number
    assert missing >= 0, "the branch took more blocks than the reorg depth: make it smaller"
    if missing:
        w3.provider.make_request("anvil_mine", [hex(missing)])


def _indexed_to_head(chain_id: int, w3) -> bool:
    head = w3.eth.get_block("latest")
    cursor = ChainCursor.objects.filter(pk=chain_id).first()  # created by the first poll
    if cursor is None:
        return False
    return cursor.last_block_number == head["number"] and cursor.last_block_hash == w3.to_hex(head["hash"])


@pytest.mark.timeout(sized(240, 900))
def test_reorgs_of_depth_1_to_5_retract_exactly_the_orphaned_deliveries(
    devnet_factory, webhook_receiver, redis_server, process_group
):
    started = time.monotonic()
    devnet = devnet_factory()
    w3 = devnet.w3
    pipeline = pipeline_build(devnet, webhook_receiver, seed=55, every_feedback=True)
    workload = pipeline.workload
    chain_id = pipeline.chain.chain_id
    assert pipeline.chain.confirmations == 0
    group = process_group
    group.env = stack_env(redis_server, **OFFLINE_ENV)
    group.worker("indexing")
    group.worker("triggers")
    group.worker("actions")  # one sender: the branch's notifications go out one by one
    group.beat()

    orphaned = Counter()  # "feedback": matching events on branches that lost (from the truths)
    rounds: list[str] = []

    def settled() -> bool:
        expected_notifications = _feedback(workload.truth()) + orphaned["feedback"]
        removed = ChainEvent.objects.filter(chain_id=chain_id, removed=True).count()
        return (
            _indexed_to_head(chain_id, w3)
            and Delivery.objects.filter(kind=DeliveryKind.NOTIFICATION).count() == expected_notifications
            and EventEvaluation.objects.filter(phase=EventEvaluation.Phase.REMOVED).count() == removed
            and not Delivery.objects.filter(
                status__in=(DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING)
            ).exists()
        )

    def reorg_round(depth: int) -> None:
        """One reorg of exactly ``depth`` blocks."""
        wait_for(settled, 90, what="the previous round to settle")
        t0 = time.monotonic()
        reorgs_before = ChainCursor.objects.get(pk=chain_id).reorg_count
        at_snapshot = _feedback(workload.truth())
        token = workload.snapshot()
        base = w3.eth.block_number
        arrived_before = len(webhook_receiver.accepted)

        # The branch that will lose, indexed and partly delivered.
        webhook_receiver.slow(0.4)
        workload.run(BRANCH_OPS)
        _mine_to(w3, base + depth)
        branch = _feedback(workload.truth()) - at_snapshot
        assert branch >= 2, "the branch holds too few notifications: make it longer"
        wait_for(
            lambda: (
                ChainCursor.objects.get(pk=chain_id).last_block_number == base + depth
                and len(webhook_receiver.accepted) > arrived_before
            ),
            60,
            what="the branch to be indexed and its first notification delivered",
        )

        # The reorg: a different branch, one block longer.
        workload.revert(token)
        assert _feedback(workload.truth()) == at_snapshot  # the truth is the final chain's again
        workload.run(BRANCH_OPS)
        _mine_to(w3, base + depth + 1)
        orphaned["feedback"] += branch
        wait_for(
            lambda: ChainCursor.objects.get(pk=chain_id).reorg_count > reorgs_before,
            60,
            what=f"the depth-{depth} reorg to be detected",
        )
        removed = list(ChainEvent.objects.filter(chain_id=chain_id, removed=True).values_list("pk", flat=True))
        wait_for(
            lambda: (
                EventEvaluation.objects.filter(phase=EventEvaluation.Phase.REMOVED, event_id__in=removed).count()
                == len(removed)
            ),
            60,
            what="the removed events' retractions",
        )
        webhook_receiver.slow(0)
        wait_for(settled, 90, what="the round to settle")
        cursor = ChainCursor.objects.get(pk=chain_id)
        assert cursor.reorg_count == reorgs_before + 1
        assert cursor.last_reorg_depth == depth
        rounds.append(f"d{depth}:{branch} orphaned/{time.monotonic() - t0:.1f}s")
        print(f"round {len(rounds)}: {rounds[-1]}", flush=True)

    workload.run(BRANCH_OPS)  # some history first
    for depth in DEPTHS:
        reorg_round(depth)

    # The verdict.
    wait_for(settled, 90, what="everything to settle")
    final_truth = workload.truth()
    removed_ids = set(ChainEvent.objects.filter(chain_id=chain_id, removed=True).values_list("pk", flat=True))
    notifications = list(Delivery.objects.filter(kind=DeliveryKind.NOTIFICATION))
    retractions = {d.retracts_id: d for d in Delivery.objects.filter(kind=DeliveryKind.RETRACTION)}
    assert len(retractions) == Delivery.objects.filter(kind=DeliveryKind.RETRACTION).count(), "two retractions of one"
    orphaned_deliveries = [d for d in notifications if d.event_id in removed_ids]
    canonical = [d for d in notifications if d.event_id not in removed_ids]
    assert len(orphaned_deliveries) == orphaned["feedback"]
    assert len(canonical) == _feedback(final_truth)

    # Canonical: delivered, never retracted.
    assert all(d.status == DeliveryStatus.SUCCEEDED for d in canonical)
    assert not [d for d in canonical if d.pk in retractions], "a canonical event's delivery was retracted"
    # Orphaned and attempted: exactly one retraction naming it, delivered. Never attempted: cancelled, unsent.
    sent = [d for d in orphaned_deliveries if d.attempt_count > 0]
    cancelled = [d for d in orphaned_deliveries if d.attempt_count == 0]
    for original in sent:
        retraction = retractions.get(original.pk)
        assert retraction is not None, f"delivery {original.uuid} of an orphaned event was never retracted"
        assert retraction.status == DeliveryStatus.SUCCEEDED
        body = json.loads(retraction.payload["body"])
        assert (body["type"], body["retracts"]) == ("event.retracted", str(original.uuid))
    for original in cancelled:
        assert original.status == DeliveryStatus.CANCELLED
        assert original.pk not in retractions
        assert webhook_receiver.arrivals[str(original.uuid)] == 0
    assert sent, "no orphaned delivery had been sent before its reorg"

    notification_ids = {str(d.uuid) for d in notifications}
    retraction_ids = {str(d.uuid) for d in retractions.values()}
    assert set(webhook_receiver.accepted) <= notification_ids | retraction_ids, "an unknown delivery arrived"
    delivered = len(canonical) + sum(1 for d in sent if d.status == DeliveryStatus.SUCCEEDED)
    verdict = verdict_check(
        _view(webhook_receiver, notification_ids), expected=delivered, chain_id=chain_id, truth=final_truth
    )
    retracted = verdict_check(_view(webhook_receiver, retraction_ids), expected=len(sent), kind=DeliveryKind.RETRACTION)
    print(
        f"\n{len(DEPTHS)} reorgs (depths {','.join(map(str, DEPTHS))}) at confirmations 0: "
        f"{len(orphaned_deliveries)} notifications of orphaned events — {len(sent)} sent and retracted once each, "
        f"{len(cancelled)} cancelled unsent; {len(canonical)} canonical delivered once, 0 retracted "
        f"({verdict.resent + retracted.resent} resent ids); rounds {' '.join(rounds)}; "
        f"test {time.monotonic() - started:.0f}s"
    )
