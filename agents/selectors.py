"""Read helpers other rooms use to see agents (triggers' conditions and templates)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from indexing.models import ChainEvent, ContractDeployment, Registry

from .models import Agent

__all__ = ("agent_exists", "agent_view", "agent_views_for_events")


def agent_view(agent: Agent) -> dict[str, Any]:
    """The agent as conditions and templates see it (JSON-safe)."""
    return {
        "id": agent.public_id,
        "chain_id": agent.chain_id,
        "agent_id": str(int(agent.agent_id)),
        "identity_address": agent.identity_address,
        "owner": agent.owner,
        "agent_uri": agent.agent_uri,
        "agent_wallet": agent.agent_wallet or None,
        "feedback_count": agent.feedback_count,
        "feedback_average": None if agent.feedback_average is None else str(agent.feedback_average.normalize()),
        "feedback_clients": agent.feedback_clients,
        "validation_count": agent.validation_count,
        "validation_average": None if agent.validation_average is None else str(agent.validation_average),
        "registered_at": agent.registered_at.isoformat() if agent.registered_at else None,
        "name": getattr(agent, "name", "") or "",
        "services": getattr(agent, "services", None) or [],
    }


def agent_views_for_events(events: list[ChainEvent]) -> dict[int, dict[str, Any]]:
    """event id → view of the agent it concerns, in one query per chain."""
    by_chain: dict[int, list[ChainEvent]] = defaultdict(list)
    for event in events:
        if event.agent_id is not None:
            by_chain[event.chain_id].append(event)
    out: dict[int, dict[str, Any]] = {}
    for chain_id, chain_events in by_chain.items():
        deployments = list(ContractDeployment.objects.filter(chain_id=chain_id))
        identity_of = {}
        fallback = next((d.address for d in deployments if d.registry == Registry.IDENTITY and d.enabled), "")
        for d in deployments:
            identity_of[d.address.lower()] = (
                d.address if d.registry == Registry.IDENTITY else (d.identity_address or fallback)
            )
        agents = {
            (a.identity_address, int(a.agent_id)): a
            for a in Agent.objects.filter(chain_id=chain_id, agent_id__in={e.agent_id for e in chain_events})
        }
        for event in chain_events:
            agent = agents.get((identity_of.get(event.address.lower(), ""), int(event.agent_id)))
            if agent is not None:
                out[event.pk] = agent_view(agent)
    return out


def agent_exists(*, chain_id: int, agent_id: int) -> bool:
    """Is this agent in the read model (on any identity registry of the chain)?
    Used before following an agent, so a typo is a 404, not a trigger that never fires."""
    if not (0 < chain_id < 2**63) or not (0 <= agent_id < 2**256):
        return False
    return Agent.objects.filter(chain_id=chain_id, agent_id=agent_id).exists()
