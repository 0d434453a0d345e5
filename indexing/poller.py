"""The reorg-safe poller: one bounded run of ``chain_poll`` indexes the next range of a
chain, or rewinds it after a reorg.

One run, in order (reference/stack.md §2.9, after Chainlink's log poller):

1. take the chain's lease (a row lease with an expiry, so a crashed worker cannot
   hold it forever);
2. read the head; the safe head is ``head - confirmations``;
3. re-check the stored hashes of recent blocks (the reorg window) in one batch; on a
   mismatch rewind to the highest block that still matches, mark the events above it
   ``removed`` and tell the floors above (projections rebuild, triggers retract);
4. otherwise fetch ``eth_getLogs`` for every registry address and known topic0 over
   ``[cursor+1, min(safe head, cursor+max)]`` with adaptive range splitting, fetch the
   headers of the blocks that hold logs plus the range end, and verify every log's
   block hash against its header (a mismatch means a reorg mid-fetch: nothing is
   stored, the next run sees the reorg);
5. commit in ONE transaction: ChainEvent rows, the projections (signal receivers),
   block hashes and the cursor — only if the cursor still holds the block this run
   started from (optimistic check: two pollers can never both commit a range).

The caller (the Celery task) re-enqueues the poll at once while ``behind`` is true,
so backfill does not wait for the next beat tick.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Min, Q
from django.utils import timezone

from erc8004 import metrics
from erc8004.bulk import bulk_insert, bulk_upsert, instance_fast
from erc8004.gcpause import gc_paused
from erc8004.logs import log_context

from .decoding import DecodedLog, LogDecodeError, known_topics, log_decode
from .models import BlockRecord, Chain, ChainCursor, ChainEvent, ContractDeployment, RpcEndpoint, UnknownLog
from .rpc import RpcClient, RpcError, logs_fetch
from .signals import events_committed, events_indexed, events_removed

__all__ = ("PollResult", "chain_poll", "chain_reset", "rpc_client_for_chain", "worker_identity")

logger = logging.getLogger("erc8004.indexing.poller")


class CursorMoved(Exception):
    """Another poller committed first; this run's work is discarded."""


class NodeBehind(Exception):
    """The node does not know a block we already indexed: it is lagging, not reorged."""


class DeepReorg(Exception):
    """No stored block within the search depth matches the node: an operator must look."""


@dataclass
class PollResult:
    chain_id: int
    outcome: str  # indexed | caught_up | reorg | busy | disabled | node_behind | retry | error
    from_block: int | None = None
    to_block: int | None = None
    events: int = 0
    removed: int = 0
    unknown: int = 0
    head: int | None = None
    behind: bool = False
    error: str = ""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def rpc_client_for_chain(chain: Chain) -> RpcClient:
    urls = list(chain.rpc_endpoints.filter(enabled=True).order_by("priority", "id").values_list("url", flat=True))
    if not urls:
        raise RpcError(f"chain {chain.chain_id} has no enabled RPC endpoint")
    return RpcClient(urls=urls, chain_id=chain.chain_id, timeout=settings.INDEXING_RPC_TIMEOUT)


#
# Lease
#


def _lease_acquire(*, chain_id: int, owner: str) -> bool:
    now = timezone.now()
    taken = (
        ChainCursor.objects.filter(pk=chain_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_until=now + timedelta(seconds=settings.INDEXING_LEASE_SECONDS))
    )
    return taken == 1


# Waits (seconds) between attempts to give a lease back when the database connection
# failed: ~7 s covers a PostgreSQL restart or failover. Without them the chain would
# stay blocked for INDEXING_LEASE_SECONDS although its poller is alive.
LEASE_RELEASE_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 3.5)


def _lease_release(*, chain_id: int, owner: str) -> None:
    """Give the lease back. A poll that failed because the database went away (restart,
    failover: its connection is dead and new ones are refused for a moment) retries on
    a new connection for a few seconds; the UPDATE only matches our own lease, so a
    late release is harmless. Inside a caller's transaction nothing is retried."""
    for delay in (*LEASE_RELEASE_RETRY_DELAYS, None):
        try:
            ChainCursor.objects.filter(pk=chain_id, lease_owner=owner).update(lease_owner="", lease_until=None)
            return
        except (OperationalError, InterfaceError):
            conn = connections[ChainCursor.objects.db]
            if delay is None or conn.in_atomic_block:
                raise
            conn.close()
            logger.warning("chain %s: database unavailable, lease release retried in %ss", chain_id, delay)
            time.sleep(delay)


