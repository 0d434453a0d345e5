"""Receivers of indexing signals (the list of listeners is in indexing/signals.py).

Projections run inside the indexer's transaction: an event and what it changed in
the read model commit together or not at all. File fetches are scheduled after the
commit (``events_committed``): network work never runs inside the indexer's batch.
"""

from __future__ import annotations

import logging

from django.dispatch import receiver

from indexing.signals import events_committed, events_indexed, events_removed

from .projections import projection_apply, projection_rebuild_agents
from .services import file_fetches_for_events
from .tasks import enqueue_file_fetches

logger = logging.getLogger("erc8004.agents.receivers")


@receiver(events_indexed, dispatch_uid="agents.project_indexed")
def project_indexed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    projection_apply(chain_id=chain_id, events=events)


@receiver(events_removed, dispatch_uid="agents.project_removed")
def project_removed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    projection_rebuild_agents(chain_id=chain_id, events=events)


@receiver(events_committed, dispatch_uid="agents.schedule_file_fetch")
def schedule_file_fetch(sender, *, chain_id: int, event_ids: list, removed_event_ids: list, **kwargs) -> None:
    """After the indexer commits: fetch the registration files of agents whose URI
    changed (registered, URI updated, or reverted by a reorg) and the files of new
    feedback. Rows are marked pending before anything is enqueued, and nothing here
    raises: a failure leaves pending rows that the sweeper sends later, and must not
    stop the receivers after this one (triggers)."""
    try:
        agent_pks, feedback_pks = file_fetches_for_events(
            chain_id=chain_id, event_ids=event_ids, removed_event_ids=removed_event_ids
        )
    except Exception:
        logger.exception("scheduling file fetches for chain %s failed; the sweeper will catch up", chain_id)
        return
    enqueue_file_fetches(agent_pks=agent_pks, feedback_pks=feedback_pks)
