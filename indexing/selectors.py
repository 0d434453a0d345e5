"""Read helpers of the indexing room for the public API (chains and their state)."""

from __future__ import annotations

from dataclasses import dataclass

from .models import ContractDeployment
from .services import ChainStatus, chain_status_list

__all__ = ("ChainOverview", "chain_overview_list")


@dataclass(frozen=True)
class ChainOverview:
    status: ChainStatus
    deployments: list[ContractDeployment]


def chain_overview_list(*, chain_id: int | None = None) -> list[ChainOverview]:
    """Every configured chain's indexing status with its registry deployments — two
    queries whatever the number of chains."""
    statuses = [s for s in chain_status_list() if chain_id is None or s.chain_id == chain_id]
    deployments: dict[int, list[ContractDeployment]] = {}
    query = ContractDeployment.objects.order_by("chain_id", "registry", "address")
    if chain_id is not None:
        query = query.filter(chain_id=chain_id)
    for deployment in query:
        deployments.setdefault(deployment.chain_id, []).append(deployment)
    return [ChainOverview(status=s, deployments=deployments.get(s.chain_id, [])) for s in statuses]