#
# Helpers
#


def _timestamp(header: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(header["timestamp"], 16), tz=UTC)


def _start_block(chain: Chain) -> int | None:
    return ContractDeployment.objects.filter(chain=chain, enabled=True).aggregate(m=Min("start_block"))["m"]


def _record_error(*, chain_id: int, error: str) -> None:
    ChainCursor.objects.filter(pk=chain_id).update(last_error=error[:2000], last_error_at=timezone.now())


def _persist_endpoint_health(client: RpcClient, chain: Chain) -> None:
    now = timezone.now()
    for url, health in client.health.items():
        if health.failures:
            RpcEndpoint.objects.filter(chain=chain, url=url).update(last_error=health.last_error, last_error_at=now)
        if health.successes:
            RpcEndpoint.objects.filter(chain=chain, url=url).update(last_success_at=now)


def _check_cursor_unchanged(chain_id: int, cursor: ChainCursor) -> ChainCursor:
    locked = ChainCursor.objects.select_for_update().get(pk=chain_id)
    if locked.last_block_number != cursor.last_block_number or locked.last_block_hash != cursor.last_block_hash:
        raise CursorMoved
    return locked


#
# Reorgs
#


@dataclass
class _Ancestor:
    number: int
    hash: str


def _reorg_find_ancestor(chain: Chain, cursor: ChainCursor, client: RpcClient) -> _Ancestor | bool | None:
    """``False`` when nothing changed; else the common ancestor (``None``: before start)."""
    if cursor.last_block_number is None:
        return False
    low = cursor.last_block_number - chain.reorg_window
    records = list(BlockRecord.objects.filter(chain=chain, number__gt=low).order_by("number"))
    if not records:
        return False
    headers = client.blocks_by_number([r.number for r in records])
    if any(h is None for h in headers):
        raise NodeBehind(f"node does not know block {records[-1].number}")
    first_bad = next(
        (i for i, (r, h) in enumerate(zip(records, headers, strict=True)) if h["hash"].lower() != r.hash), None
    )
    if first_bad is None:
        return False
    if first_bad > 0:
        good = records[first_bad - 1]
        return _Ancestor(good.number, good.hash)
    # Deeper than the window: walk older records, a page at a time, up to a bound.
    depth_limit = cursor.last_block_number - max(chain.reorg_window * 8, 1024)
    older = BlockRecord.objects.filter(chain=chain, number__lte=low).order_by("-number")
    if not older.exists():
        return None
    for page_start in range(0, 10_000, 64):
        page = list(older[page_start : page_start + 64])
        if not page:
            return None
        headers = client.blocks_by_number([r.number for r in page])
        for record, header in zip(page, headers, strict=True):
            if header is not None and header["hash"].lower() == record.hash:
                return _Ancestor(record.number, record.hash)
            if record.number < depth_limit:
                raise DeepReorg(f"no stored block above {depth_limit} matches the node")
    raise DeepReorg("no stored block matches the node")


