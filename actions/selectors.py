"""Read-side queries of the actions room (for the API, the admin and triggers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count, QuerySet

from erc8004.models import Organization

from .models import Delivery, DeliveryStatus, Destination

__all__ = (
    "DeliveryCounts",
    "deliveries_for_match",
    "delivery_counts",
    "delivery_get",
    "delivery_list",
    "destination_list",
)


def destination_list(*, organization: Organization) -> QuerySet[Destination]:
    return Destination.objects.filter(organization=organization).order_by("name")


def delivery_list(
    *,
    organization: Organization,
    status: str | None = None,
    destination_id: int | None = None,
    channel: str | None = None,
) -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(organization=organization).select_related("destination")
    if status:
        qs = qs.filter(status=status)
    if destination_id:
        qs = qs.filter(destination_id=destination_id)
    if channel:
        qs = qs.filter(destination__channel=channel)
    return qs.order_by("-created_at", "-id")


def delivery_get(*, organization: Organization, delivery_uuid: uuid.UUID | str) -> Delivery:
    return Delivery.objects.select_related("destination").get(organization=organization, uuid=delivery_uuid)


def deliveries_for_match(*, match_id: int) -> QuerySet[Delivery]:
    """A match's deliveries (what triggers retracts when its event is removed)."""
    return Delivery.objects.filter(match_id=match_id).order_by("id")


@dataclass(frozen=True)
class DeliveryCounts:
    pending: int = 0
    sending: int = 0
    retrying: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0


def delivery_counts(*, organization: Organization | None = None) -> DeliveryCounts:
    """Outbox size by status (the runbook's first question: is anything stuck?)."""
    qs = Delivery.objects.all() if organization is None else Delivery.objects.filter(organization=organization)
    rows = dict(qs.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return DeliveryCounts(**{status: rows.get(status, 0) for status in DeliveryStatus.values})
