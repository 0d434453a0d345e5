"""indexing/tasks.py: a nudged poll (the new-heads listener's) that meets a running
poll is not lost — it retries until a poll has seen its head.

The "running poll" is a lease held by another owner that never saw the new head,
released right after the nudge met it; the real worker runs the retries.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from web3 import HTTPProvider, Web3

from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
from indexing.models import ChainCursor
from indexing.tasks import poll_chain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_a_nudge_that_meets_a_running_poll_retries_until_the_head_is_seen(anvil_factory, celery_worker):
    anvil = anvil_factory()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=devnet_deploy(w3=w3))
    w3.provider.make_request("evm_mine", [])
    head = w3.eth.block_number
    ChainCursor.objects.update_or_create(
        chain=chain,
        defaults={"lease_owner": "a-running-poll", "lease_until": timezone.now() + timedelta(seconds=60)},
    )

    # The nudge itself, run here: it finds the lease taken, enqueues its retry, and the
    # running poll "ends" (the lease is released) without having seen the head.
    assert poll_chain.apply((chain.chain_id,), {"head": head}).get() == "busy"
    assert ChainCursor.objects.get(pk=chain.chain_id).head_block is None
    ChainCursor.objects.filter(pk=chain.chain_id).update(lease_owner="", lease_until=None)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cursor = ChainCursor.objects.get(pk=chain.chain_id)
        if cursor.last_block_number is not None and cursor.last_block_number >= head:
            break
        time.sleep(0.05)
    assert cursor.head_block >= head
    assert cursor.last_block_number >= head  # a retry of the nudge polled, with no beat running