def _rewind(*, chain: Chain, cursor: ChainCursor, ancestor: _Ancestor | None) -> list[ChainEvent]:
    """Mark everything above the ancestor removed and move the cursor back, atomically."""
    now = timezone.now()
    if ancestor is None:
        start = _start_block(chain) or 0
        ancestor = _Ancestor(start - 1, "")
    with transaction.atomic():
        _check_cursor_unchanged(chain.chain_id, cursor)
        orphaned = list(
            ChainEvent.objects.filter(chain=chain, block_number__gt=ancestor.number, removed=False).order_by(
                "block_number", "log_index"
            )
        )
        ChainEvent.objects.filter(pk__in=[e.pk for e in orphaned]).update(removed=True, removed_at=now)
        for event in orphaned:
            event.removed, event.removed_at = True, now
        BlockRecord.objects.filter(chain=chain, number__gt=ancestor.number).delete()
        depth = (cursor.last_block_number or 0) - ancestor.number
        ChainCursor.objects.filter(pk=chain.chain_id).update(
            last_block_number=ancestor.number if ancestor.number >= 0 else None,
            last_block_hash=ancestor.hash,
            reorg_count=cursor.reorg_count + 1,
            last_reorg_depth=depth,
            last_reorg_at=now,
        )
        if orphaned:
            events_removed.send(sender=ChainEvent, chain_id=chain.chain_id, events=orphaned)
        removed_ids = [e.pk for e in orphaned]
        transaction.on_commit(
            partial(
                events_committed.send,
                sender=ChainEvent,
                chain_id=chain.chain_id,
                event_ids=[],
                removed_event_ids=removed_ids,
            ),
            robust=True,  # a broker outage must not fail a committed batch; sweepers catch up
        )
    metrics.REORGS.labels(chain=str(chain.chain_id)).inc()
    metrics.REORG_DEPTH.labels(chain=str(chain.chain_id)).observe(depth)
    logger.warning(
        "reorg on chain %s: rewound %s blocks to %s, %s events removed",
        chain.chain_id,
        depth,
        ancestor.number,
        len(orphaned),
    )
    return orphaned


def chain_reset(*, chain_id: int) -> int:
    """Forget a chain's history, as a reorg back to before its first deployment.

    For a node that was replaced by a new chain (a restarted devnet): every stored
    event is marked removed through the normal reorg path (projections rebuild,
    triggers retract), block hashes are dropped, and indexing restarts at the
    deployments' start block. Returns the number of events removed."""
    chain = Chain.objects.get(pk=chain_id)
    cursor, _ = ChainCursor.objects.get_or_create(chain=chain)
    orphaned = _rewind(chain=chain, cursor=cursor, ancestor=None)
    BlockRecord.objects.filter(chain=chain).delete()
    return len(orphaned)


#
# Indexing a range
#


def _decode_logs(
    logs: list[dict[str, Any]], deployments: dict[str, ContractDeployment]
) -> tuple[list[DecodedLog], list[tuple[dict[str, Any], str]]]:
    decoded: list[DecodedLog] = []
    unknown: list[tuple[dict[str, Any], str]] = []
    for log in logs:
        deployment = deployments.get(log["address"].lower())
        if deployment is None or int(log["blockNumber"], 16) < deployment.start_block:
            continue  # a node that ignores the address filter, or before the deployment's start
        try:
            decoded.append(log_decode(log))
        except LogDecodeError as exc:
            unknown.append((log, str(exc)))
        except Exception as exc:  # a malformed node response must not stop the chain
            unknown.append((log, f"malformed log: {type(exc).__name__}: {exc}"))
    return decoded, unknown


