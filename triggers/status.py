"""What operators see of the triggers room, registered in TriggersConfig.ready: its
part of ``/api/v1/status/`` (matches), its health check and its scrape-time metrics
— are indexed events being evaluated (the seed's incident 2, "events not being
processed")?"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Min
from django.utils import timezone
from prometheus_client.core import Metric

from erc8004.health import FAIL, OK, CheckResult, health_check
from erc8004.metrics import gauge, scrape_collector
from erc8004.status import status_contributor
from indexing.models import ChainEvent

from .models import EventEvaluation, Match

# Only recent events are looked at: older ones are the sweeper's (24 h horizon), and a
# bounded window keeps the anti-join cheap on a table of millions of events.
_HORIZON = timedelta(hours=1)
# Counting stops here: "more than this many" is all an alert needs.
_COUNT_CAP = 100_000


@status_contributor
def triggers_status() -> dict[str, Any]:
    return {"matches": Match.objects.exclude(status=Match.Status.RETRACTED).count()}


def _unevaluated():
    now = timezone.now()
    evaluated = EventEvaluation.objects.filter(phase=EventEvaluation.Phase.INDEXED).values("event_id")
    return ChainEvent.objects.filter(indexed_at__gte=now - _HORIZON, removed=False).exclude(pk__in=evaluated), now


def _oldest_unevaluated_seconds() -> tuple[float | None, Any]:
    queryset, now = _unevaluated()
    oldest = queryset.aggregate(oldest=Min("indexed_at"))["oldest"]
    return (None if oldest is None else (now - oldest).total_seconds()), queryset


@health_check("evaluation")
def evaluation_health(deep: bool) -> Iterable[CheckResult]:
    age, _ = _oldest_unevaluated_seconds()
    limit = settings.HEALTH_EVALUATION_MAX_DELAY_SECONDS
    data = {"oldest_unevaluated_seconds": None if age is None else round(age, 1)}
    if age is not None and age > limit:
        yield CheckResult(
            "evaluation", FAIL, f"an indexed event has waited {age:.0f}s for evaluation (> {limit:.0f}s)", data
        )
    else:
        yield CheckResult("evaluation", OK, "events evaluated in time", data)


@scrape_collector
def evaluation_metrics() -> Iterable[Metric]:
    age, queryset = _oldest_unevaluated_seconds()
    yield gauge(
        "erc8004_events_unevaluated",
        "Events indexed in the last hour and not evaluated yet (capped at 100000)",
        None,
        queryset[:_COUNT_CAP].count() if age is not None else 0,
    )
    yield gauge(
        "erc8004_events_oldest_unevaluated_seconds",
        "How long the oldest such event has waited for evaluation",
        None,
        age or 0,
    )
