"""Indexing services other than the poll itself: scheduling, status, operator actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Chain, ChainCursor

__all__ = ("ChainStatus", "chain_reindex_from", "chain_status_list", "chains_due_for_poll")

# A requested poll that has not run after this long is presumed lost (Redis restarted,
# worker killed before ack) and is requested again.
POLL_REQUEST_GRACE = timedelta(seconds=10)


def chains_due_for_poll(*, now: datetime | None = None) -> list[int]:
    """Chains whose poll interval has elapsed and that no poller holds; marks them
    requested so a slow worker is not flooded with duplicate polls.

    "Elapsed" is judged to the nearest beat tick: a poll stamps ``last_polled_at`` a
    little after the tick that requested it, so an exact comparison made a chain whose
    interval equals the tick (1 s and 1 s) wait a second tick — polled every 2 s, not
    every 1 s (bench/e2e.py). Half a tick of slack rounds instead."""
    now = now or timezone.now()
    slack = timedelta(seconds=settings.INDEXING_DISPATCH_INTERVAL / 2)
    due: list[int] = []
    for chain in Chain.objects.filter(enabled=True).select_related("cursor"):
        cursor = getattr(chain, "cursor", None)
        if cursor is None:
            cursor, _ = ChainCursor.objects.get_or_create(chain=chain)
        if cursor.lease_until and cursor.lease_until > now:
            continue
        interval = timedelta(seconds=chain.poll_interval_seconds)
        if cursor.last_polled_at and cursor.last_polled_at + interval > now + slack:
            continue
        pending = cursor.poll_requested_at and (
            cursor.last_polled_at is None or cursor.poll_requested_at > cursor.last_polled_at
        )
        if pending and cursor.poll_requested_at > now - POLL_REQUEST_GRACE:
            continue
        due.append(chain.chain_id)
    if due:
        ChainCursor.objects.filter(pk__in=due).update(poll_requested_at=now)
    return due


@dataclass(frozen=True)
class ChainStatus:
    chain_id: int
    name: str
    enabled: bool
    head_block: int | None
    indexed_block: int | None
    lag_blocks: int | None
    lag_seconds: float | None
    last_success_at: datetime | None
    head_seen_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    reorg_count: int
    unknown_log_count: int


def chain_status_list() -> list[ChainStatus]:
    """What operators ask first: how far behind is each chain, and why."""
    out = []
    for chain in Chain.objects.select_related("cursor").order_by("chain_id"):
        cursor = getattr(chain, "cursor", None)
        head = cursor.head_block if cursor else None
        indexed = cursor.last_block_number if cursor else None
        lag = max(0, head - indexed) if head is not None and indexed is not None else None
        lag_seconds = None
        if cursor and cursor.last_success_at and lag is not None:
            # Lag in time: how long since we were last caught up to within confirmations.
            lag_seconds = (
                0.0 if lag <= chain.confirmations else (timezone.now() - cursor.last_success_at).total_seconds()
            )
        out.append(
            ChainStatus(
                chain_id=chain.chain_id,
                name=chain.name,
                enabled=chain.enabled,
                head_block=head,
                indexed_block=indexed,
                lag_blocks=lag,
                lag_seconds=lag_seconds,
                last_success_at=cursor.last_success_at if cursor else None,
                head_seen_at=cursor.head_seen_at if cursor else None,
                last_error=cursor.last_error if cursor else "",
                last_error_at=cursor.last_error_at if cursor else None,
                reorg_count=cursor.reorg_count if cursor else 0,
                unknown_log_count=cursor.unknown_log_count if cursor else 0,
            )
        )
    return out


@transaction.atomic
def chain_reindex_from(*, chain_id: int, block: int) -> None:
    """Move the cursor back so the next polls index again from ``block``.

    Already-stored events are kept (the poller skips rows it has); use this after
    adding a deployment with an earlier start block, or after a deep reorg alert.
    """
    cursor, _ = ChainCursor.objects.select_for_update().get_or_create(chain_id=chain_id)
    cursor.last_block_number = block - 1 if block > 0 else None
    cursor.last_block_hash = ""
    cursor.save(update_fields=["last_block_number", "last_block_hash", "updated_at"])
