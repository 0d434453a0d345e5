"""Receivers of indexing signals (the list of listeners is in indexing/signals.py).

Projections run inside the indexer's transaction: an event and what it changed in
the read model commit together or not at all. The same transaction marks the
registration and feedback files to fetch as pending (so a crash can never lose a
fetch: the sweeper finds pending rows); the fetch messages are sent after commit —
network work never runs inside the indexer's batch.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.dispatch import receiver

from indexing.signals import events_indexed, events_removed

from .projections import projection_apply, projection_rebuild_agents
from .services import feedback_files_schedule, registration_files_schedule
from .tasks import enqueue_file_fetches

logger = logging.getLogger("erc8004.agents.receivers")


def _schedule_fetches(
    *, agent_pks: list[int], feedback_pks: list[int], feedback_uris: dict[int, str] | None = None
) -> None:
    to_fetch_agents = registration_files_schedule(agent_pks=agent_pks) if agent_pks else []
    to_fetch_feedback = (
        feedback_files_schedule(feedback_pks=feedback_pks, known_uris=feedback_uris) if feedback_pks else []
    )
    if to_fetch_agents or to_fetch_feedback:
        transaction.on_commit(
            partial(enqueue_file_fetches, agent_pks=to_fetch_agents, feedback_pks=to_fetch_feedback), robust=True
        )


@receiver(events_indexed, dispatch_uid="agents.project_indexed")
def project_indexed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    result = projection_apply(chain_id=chain_id, events=events)
    _schedule_fetches(
        agent_pks=result.uri_agent_pks,
        feedback_pks=list(result.file_feedback_uris),
        feedback_uris=result.file_feedback_uris,
    )


@receiver(events_removed, dispatch_uid="agents.project_removed")
def project_removed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    """A reorg may have put an agent's URI back: the schedule compares and only
    fetches where the URI differs from the file row's."""
    rebuilt = projection_rebuild_agents(chain_id=chain_id, events=events)
    _schedule_fetches(agent_pks=rebuilt, feedback_pks=[])
