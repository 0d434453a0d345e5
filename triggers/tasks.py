"""Celery entry points of the triggers queue. Thin: they take ids and call services."""

from __future__ import annotations

from celery import shared_task

__all__ = ("evaluate_events", "process_confirmations", "retract_events", "sweep_evaluations")

# Evaluations are enqueued in batches of this many event ids: large enough that the
# per-transaction cost is shared, small enough that one task stays well under a second.
EVALUATION_BATCH = 500


@shared_task(name="triggers.tasks.evaluate_events")
def evaluate_events(event_ids: list[int]) -> int:
    from .services import events_evaluate

    return events_evaluate(event_ids=event_ids).matches


@shared_task(name="triggers.tasks.retract_events")
def retract_events(event_ids: list[int]) -> int:
    from .services import events_retract

    return events_retract(event_ids=event_ids)


@shared_task(name="triggers.tasks.process_confirmations", expires=10)
def process_confirmations() -> int:
    from .services import pending_confirmations_process

    return pending_confirmations_process()


@shared_task(name="triggers.tasks.sweep_evaluations", expires=30)
def sweep_evaluations() -> tuple[int, int]:
    """The runbook's "polling fallback": re-enqueue what a lost message left behind."""
    from django.conf import settings

    from .services import triggers_sweep

    to_evaluate, to_retract = triggers_sweep(older_than_seconds=settings.TRIGGERS_SWEEP_GRACE_SECONDS)
    for start in range(0, len(to_evaluate), EVALUATION_BATCH):
        evaluate_events.delay(to_evaluate[start : start + EVALUATION_BATCH])
    for start in range(0, len(to_retract), EVALUATION_BATCH):
        retract_events.delay(to_retract[start : start + EVALUATION_BATCH])
    return len(to_evaluate), len(to_retract)
