"""Receivers of indexing signals (the list of listeners is in indexing/signals.py).

Projections run inside the indexer's transaction: an event and what it changed in
the read model commit together or not at all.
"""

from __future__ import annotations

from django.dispatch import receiver

from indexing.signals import events_indexed, events_removed

from .projections import projection_apply, projection_rebuild_agents


@receiver(events_indexed, dispatch_uid="agents.project_indexed")
def project_indexed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    projection_apply(chain_id=chain_id, events=events)


@receiver(events_removed, dispatch_uid="agents.project_removed")
def project_removed(sender, *, chain_id: int, events: list, **kwargs) -> None:
    projection_rebuild_agents(chain_id=chain_id, events=events)
