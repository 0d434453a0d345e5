"""``GET /api/v1/status/``: every room contributes its counts (erc8004/status.py),
which is what ``make run``'s progress line prints."""

from __future__ import annotations

import pytest

from erc8004 import status
from tests.fixtures.factories import make_chain, make_feedback_event

pytestmark = pytest.mark.django_db


def test_every_room_contributes_to_the_status(client):
    make_chain()
    make_feedback_event()
    body = client.get("/api/v1/status/").json()
    assert body["chains"][0]["chain_id"] == 31337
    assert body["events"] == 1
    assert body["agents"] == 0  # the factory stores the event only; projections run in the poller
    assert body["matches"] == 0
    assert body["deliveries"] == 0
    assert body["dead_letters"] == 0
    assert "errors" not in body


def test_a_failing_contributor_is_reported_not_fatal(client):
    def broken():
        raise RuntimeError("boom")

    status.status_contributor(broken)
    try:
        body = client.get("/api/v1/status/").json()
    finally:
        status._CONTRIBUTORS.remove(broken)
    assert any("boom" in error for error in body["errors"])
    assert "events" in body
