"""Receivers of indexing signals (the list of listeners is in indexing/signals.py)."""

from __future__ import annotations

from django.dispatch import receiver

from indexing.signals import events_committed

from .tasks import EVALUATION_BATCH, evaluate_events, retract_events


@receiver(events_committed, dispatch_uid="triggers.schedule_evaluation")
def schedule_evaluation(sender, *, chain_id: int, event_ids: list, removed_event_ids: list, **kwargs) -> None:
    """After the indexer commits: evaluate new events, retract removed ones. A message
    lost here is found again by ``sweep_evaluations``."""
    for start in range(0, len(event_ids), EVALUATION_BATCH):
        evaluate_events.delay(event_ids[start : start + EVALUATION_BATCH])
    for start in range(0, len(removed_event_ids), EVALUATION_BATCH):
        retract_events.delay(removed_event_ids[start : start + EVALUATION_BATCH])
