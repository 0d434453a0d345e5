"""Health: ``GET /api/v1/health`` and ``manage.py healthcheck`` (the seed runbook's
``scripts/health-check.sh``), from checks the rooms register at start-up — so this
package imports no app, as for ``/api/v1/status/`` and the scrape-time metrics.

A check yields one or more results (one per chain, one per queue…), each ``ok``,
``warn`` or ``fail``:

* ``fail`` makes the endpoint answer **503** and the command exit **1**: something
  that stops the pipeline (database or broker unreachable, a queue with no live
  consumer, a chain not followed, events or deliveries not being processed);
* ``warn`` is reported but stays 200 / exit 0 (``--strict`` makes the command exit 2):
  something an operator should look at (a breaker open, a queue filling up).

This package's own checks are here: the database, the broker, the queues' depth,
and the **worker heartbeats** — beat publishes :func:`erc8004.tasks.heartbeat` to
every queue every ``HEALTH_HEARTBEAT_INTERVAL`` seconds and the worker that takes it
stamps the time in Redis, so a stale stamp means that queue has no live consumer (or
beat itself is down, when every queue is stale).

``deep`` checks (schema migrations, Redis memory) cost more and run in the command
and on ``/api/v1/health?deep=1``; load balancers poll the cheap default.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from prometheus_client.core import GaugeMetricFamily, Metric

from .metrics import scrape_collector
from .queues import queue_depth, redis_client

__all__ = (
    "CheckResult",
    "HealthReport",
    "health_check",
    "health_run",
    "health_view",
    "heartbeat_key",
    "heartbeat_read",
)

logger = logging.getLogger("erc8004.health")

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True)
class CheckResult:
    name: str  # e.g. "database", "chain:31337", "worker:actions"
    status: str  # ok | warn | fail
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Check = Callable[[bool], Iterable[CheckResult]]


@dataclass(frozen=True)
class _Registered:
    group: str
    func: Check
    deep_only: bool


_CHECKS: list[_Registered] = []


def health_check(group: str, *, deep_only: bool = False) -> Callable[[Check], Check]:
    """Register a check: ``func(deep) -> iterable of CheckResult``. ``group`` names it
    for ``?only=`` selection (``database``, ``broker``, ``chains``…)."""

    def register(func: Check) -> Check:
        if not any(r.func is func for r in _CHECKS):
            _CHECKS.append(_Registered(group, func, deep_only))
        return func

    return register


@dataclass
class HealthReport:
    results: list[CheckResult]
    started: float
    finished: float

    @property
    def status(self) -> str:
        worst = max((_RANK[r.status] for r in self.results), default=0)
        return {0: "healthy", 1: "degraded", 2: "unhealthy"}[worst]

    @property
    def failing(self) -> list[str]:
        return [r.name for r in self.results if r.status == FAIL]

    @property
    def warnings(self) -> list[str]:
        return [r.name for r in self.results if r.status == WARN]

    def to_dict(self) -> dict[str, Any]:
        by_name = {r.name: r for r in self.results}
        return {
            "status": self.status,
            "timestamp": datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            # The seed's two headline fields, so its scripts keep working.
            "database": "connected" if _ok(by_name.get("database")) else "unavailable",
            "redis": "connected" if _ok(by_name.get("broker")) else "unavailable",
            "failing": self.failing,
            "warnings": self.warnings,
            "duration_ms": round((self.finished - self.started) * 1000, 1),
            "checks": {r.name: {k: v for k, v in asdict(r).items() if k != "name"} for r in self.results},
        }


def _ok(result: CheckResult | None) -> bool:
    return result is not None and result.status != FAIL


def health_run(*, deep: bool = False, only: Iterable[str] | None = None) -> HealthReport:
    """Run the registered checks (``only``: these groups). A check that raises is a
    failure named after its group — a broken check must not look healthy."""
    wanted = set(only) if only else None
    started = time.monotonic()
    results: list[CheckResult] = []
    for registered in _CHECKS:
        if wanted is not None and registered.group not in wanted:
            continue
        if registered.deep_only and not deep:
            continue
        try:
            results.extend(registered.func(deep))
        except Exception as exc:
            logger.warning("health check %s raised: %s", registered.group, exc)
            results.append(CheckResult(registered.group, FAIL, f"check failed: {type(exc).__name__}: {exc}"))
    return HealthReport(results=results, started=started, finished=time.monotonic())


def health_view(request: HttpRequest) -> JsonResponse:
    """``GET /api/v1/health[?deep=1][&only=database,broker]``: 200 while nothing fails,
    503 naming the failing parts. Anonymous and unthrottled (load balancers, probes)."""
    only = [g for g in request.GET.get("only", "").split(",") if g] or None
    report = health_run(deep=request.GET.get("deep") in ("1", "true", "yes"), only=only)
    response = JsonResponse(report.to_dict(), status=503 if report.failing else 200)
    response["Cache-Control"] = "no-store"
    return response


#
# This package's checks
#


@health_check("database")
def _database(deep: bool) -> Iterable[CheckResult]:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    data: dict[str, Any] = {"vendor": connection.vendor, "latency_ms": round((time.monotonic() - started) * 1000, 1)}
    if not deep:
        yield CheckResult("database", OK, "connected", data)
        return
    # The seed's "schema version" check: every migration in the code is applied.
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    data["unapplied_migrations"] = [f"{m.app_label}.{m.name}" for m, _ in plan]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE state = 'active'), count(*), "
                "current_setting('max_connections')::int, pg_database_size(current_database()) "
                "FROM pg_stat_activity"
            )
            active, total, max_connections, size = cursor.fetchone()
        data.update(active_connections=active, connections=total, max_connections=max_connections, database_bytes=size)
    if plan:
        yield CheckResult("database", FAIL, f"{len(plan)} migrations not applied (manage.py migrate)", data)
    elif "connections" in data and data["connections"] > 0.8 * data["max_connections"]:
        yield CheckResult("database", WARN, "connection use above 80% of max_connections", data)
    else:
        yield CheckResult("database", OK, "connected, schema up to date", data)


@health_check("broker")
def _broker(deep: bool) -> Iterable[CheckResult]:
    client = redis_client(settings.CELERY_BROKER_URL)
    started = time.monotonic()
    client.ping()
    data: dict[str, Any] = {"latency_ms": round((time.monotonic() - started) * 1000, 1)}
    if deep:
        try:
            info = client.info("memory")
        except redis.ResponseError:  # the embedded Redis-protocol server has no INFO
            info = {}
        data["used_memory_bytes"] = info.get("used_memory")
        data["maxmemory_policy"] = info.get("maxmemory_policy")
        if info.get("maxmemory_policy") not in (None, "noeviction"):
            yield CheckResult(
                "broker", WARN, f"maxmemory-policy is {info['maxmemory_policy']}: Redis may evict queued tasks", data
            )
            return
    yield CheckResult("broker", OK, "connected", data)


@health_check("queues")
def _queues(deep: bool) -> Iterable[CheckResult]:
    for queue in settings.WORKER_QUEUES:
        depth = queue_depth(queue)
        data = {"depth": depth}
        if depth >= settings.HEALTH_QUEUE_FAIL_DEPTH:
            yield CheckResult(f"queue:{queue}", FAIL, f"{depth} messages waiting (scale the {queue} workers)", data)
        elif depth >= settings.HEALTH_QUEUE_WARN_DEPTH:
            yield CheckResult(f"queue:{queue}", WARN, f"{depth} messages waiting", data)
        else:
            yield CheckResult(f"queue:{queue}", OK, f"{depth} waiting", data)


def heartbeat_key(queue: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}heartbeat:{queue}"


def heartbeat_read(queue: str) -> dict[str, Any] | None:
    """The last stamp a worker of ``queue`` left: ``{"at": epoch seconds, "worker": name}``."""
    raw = redis_client().get(heartbeat_key(queue))
    return json.loads(raw) if raw else None


@health_check("workers")
def _workers(deep: bool) -> Iterable[CheckResult]:
    max_age = settings.HEALTH_HEARTBEAT_MAX_AGE
    now = time.time()
    for queue in settings.WORKER_QUEUES:
        stamp = heartbeat_read(queue)
        if stamp is None:
            yield CheckResult(
                f"worker:{queue}", FAIL, "no heartbeat yet: no worker consumes this queue, or beat is not running"
            )
            continue
        age = round(now - float(stamp["at"]), 1)
        data = {"age_seconds": age, "worker": stamp.get("worker", "")}
        if age > max_age:
            yield CheckResult(
                f"worker:{queue}",
                FAIL,
                f"last heartbeat {age:.0f}s ago (> {max_age}s): no live consumer on this queue, "
                "it is too busy to take one in time, or beat is down",
                data,
            )
        else:
            yield CheckResult(f"worker:{queue}", OK, f"heartbeat {age:.0f}s ago from {data['worker']}", data)


#
# This package's scrape-time metrics (erc8004/metrics.py)
#


@scrape_collector
def _queue_metrics() -> Iterable[Metric]:
    """Queue depth per queue (messages waiting in Redis, not yet reserved) and the
    age of each queue's last worker heartbeat."""
    depth = GaugeMetricFamily("erc8004_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
    age = GaugeMetricFamily(
        "erc8004_worker_heartbeat_age_seconds",
        "Seconds since a worker of this queue took a heartbeat",
        labels=["queue"],
    )
    now = time.time()
    for queue in settings.WORKER_QUEUES:
        depth.add_metric([queue], queue_depth(queue))
        stamp = heartbeat_read(queue)
        if stamp is not None:
            age.add_metric([queue], max(0.0, now - float(stamp["at"])))
    return [depth, age]