def _commit_range(
    *,
    chain: Chain,
    cursor: ChainCursor,
    end: int,
    headers: dict[int, dict[str, Any]],
    decoded: list[DecodedLog],
    unknown: list[tuple[dict[str, Any], str]],
    deployments: dict[str, ContractDeployment],
    span: int,
) -> list[ChainEvent]:
    now = timezone.now()
    start = (cursor.last_block_number + 1) if cursor.last_block_number is not None else None
    rows = []
    timestamps = {number: _timestamp(header) for number, header in headers.items()}
    registries = {address: d.registry for address, d in deployments.items()}
    max_age = chain.notify_max_age_seconds
    for log in decoded:
        block_ts = timestamps[log.block_number]
        rows.append(
            instance_fast(
                ChainEvent,
                {
                    "chain_id": chain.chain_id,
                    "block_number": log.block_number,
                    "block_hash": log.block_hash,
                    "block_timestamp": block_ts,
                    "tx_hash": log.tx_hash,
                    "tx_index": log.tx_index,
                    "log_index": log.log_index,
                    "address": log.address,
                    "registry": registries[log.address.lower()],
                    "event_type": log.event_type,
                    "abi_version": log.abi_version,
                    "agent_id": None if log.agent_id is None else Decimal(log.agent_id),
                    "args": log.args,
                    "is_backfill": (now - block_ts).total_seconds() > max_age,
                    "indexed_at": now,
                },
            )
        )
    with transaction.atomic():
        _check_cursor_unchanged(chain.chain_id, cursor)
        # Rows already stored for this range (a re-run, or a branch that came back):
        # skip live ones, restore removed ones.
        existing: dict[tuple[str, int], tuple[int, bool]] = {}
        if rows:
            lo = start if start is not None else min(r.block_number for r in rows)
            for pk, block_hash, log_index, removed in ChainEvent.objects.filter(
                chain=chain, block_number__gte=lo, block_number__lte=end
            ).values_list("pk", "block_hash", "log_index", "removed"):
                existing[(block_hash, log_index)] = (pk, removed)
        new_rows = [r for r in rows if (r.block_hash, r.log_index) not in existing]
        restored_ids = [
            existing[(r.block_hash, r.log_index)][0]
            for r in rows
            if (r.block_hash, r.log_index) in existing and existing[(r.block_hash, r.log_index)][1]
        ]
        created = bulk_insert(new_rows)
        restored: list[ChainEvent] = []
        if restored_ids:
            ChainEvent.objects.filter(pk__in=restored_ids).update(removed=False, removed_at=None)
            restored = list(ChainEvent.objects.filter(pk__in=restored_ids))
        if unknown:
            UnknownLog.objects.bulk_create(
                [
                    UnknownLog(
                        chain=chain,
                        block_number=int(log["blockNumber"], 16),
                        block_hash=log["blockHash"].lower(),
                        tx_hash=log.get("transactionHash", "").lower(),
                        log_index=int(log["logIndex"], 16),
                        address=log["address"],
                        topics=log.get("topics", []),
                        data=str(log.get("data", ""))[:20000],
                        reason=reason[:2000],
                    )
                    for log, reason in unknown
                ],
                ignore_conflicts=True,
            )
        bulk_upsert(
            [
                BlockRecord(
                    chain=chain,
                    number=number,
                    hash=header["hash"].lower(),
                    parent_hash=header["parentHash"].lower(),
                    timestamp=_timestamp(header),
                )
                for number, header in sorted(headers.items())
            ],
            unique_fields=("chain", "number"),
            update_fields=("hash", "parent_hash", "timestamp"),
        )
        end_header = headers[end]
        ChainCursor.objects.filter(pk=chain.chain_id).update(
            last_block_number=end,
            last_block_hash=end_header["hash"].lower(),
            span=span,
            last_success_at=now,
            last_error="",
            unknown_log_count=cursor.unknown_log_count + len(unknown),
        )
        indexed = sorted(created + restored, key=lambda e: (e.block_number, e.log_index))
        if indexed:
            events_indexed.send(sender=ChainEvent, chain_id=chain.chain_id, events=indexed)
        transaction.on_commit(
            partial(
                events_committed.send,
                sender=ChainEvent,
                chain_id=chain.chain_id,
                event_ids=[e.pk for e in indexed],
                removed_event_ids=[],
            ),
            robust=True,  # a broker outage must not fail a committed batch; sweepers catch up
        )
    for event_type, count in Counter(event.event_type for event in created).items():
        metrics.EVENTS_INGESTED.labels(chain=str(chain.chain_id), event_type=event_type).inc(count)
    if unknown:
        metrics.UNKNOWN_LOGS.labels(chain=str(chain.chain_id)).inc(len(unknown))
        logger.warning("chain %s: %s undecodable logs recorded", chain.chain_id, len(unknown))
    _prune_block_records(chain=chain, cursor_block=end)
    return indexed


def _prune_block_records(*, chain: Chain, cursor_block: int) -> None:
    """Keep the reorg window plus the newest record below it (the walk-back's base)."""
    low = cursor_block - chain.reorg_window
    base = BlockRecord.objects.filter(chain=chain, number__lte=low).order_by("-number").values_list("number", flat=True)
    keep_from = next(iter(base[:1]), None)
    if keep_from is not None:
        BlockRecord.objects.filter(chain=chain, number__lt=keep_from).delete()


#
# The poll
#


