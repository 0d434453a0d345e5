"""Celery entry points of the ``actions`` queue. Thin: they take ids and call services.

All are idempotent: a duplicate or re-delivered ``send_deliveries`` (or the older
one-delivery ``send_delivery``, kept for messages published before an upgrade) loses the claim
in ``delivery_send`` and does nothing; the beat tasks work on whatever rows are due.
``acks_late`` (settings) means a worker killed mid-send leaves the message to be
redelivered, and the row's lease to the sweeper — whichever comes first wins the
claim.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

__all__ = ("dispatch_deliveries", "send_deliveries", "send_delivery", "sweep_deliveries")


@shared_task(
    name="actions.tasks.send_delivery",
    acks_late=True,
    soft_time_limit=settings.ACTIONS_SEND_SOFT_TIME_LIMIT,
    time_limit=settings.ACTIONS_SEND_TIME_LIMIT,
)
def send_delivery(delivery_id: int) -> str:
    from .services import delivery_send

    return delivery_send(delivery_id=delivery_id)


@shared_task(
    name="actions.tasks.send_deliveries",
    acks_late=True,
    soft_time_limit=settings.ACTIONS_SEND_SOFT_TIME_LIMIT,
    time_limit=settings.ACTIONS_SEND_TIME_LIMIT,
)
def send_deliveries(delivery_ids: list[int]) -> dict[str, int]:
    """Up to ACTIONS_SEND_BATCH deliveries, sent concurrently; outcome → count."""
    from .services import deliveries_send

    return deliveries_send(delivery_ids=delivery_ids)


@shared_task(name="actions.tasks.dispatch_deliveries", acks_late=True, expires=5)
def dispatch_deliveries() -> int:
    """Beat, every second: publish due rows up to the queue's free capacity."""
    from .services import deliveries_dispatch_due

    return deliveries_dispatch_due()


@shared_task(name="actions.tasks.sweep_deliveries", acks_late=True, expires=20)
def sweep_deliveries() -> int:
    """Beat: recover rows whose sender died mid-attempt."""
    from .services import deliveries_sweep

    return deliveries_sweep()
