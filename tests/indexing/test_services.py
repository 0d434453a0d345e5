"""indexing/services.py: which chains beat asks to poll, and when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from indexing.models import ChainCursor
from indexing.services import chains_due_for_poll
from tests.fixtures.factories import make_chain

pytestmark = pytest.mark.django_db


def last_polled(chain, seconds_ago: float, now) -> None:
    ChainCursor.objects.update_or_create(
        chain=chain, defaults={"last_polled_at": now - timedelta(seconds=seconds_ago), "poll_requested_at": None}
    )


@pytest.mark.parametrize(
    ("interval", "seconds_ago", "due"),
    [
        # A 1 s chain on 1 s ticks: its last poll stamped itself a little after the
        # previous tick, so less than a full second has passed at this one — still due
        # (it used to wait for the next tick: polled every 2 s).
        (1.0, 0.9, True),
        (1.0, 0.3, False),
        (5.0, 4.0, False),
        (5.0, 4.7, True),
        (0.5, 0.9, True),
    ],
)
def test_a_chain_is_due_to_the_nearest_beat_tick(settings, interval, seconds_ago, due):
    settings.INDEXING_DISPATCH_INTERVAL = 1.0
    now = timezone.now()
    chain = make_chain()
    chain.poll_interval_seconds = interval
    chain.save()
    last_polled(chain, seconds_ago, now)
    assert chains_due_for_poll(now=now) == ([chain.chain_id] if due else [])


def test_a_requested_poll_is_not_requested_again_until_its_grace_ends():
    now = timezone.now()
    chain = make_chain()
    last_polled(chain, 60, now)
    assert chains_due_for_poll(now=now) == [chain.chain_id]
    assert chains_due_for_poll(now=now + timedelta(seconds=1)) == []
    assert chains_due_for_poll(now=now + timedelta(seconds=11)) == [chain.chain_id]
