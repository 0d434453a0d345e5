"""Prometheus metrics shared by every process (web, workers, beat), and the one
``/metrics`` page that shows them all.

Defined once here so each name has one meaning everywhere (docs/runbook.md maps the
seed system's metric names onto these).

Two kinds of values, two mechanisms:

* **Events** (counters, histograms: RPC calls, events ingested, matches, attempts,
  latency) are incremented by whichever process sees them. With several processes
  (gunicorn workers, one Celery worker per queue, beat) each keeps its own numbers,
  so prometheus_client's *multiprocess mode* is used: every process writes its
  values to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``make run`` and by
  deploy/, wiped at start) and the scrape view sums the files. A scrape served by
  any web process therefore sees what the workers counted.
* **Facts** (chain head and lag, queue depth, outbox rows, breaker states) live in
  PostgreSQL and Redis; multiprocess mode cannot carry gauges set from "outside"
  (and forbids custom collectors in the files), so they are read *at scrape time*
  by collectors the rooms register with :func:`scrape_collector` — the same way
  they contribute to ``/api/v1/status/`` (erc8004/status.py), so this package
  imports no app.
"""

from __future__ import annotations

import glob
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("erc8004.metrics")

__all__ = (
    "BREAKER_TRANSITIONS",
    "DELIVERIES",
    "DELIVERY_ATTEMPTS",
    "DELIVERY_BACKPRESSURE",
    "DELIVERY_DEAD_LETTERS",
    "DELIVERY_LATENCY",
    "DELIVERY_RATE_LIMITED",
    "EVENTS_INGESTED",
    "POLLS",
    "REORGS",
    "REORG_DEPTH",
    "RPC_CALLS",
    "RPC_ERRORS",
    "RPC_FAILOVERS",
    "TRIGGERS_EVALUATED",
    "TRIGGER_MATCHES",
    "UNKNOWN_LOGS",
    "gauge",
    "metrics_view",
    "scrape_collector",
)

RPC_CALLS = Counter("erc8004_rpc_calls_total", "JSON-RPC requests sent", ["chain", "method"])
RPC_ERRORS = Counter("erc8004_rpc_errors_total", "JSON-RPC failures by kind", ["chain", "kind"])
RPC_FAILOVERS = Counter("erc8004_rpc_failovers_total", "Rotations to the next RPC endpoint", ["chain"])
POLLS = Counter("erc8004_polls_total", "Poll runs by outcome", ["chain", "outcome"])
EVENTS_INGESTED = Counter("erc8004_events_ingested_total", "Registry events stored", ["chain", "event_type"])
UNKNOWN_LOGS = Counter("erc8004_unknown_logs_total", "Registry logs that could not be decoded", ["chain"])
REORGS = Counter("erc8004_reorgs_total", "Chain reorganisations detected", ["chain"])
REORG_DEPTH = Histogram(
    "erc8004_reorg_depth_blocks", "Blocks rewound per reorg", ["chain"], buckets=(1, 2, 3, 5, 8, 13, 21, 64, 128)
)
TRIGGERS_EVALUATED = Counter("erc8004_trigger_evaluations_total", "Trigger conditions evaluated against an event")
TRIGGER_MATCHES = Counter("erc8004_trigger_matches_total", "Trigger matches by outcome", ["outcome"])


# Actions (actions/services.py). "channel" is telegram | webhook | mcp.
DELIVERIES = Counter(
    "erc8004_deliveries_total",
    "Deliveries reaching a status: created, succeeded, retrying, dead, cancelled, replayed",
    ["channel", "status"],
)
DELIVERY_ATTEMPTS = Counter(
    "erc8004_delivery_attempts_total", "Send attempts by outcome (success | failure)", ["channel", "outcome"]
)
DELIVERY_DEAD_LETTERS = Counter(
    "erc8004_delivery_dead_letters_total", "Deliveries dead-lettered, by reason", ["channel", "reason"]
)
DELIVERY_LATENCY = Histogram(
    "erc8004_delivery_latency_seconds",
    "Block timestamp of the event to the receiver's success response (first success only)",
    ["channel"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 900, 3600, 21600),
)
DELIVERY_RATE_LIMITED = Counter(
    "erc8004_delivery_rate_limited_total",
    "Sends deferred by a rate limit before sending (not attempts): scope = chat | bot | destination | receiver",
    ["channel", "scope"],
)
DELIVERY_BACKPRESSURE = Counter(
    "erc8004_delivery_backpressure_total",
    "Dispatcher ticks that left due rows in the database because the actions queue was full",
)
BREAKER_TRANSITIONS = Counter(
    "erc8004_breaker_transitions_total", "Destination circuit-breaker transitions", ["channel", "to_state"]
)


#
# Scrape time: facts read from the database and Redis, and the /metrics view
#

ScrapeCollector = Callable[[], Iterable[Metric]]
_SCRAPE_COLLECTORS: list[ScrapeCollector] = []


def scrape_collector(func: ScrapeCollector) -> ScrapeCollector:
    """Register a function yielding metric families, run at every scrape (used as a
    decorator in a room's ``status.py``, imported from its ``AppConfig.ready``)."""
    if func not in _SCRAPE_COLLECTORS:
        _SCRAPE_COLLECTORS.append(func)
    return func


def gauge(name: str, documentation: str, labels: dict[str, str] | None, value: float) -> GaugeMetricFamily:
    """One gauge family with a single sample (the common case of a scrape collector)."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class _ScrapeTimeCollector(Collector):
    """Runs every registered scrape collector; one that fails is reported in
    ``erc8004_scrape_errors`` and skipped, so a Redis outage still leaves the
    database facts (and vice versa) on the page."""

    def collect(self) -> Iterable[Metric]:
        errors = GaugeMetricFamily(
            "erc8004_scrape_errors", "Scrape collectors that failed on this scrape", labels=["collector"]
        )
        duration = GaugeMetricFamily(
            "erc8004_scrape_duration_seconds", "Time to read the database and Redis facts on this scrape"
        )
        started = time.monotonic()
        for func in _SCRAPE_COLLECTORS:
            name = f"{func.__module__}.{func.__qualname__}"
            try:
                yield from list(func())
            except Exception as exc:
                logger.warning("scrape collector %s failed: %s", name, exc)
                errors.add_metric([name], 1)
        duration.add_metric([], time.monotonic() - started)
        yield errors
        yield duration


class _MergedDirectoriesCollector(Collector):
    """Multiprocess files of several containers on one host: each container writes to
    its own ``<METRICS_MULTIPROC_ROOT>/<hostname>/`` (pids repeat across containers,
    so they cannot share one directory) and the web process sums them all
    (deploy/docker-entrypoint.sh, docs/deploy.md)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self.root, "*", "*.db"))
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def _event_registry() -> CollectorRegistry:
    """Counters and histograms of every process: of every container on this host
    (``METRICS_MULTIPROC_ROOT``), of every process of this one (multiprocess mode,
    ``PROMETHEUS_MULTIPROC_DIR``), or of this process only (tests, a shell)."""
    root = os.environ.get("METRICS_MULTIPROC_ROOT")
    if root:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_MergedDirectoriesCollector(root))
        return registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the event metrics of all processes (ours and django-prometheus's
    HTTP metrics) followed by the facts read now. With ``METRICS_BEARER_TOKEN`` set,
    the scraper must send it (``Authorization: Bearer …``)."""
    token = getattr(settings, "METRICS_BEARER_TOKEN", "")
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    facts = CollectorRegistry(auto_describe=False)
    facts.register(_ScrapeTimeCollector())
    body = generate_latest(_event_registry()) + generate_latest(facts)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
