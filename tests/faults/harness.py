"""The one verdict every fault scenario ends with (issue 7, docs/reliability.md).

After the fault has passed and the system has settled:

1. every expected delivery arrived at its receiver — one distinct ``webhook-id``
   (the delivery's uuid, our idempotency key) per expected notification;
2. each ``webhook-id`` counts once after receiver-side dedup (a resend of the same
   id after a crash is allowed and reported: that is what the id is for), and no
   two deliveries exist for one (event, trigger, destination);
3. no unexpected delivery: every id the receiver accepted is a succeeded delivery
   of ours, and nothing else arrived;
4. the read model equals the chain's ground truth.

Sizes: each scenario has a CI size (the default; ``make test`` runs it) and a full
size (``FAULTS_FULL=1``, which ``make faults`` sets) — the same code, more load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from actions.models import Delivery, DeliveryKind, DeliveryStatus
from tests.fixtures.truth import read_model_diff

__all__ = ("FULL", "OFFLINE_ENV", "Verdict", "sized", "verdict_check")

FULL = os.environ.get("FAULTS_FULL") == "1"

# Environment for worker subprocesses (stack_env overrides): the workloads' agent and
# feedback files point at public names (ipfs://, https://….example.org) that the
# indexing worker tries to fetch. Keep that loopback-only and cheap, so a scenario
# measures its own fault and not the machine's DNS: IPFS through a closed loopback port
# (refused at once, no lookup), and a resolver that gives up after 1 s instead of 5 —
# a sandbox resolver that drops a query stalled the indexing worker (file fetches
# share its queue with polls) for 5 s per lookup, minutes at full size.
OFFLINE_ENV = {"IPFS_GATEWAYS": "http://127.0.0.1:9", "RES_OPTIONS": "timeout:1 attempts:1"}


def sized(ci: Any, full: Any) -> Any:
    """The CI size, or the full one under ``FAULTS_FULL=1``."""
    return full if FULL else ci


@dataclass
class Verdict:
    expected: int
    distinct: int
    resent: int  # ids that arrived more than once (deduplicated by the receiver)
    requests: int


def verdict_check(
    receiver: Any,
    *,
    expected: int,
    chain_id: int | None = None,
    truth: dict[str, Any] | None = None,
    kind: str = DeliveryKind.NOTIFICATION,
) -> Verdict:
    """Assert the four properties above for a webhook receiver (tests/fixtures/receivers.py)
    and return the counts the scenario reports."""
    accepted = dict(receiver.accepted)
    assert all(r.verified for r in receiver.requests), "a request with a bad signature arrived"
    ours = dict(Delivery.objects.filter(uuid__in=list(accepted), kind=kind).values_list("uuid", "status"))
    unknown = set(accepted) - {str(u) for u in ours}
    assert not unknown, f"{len(unknown)} unexpected deliveries arrived, e.g. {sorted(unknown)[:3]}"
    assert len(accepted) == expected, f"{len(accepted)} distinct deliveries arrived, {expected} expected"
    not_done = [str(u) for u, status in ours.items() if status != DeliveryStatus.SUCCEEDED]
    assert not not_done, f"{len(not_done)} arrived but are not recorded as succeeded: {not_done[:3]}"
    if chain_id is not None and truth is not None:
        assert read_model_diff(truth, chain_id=chain_id) == []
    return Verdict(
        expected=expected,
        distinct=len(accepted),
        resent=sum(1 for n in accepted.values() if n > 1),
        requests=len(receiver.requests),
    )
