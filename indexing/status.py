"""What operators see of the indexing room, registered in IndexingConfig.ready:
its part of ``/api/v1/status/``, its health checks (``/api/v1/health``,
``manage.py healthcheck``) and its scrape-time metrics (``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from erc8004.health import FAIL, OK, WARN, CheckResult, health_check
from erc8004.metrics import scrape_collector
from erc8004.status import status_contributor

from .models import ChainEvent
from .services import ChainStatus, chain_status_list


@status_contributor
def indexing_status() -> dict[str, Any]:
    chains = [
        {
            "chain_id": s.chain_id,
            "name": s.name,
            "head_block": s.head_block,
            "indexed_block": s.indexed_block,
            "lag_blocks": s.lag_blocks,
            "last_error": s.last_error[:200],
        }
        for s in chain_status_list()
        if s.enabled
    ]
    return {"chains": chains, "events": ChainEvent.objects.filter(removed=False).count()}


def _seconds_since(when) -> float | None:
    return None if when is None else max(0.0, (timezone.now() - when).total_seconds())


def chain_health(status: ChainStatus) -> CheckResult:
    """Fail a chain that is not followed: behind for too long in time (or blocks), or
    whose head has not been read for that long (poller or every RPC endpoint down)."""
    name = f"chain:{status.chain_id}"
    max_lag = settings.HEALTH_CHAIN_MAX_LAG_SECONDS
    head_age = _seconds_since(status.head_seen_at)
    data = {
        "name": status.name,
        "head_block": status.head_block,
        "indexed_block": status.indexed_block,
        "lag_blocks": status.lag_blocks,
        "lag_seconds": None if status.lag_seconds is None else round(status.lag_seconds, 1),
        "head_read_seconds_ago": None if head_age is None else round(head_age, 1),
        "last_error": status.last_error[:300],
    }
    if head_age is None:
        return CheckResult(name, FAIL, "never polled: is beat running, and an indexing worker?", data)
    if head_age > max_lag:
        return CheckResult(name, FAIL, f"head not read for {head_age:.0f}s: poller or RPC down", data)
    if status.lag_seconds is not None and status.lag_seconds > max_lag:
        return CheckResult(name, FAIL, f"behind for {status.lag_seconds:.0f}s ({status.lag_blocks} blocks)", data)
    max_blocks = settings.HEALTH_CHAIN_MAX_LAG_BLOCKS
    if max_blocks and (status.lag_blocks or 0) > max_blocks:
        return CheckResult(name, FAIL, f"{status.lag_blocks} blocks behind (> {max_blocks})", data)
    if status.last_error and status.last_error_at and _seconds_since(status.last_error_at) < max_lag:
        return CheckResult(name, WARN, f"recent error: {status.last_error.splitlines()[0][:200]}", data)
    return CheckResult(name, OK, f"{status.lag_blocks} blocks behind the head", data)


@health_check("chains")
def chains_health(deep: bool) -> Iterable[CheckResult]:
    for status in chain_status_list():
        if status.enabled:
            yield chain_health(status)


@scrape_collector
def chain_metrics() -> Iterable[Metric]:
    """Per chain, read from the cursor: head, indexed block, lag in blocks and in time,
    the age of the last head read, and the reorg count (the counter
    ``erc8004_reorgs_total`` only knows what running processes saw)."""
    families = {
        "head": GaugeMetricFamily(
            "erc8004_chain_head_block", "Latest block number read from the node", labels=["chain"]
        ),
        "indexed": GaugeMetricFamily("erc8004_chain_indexed_block", "Last block indexed", labels=["chain"]),
        "lag": GaugeMetricFamily(
            "erc8004_chain_lag_blocks", "Blocks between the head and the indexer", labels=["chain"]
        ),
        "lag_s": GaugeMetricFamily(
            "erc8004_chain_lag_seconds",
            "Seconds since the indexer was last within confirmations of the head",
            labels=["chain"],
        ),
        "head_age": GaugeMetricFamily(
            "erc8004_chain_head_age_seconds", "Seconds since the head was last read (poller liveness)", labels=["chain"]
        ),
        "reorgs": GaugeMetricFamily(
            "erc8004_chain_reorgs", "Reorganisations handled, from the cursor", labels=["chain"]
        ),
        "enabled": GaugeMetricFamily("erc8004_chain_enabled", "1 when the chain is indexed", labels=["chain"]),
    }
    for s in chain_status_list():
        label = [str(s.chain_id)]
        families["enabled"].add_metric(label, 1 if s.enabled else 0)
        families["reorgs"].add_metric(label, s.reorg_count)
        for key, value in (
            ("head", s.head_block),
            ("indexed", s.indexed_block),
            ("lag", s.lag_blocks),
            ("lag_s", s.lag_seconds),
            ("head_age", _seconds_since(s.head_seen_at)),
        ):
            if value is not None:
                families[key].add_metric(label, value)
    return families.values()
