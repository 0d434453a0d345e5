"""The agents room's part of ``/api/v1/status/`` (registered in AgentsConfig.ready):
how many agents the read model holds, for ``make run``'s progress line."""

from __future__ import annotations

from typing import Any

from erc8004.status import status_contributor

from .models import Agent


@status_contributor
def agents_status() -> dict[str, Any]:
    return {"agents": Agent.objects.count()}
