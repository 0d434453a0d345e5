"""Indexing's part of ``/api/v1/status/`` (registered in IndexingConfig.ready)."""

from __future__ import annotations

from typing import Any

from erc8004.status import status_contributor

from .models import ChainEvent
from .services import chain_status_list


@status_contributor
def indexing_status() -> dict[str, Any]:
    chains = [
        {
            "chain_id": s.chain_id,
            "name": s.name,
            "head_block": s.head_block,
            "indexed_block": s.indexed_block,
            "lag_blocks": s.lag_blocks,
            "last_error": s.last_error[:200],
        }
        for s in chain_status_list()
        if s.enabled
    ]
    return {"chains": chains, "events": ChainEvent.objects.filter(removed=False).count()}