def chain_poll(
    *, chain_id: int, owner: str | None = None, max_blocks: int | None = None, client: RpcClient | None = None
) -> PollResult:
    """Run one bounded poll of a chain. Safe to call concurrently: the lease makes the
    second caller return ``busy``, and the cursor check makes a stale one discard.
    Every log line written during the poll carries the chain id. The cyclic garbage
    collector is paused for the poll (erc8004/gcpause.py: its full passes were 15 %
    of indexing time and found almost nothing to free)."""
    with log_context(chain_id=chain_id), gc_paused():
        result = _chain_poll(chain_id=chain_id, owner=owner, max_blocks=max_blocks, client=client)
        if result.events:
            logger.info(
                "indexed %s events in blocks %s-%s (head %s)",
                result.events,
                result.from_block,
                result.to_block,
                result.head,
            )
        return result


def _chain_poll(*, chain_id: int, owner: str | None, max_blocks: int | None, client: RpcClient | None) -> PollResult:
    owner = owner or worker_identity()
    chain = Chain.objects.get(pk=chain_id)
    if not chain.enabled:
        return PollResult(chain_id, "disabled")
    ChainCursor.objects.get_or_create(chain=chain)
    if not _lease_acquire(chain_id=chain_id, owner=owner):
        return PollResult(chain_id, "busy")
    result = PollResult(chain_id, "error")
    try:
        result = _poll_locked(
            chain=chain, client=client, max_blocks=max_blocks or settings.INDEXING_MAX_BLOCKS_PER_POLL
        )
    except NodeBehind as exc:
        result = PollResult(chain_id, "node_behind", error=str(exc))
        _record_error(chain_id=chain_id, error=f"node behind: {exc}")
    except CursorMoved:
        result = PollResult(chain_id, "retry", behind=True)
    except DeepReorg as exc:
        result = PollResult(chain_id, "error", error=str(exc))
        _record_error(chain_id=chain_id, error=f"deep reorg, operator action needed: {exc}")
        logger.error("chain %s: %s", chain_id, exc)
    except RpcError as exc:
        result = PollResult(chain_id, "error", error=str(exc))
        _record_error(chain_id=chain_id, error=f"{type(exc).__name__}: {exc}")
        logger.warning("chain %s poll failed: %s", chain_id, exc)
    finally:
        _lease_release(chain_id=chain_id, owner=owner)
        metrics.POLLS.labels(chain=str(chain_id), outcome=result.outcome).inc()
    return result


def _poll_locked(*, chain: Chain, client: RpcClient | None, max_blocks: int) -> PollResult:
    chain_id = chain.chain_id
    cursor = ChainCursor.objects.get(pk=chain_id)
    client = client or rpc_client_for_chain(chain)
    try:
        head = client.block_number()
        now = timezone.now()
        ChainCursor.objects.filter(pk=chain_id).update(head_block=head, head_seen_at=now, last_polled_at=now)

        ancestor = _reorg_find_ancestor(chain, cursor, client)
        if ancestor is not False:
            orphaned = _rewind(chain=chain, cursor=cursor, ancestor=ancestor)
            return PollResult(chain_id, "reorg", removed=len(orphaned), head=head, behind=True)

        deployments = {d.address.lower(): d for d in ContractDeployment.objects.filter(chain=chain, enabled=True)}
        if not deployments:
            return PollResult(chain_id, "caught_up", head=head)
        first = min(d.start_block for d in deployments.values())
        start = max(first, cursor.last_block_number + 1) if cursor.last_block_number is not None else first
        safe_head = head - chain.confirmations
        if start > safe_head:
            ChainCursor.objects.filter(pk=chain_id).update(last_success_at=now, last_error="")
            return PollResult(chain_id, "caught_up", head=head)
        end = min(safe_head, start + max_blocks - 1)
        addresses = [d.address for d in deployments.values() if d.start_block <= end]
        logs, span, end = _fetch_logs_bounded(
            client, chain=chain, cursor=cursor, addresses=addresses, start=start, end=end
        )
        batches = _batches_by_block(logs, end=end, size=settings.INDEXING_MAX_EVENTS_PER_BATCH)
        numbers = sorted({int(log["blockNumber"], 16) for log in logs} | {batch_end for batch_end, _ in batches})
        fetched = client.blocks_by_number(numbers)
        if any(h is None for h in fetched):
            raise NodeBehind("node returned no header for a block it gave logs for")
        headers = dict(zip(numbers, fetched, strict=True))
        for log in logs:
            if log["blockHash"].lower() != headers[int(log["blockNumber"], 16)]["hash"].lower():
                # The chain moved between eth_getLogs and the headers: store nothing now;
                # the next run re-checks hashes and fetches a consistent view.
                return PollResult(chain_id, "retry", head=head, behind=True)
        indexed_total = unknown_total = 0
        for batch_end, batch_logs in batches:
            decoded, unknown = _decode_logs(batch_logs, deployments)
            batch_numbers = {int(log["blockNumber"], 16) for log in batch_logs} | {batch_end}
            indexed = _commit_range(
                chain=chain,
                cursor=cursor,
                end=batch_end,
                headers={n: headers[n] for n in batch_numbers},
                decoded=decoded,
                unknown=unknown,
                deployments=deployments,
                span=span,
            )
            indexed_total += len(indexed)
            unknown_total += len(unknown)
            # The next batch builds on what this one committed (its cursor check).
            cursor.last_block_number = batch_end
            cursor.last_block_hash = headers[batch_end]["hash"].lower()
            cursor.unknown_log_count += len(unknown)
        return PollResult(
            chain_id,
            "indexed",
            from_block=start,
            to_block=end,
            events=indexed_total,
            unknown=unknown_total,
            head=head,
            behind=end < safe_head,
        )
    finally:
        _persist_endpoint_health(client, chain)


