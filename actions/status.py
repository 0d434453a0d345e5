"""What operators see of the actions room, registered in ActionsConfig.ready: its
part of ``/api/v1/status/``, its health checks and its scrape-time metrics — the
outbox as PostgreSQL holds it now (counters of what happened live in
erc8004/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from erc8004.health import FAIL, OK, WARN, CheckResult, health_check
from erc8004.metrics import gauge, scrape_collector
from erc8004.status import status_contributor

from .models import WAITING_STATUSES, BreakerState, Delivery, DeliveryStatus, Destination

# Breaker state as a number, for graphs and the "any breaker open" alert.
BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
# Statuses counted at every scrape. Succeeded and cancelled rows are history (their
# rates are erc8004_deliveries_total); counting them would scan the whole table.
_CURRENT_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING, DeliveryStatus.DEAD)


@status_contributor
def actions_status() -> dict[str, Any]:
    return {
        "deliveries": Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count(),
        "deliveries_waiting": Delivery.objects.filter(status__in=WAITING_STATUSES).count(),
        "dead_letters": Delivery.objects.filter(status=DeliveryStatus.DEAD).count(),
    }


def _oldest_due_seconds() -> float | None:
    """How long the most overdue waiting delivery has been due (None: nothing due)."""
    now = timezone.now()
    oldest = (
        Delivery.objects.filter(status__in=WAITING_STATUSES, next_attempt_at__lte=now, destination__enabled=True)
        .filter(destination__breaker_state=BreakerState.CLOSED)
        .aggregate(oldest=Min("next_attempt_at"))["oldest"]
    )
    return None if oldest is None else (now - oldest).total_seconds()


@health_check("deliveries")
def deliveries_health(deep: bool) -> Iterable[CheckResult]:
    """Due deliveries not attempted for too long mean no sender is working (the
    actions workers are down or swamped); open breakers and dead letters are for a
    person to look at, not an outage of ours."""
    overdue = _oldest_due_seconds()
    limit = settings.HEALTH_DELIVERY_MAX_DELAY_SECONDS
    data: dict[str, Any] = {"oldest_due_seconds": None if overdue is None else round(overdue, 1)}
    if overdue is not None and overdue > limit:
        yield CheckResult("deliveries", FAIL, f"a due delivery has waited {overdue:.0f}s (> {limit:.0f}s)", data)
    else:
        yield CheckResult("deliveries", OK, "nothing overdue", data)
    open_breakers = list(
        Destination.objects.exclude(breaker_state=BreakerState.CLOSED).values_list("pk", "name", "breaker_state")
    )
    if open_breakers:
        names = ", ".join(f"{name} (#{pk}, {state})" for pk, name, state in open_breakers[:10])
        yield CheckResult(
            "breakers",
            WARN,
            f"{len(open_breakers)} not closed: {names}",
            {"destinations": [pk for pk, *_ in open_breakers]},
        )
    else:
        yield CheckResult("breakers", OK, "all closed")


@scrape_collector
def outbox_metrics() -> Iterable[Metric]:
    # One query per group, each matching one partial index of Delivery (due, lease,
    # dead), so a scrape never scans the history of succeeded rows.
    rows = []
    for group in (WAITING_STATUSES, (DeliveryStatus.SENDING,), (DeliveryStatus.DEAD,)):
        rows += list(
            Delivery.objects.filter(status__in=group)
            .values_list("destination__channel", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
    current = GaugeMetricFamily(
        "erc8004_outbox_deliveries",
        "Deliveries in the outbox now, by channel and status (pending, sending, retrying, dead)",
        labels=["channel", "status"],
    )
    counts = {(channel, status): n for channel, status, n in rows}
    pending = dead = 0
    for channel in ("telegram", "webhook", "mcp"):
        for status in _CURRENT_STATUSES:
            n = counts.get((channel, status), 0)
            current.add_metric([channel, status], n)
            pending += n if status in WAITING_STATUSES else 0
            dead += n if status == DeliveryStatus.DEAD else 0
    yield current
    yield gauge("erc8004_outbox_pending_rows", "Deliveries waiting to be sent (pending + retrying)", None, pending)
    yield gauge("erc8004_outbox_dead_letters", "Dead-lettered deliveries (replayable from the admin)", None, dead)
    overdue = _oldest_due_seconds()
    yield gauge(
        "erc8004_outbox_oldest_due_seconds",
        "How long the most overdue sendable delivery has been due",
        None,
        overdue or 0,
    )

    breaker = GaugeMetricFamily(
        "erc8004_destination_breaker_state",
        "Circuit breaker per destination: 0 closed, 1 half-open, 2 open",
        labels=["destination", "channel"],
    )
    destinations = Destination.objects.order_by("pk").values_list("pk", "channel", "breaker_state")
    if Destination.objects.count() > settings.METRICS_DESTINATION_SERIES_MAX:
        destinations = destinations.exclude(breaker_state=BreakerState.CLOSED)
    by_state = dict.fromkeys(BREAKER_VALUE, 0)
    for pk, channel, state in destinations:
        breaker.add_metric([str(pk), channel], BREAKER_VALUE.get(state, 0))
    for state, n in Destination.objects.values_list("breaker_state").annotate(n=Count("id")).order_by():
        by_state[state] = n
    yield breaker
    totals = GaugeMetricFamily("erc8004_destinations", "Destinations by breaker state", labels=["breaker_state"])
    for state, n in by_state.items():
        totals.add_metric([str(state)], n)
    yield totals
