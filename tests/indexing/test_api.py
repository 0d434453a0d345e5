"""indexing/api.py: /api/v1/chains/ shows each configured chain's indexing state
(head, indexed block, lag, last error) and its registry deployments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from indexing.models import Chain, ChainCursor, ContractDeployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def chains():
    live = Chain.objects.create(chain_id=900001, name="live", confirmations=2)
    ContractDeployment.objects.create(chain=live, registry="identity", address="0x" + "11" * 20, start_block=5)
    ContractDeployment.objects.create(
        chain=live, registry="reputation", address="0x" + "22" * 20, identity_address="0x" + "11" * 20
    )
    ChainCursor.objects.create(
        chain=live,
        head_block=1000,
        last_block_number=990,
        last_success_at=timezone.now() - timedelta(seconds=30),
        last_error="rpc timeout",
        last_error_at=timezone.now(),
    )
    Chain.objects.create(chain_id=900002, name="idle", enabled=False)
    return live


def by_id(rows: list[dict]) -> dict[int, dict]:
    return {row["chain_id"]: row for row in rows}


def test_chain_list(client, chains, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        response = client.get("/api/v1/chains/")
    assert response.status_code == 200
    rows = by_id(response.json())
    live = rows[900001]
    assert (live["head_block"], live["indexed_block"], live["lag_blocks"]) == (1000, 990, 10)
    assert 29 <= live["lag_seconds"] < 60
    assert live["last_error"] == "rpc timeout"
    assert [d["registry"] for d in live["deployments"]] == ["identity", "reputation"]
    assert live["deployments"][0]["start_block"] == 5
    idle = rows[900002]
    assert idle["enabled"] is False
    assert idle["head_block"] is None
    assert idle["deployments"] == []


def test_enabled_filter_and_detail(client, chains):
    enabled = {row["chain_id"] for row in client.get("/api/v1/chains/?enabled=true").json()}
    assert 900001 in enabled
    assert 900002 not in enabled
    assert client.get("/api/v1/chains/?enabled=maybe").status_code == 400
    assert client.get("/api/v1/chains/900001/").json()["name"] == "live"
    missing = client.get("/api/v1/chains/12345678/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