def _batches_by_block(logs: list[dict[str, Any]], *, end: int, size: int) -> list[tuple[int, list[dict[str, Any]]]]:
    """Split a window's logs into transactions of about ``size`` events, cut only at
    block boundaries (a block is never split); each batch ends just before the next
    batch's first block, the last one at ``end``."""
    if not logs:
        return [(end, [])]
    batches: list[tuple[int, list[dict[str, Any]]]] = []
    current: list[dict[str, Any]] = []
    current_block = None
    for log in logs:
        block = int(log["blockNumber"], 16)
        if current and len(current) >= size and block != current_block:
            batches.append((block - 1, current))
            current = []
        current.append(log)
        current_block = block
    batches.append((end, current))
    return batches


INITIAL_SPAN = 10  # blocks; doubles per call while the chain is sparse


def _fetch_logs_bounded(
    client: RpcClient, *, chain: Chain, cursor: ChainCursor, addresses: list[str], start: int, end: int
) -> tuple[list[dict[str, Any]], int, int]:
    """eth_getLogs over [start, end], stopping early once the run holds enough logs
    to keep its memory bounded (the poll commits them in several transactions, so
    nothing fetched is fetched again); returns (logs, span, last block covered)."""
    max_events = settings.INDEXING_MAX_EVENTS_PER_BATCH * settings.INDEXING_BATCHES_PER_POLL
    # A chain we know nothing about starts narrow and widens while it is sparse: one
    # call over the full range of a dense history would hold it all in memory.
    span = cursor.span or min(chain.max_block_range, INITIAL_SPAN)
    logs: list[dict[str, Any]] = []
    block = start
    while block <= end:
        window_end = min(end, block + max(span, 1) * 4 - 1)
        chunk, span = logs_fetch(
            client,
            addresses=addresses,
            topics0=known_topics(),
            from_block=block,
            to_block=window_end,
            span=span,
            max_span=chain.max_block_range,
            target_logs=settings.INDEXING_MAX_EVENTS_PER_BATCH,
        )
        logs.extend(chunk)
        block = window_end + 1
        if len(logs) >= max_events:
            # Cut at a block boundary: the rest is fetched by the next batch.
            last_block = int(logs[max_events - 1]["blockNumber"], 16)
            kept = [log for log in logs if int(log["blockNumber"], 16) < last_block]
            if kept:
                return kept, span, last_block - 1
            return logs, span, window_end  # one block holds more than a batch: keep it whole
    return logs, span, end
