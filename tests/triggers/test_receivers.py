"""End to end, the way production runs it: a devnet chain, the poller, the indexer's
commit hook (triggers/receivers.py) enqueueing evaluation on the real broker, a real
Celery worker evaluating and delivering, and a real Standard Webhooks receiver that
verifies signatures and counts idempotency keys. Then a reorg, and its retractions.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from web3 import HTTPProvider, Web3

from actions.models import Delivery
from actions.services import destination_create
from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
from indexing.devnet.workload import Workload
from indexing.poller import chain_poll
from tests.fixtures.factories import make_org
from triggers.models import Match
from triggers.services import ActionSpec, trigger_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def poll_until_caught_up(chain_id: int) -> None:
    for _ in range(100):
        result = chain_poll(chain_id=chain_id)
        assert result.outcome != "error", result.error
        if not result.behind and result.outcome not in ("busy", "retry"):
            return
    raise AssertionError("indexer did not catch up")


def low_feedback(truth: dict, threshold: Decimal = Decimal(50)) -> set[tuple]:
    keys = set()
    for f in truth["feedback"]:
        value = Decimal(f"{f['value']}e-{f['value_decimals']}")
        if value < threshold:
            keys.add((f["agent_id"], f["registry"], f["client"], f["feedback_index"]))
    return keys


def test_feedback_below_a_threshold_reaches_the_receiver_once_each_and_reorgs_retract(
    anvil_factory, celery_worker, webhook_receiver
):
    anvil = anvil_factory(accounts=20, gas_limit=300_000_000)
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    deployment = devnet_deploy(w3=w3)
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=deployment)
    org = make_org()
    hook = destination_create(
        organization=org, name="receiver", channel="webhook", config={"url": webhook_receiver.url}
    )
    webhook_receiver.secrets.append(hook.secret.reveal())
    trigger_create(
        organization=org,
        name="feedback below 50",
        event_types=["NewFeedback"],
        conditions={"type": "value_threshold", "op": "lt", "value": 50},
        actions=[ActionSpec(destination=hook)],
    )
    workload = Workload(w3, deployment, seed=11)

    # Phase 1: a history, indexed; every low feedback arrives exactly once, signed.
    workload.run(150)
    poll_until_caught_up(chain.chain_id)
    expected = len(low_feedback(workload.truth()))
    assert expected > 0
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=60), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived"
    )
    assert all(request.verified for request in webhook_receiver.requests)
    assert set(webhook_receiver.accepted.values()) == {1}
    bodies = [json.loads(r.body) for r in webhook_receiver.requests]
    assert {b["type"] for b in bodies} == {"event.matched"}
    assert all(Decimal(b["event"]["args"]["valueNormalized"]) < 50 for b in bodies)

    # Phase 2: a branch with more low feedback is delivered, then orphaned by a reorg.
    delivered_before = set(webhook_receiver.accepted)
    token = workload.snapshot()
    workload.run(60)
    w3.provider.make_request("anvil_mine", ["0x1"])
    poll_until_caught_up(chain.chain_id)
    orphaned_expected = len(low_feedback(workload.truth())) - expected
    assert orphaned_expected > 0
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected + orphaned_expected, timeout=60)
    orphan_ids = set(webhook_receiver.accepted) - delivered_before
    workload.revert(token)
    workload.run(20)
    w3.provider.make_request("anvil_mine", ["0x3"])
    poll_until_caught_up(chain.chain_id)

    def retracted(receiver) -> set[str]:
        return {
            body["retracts"]
            for body in (json.loads(r.body) for r in receiver.requests if 200 <= r.status < 300)
            if body.get("type") == "event.retracted"
        }

    assert webhook_receiver.wait_for(lambda r: retracted(r) >= orphan_ids, timeout=60), (
        f"retracted {len(retracted(webhook_receiver))} of {len(orphan_ids)}"
    )
    # Exactly the orphaned deliveries were retracted, each once; none of the others.
    assert retracted(webhook_receiver) == orphan_ids
    assert Match.objects.filter(status=Match.Status.RETRACTED).count() == len(orphan_ids)
    final_expected = low_feedback(workload.truth())
    fired = Match.objects.exclude(status=Match.Status.RETRACTED).count()
    assert fired == len(final_expected)
    assert webhook_receiver.wait_for(
        lambda r: (
            len(set(r.accepted) - delivered_before - orphan_ids) >= len(final_expected) - expected + len(orphan_ids)
        ),
        timeout=60,
    )
    assert set(webhook_receiver.accepted.values()) == {1}
    assert not Delivery.objects.filter(status="dead").exists()
