"""erc8004.bulk: the COPY path writes exactly what Django's ORM writes.

Large inserts on PostgreSQL go through ``COPY … FROM STDIN`` with ids taken from the
sequence first (the indexer's hot path); small ones through ``INSERT … RETURNING``;
SQLite through ``bulk_create``. Values that need escaping in COPY's text format (tab,
newline, carriage return, backslash, the two characters ``\\N``), SQL NULL against JSON
null, huge decimals, booleans and aware datetimes must come back identical from the
fast path and from the ORM, and the objects must carry their ids, ascending in row order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from erc8004.bulk import COPY_MIN_ROWS, bulk_insert, instance_fast
from indexing.models import Chain, ChainEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 2, 1, 12, 30, 15, 123456, tzinfo=UTC)
AWKWARD = ["plain", "tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "", "ünïcødé ✓", "quote \" and '"]


def _events(chain: Chain, count: int, *, log_offset: int) -> list[ChainEvent]:
    out = []
    for i in range(count):
        text = AWKWARD[i % len(AWKWARD)]
        out.append(
            instance_fast(
                ChainEvent,
                {
                    "chain_id": chain.chain_id,
                    "block_number": 10**15 + i,
                    "block_hash": "0x" + f"{i:064x}",
                    "block_timestamp": T0 + timedelta(seconds=i),
                    "tx_hash": "0x" + f"{i + 7:064x}",
                    "tx_index": i,
                    "log_index": log_offset + i,
                    "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                    "registry": "reputation",
                    "event_type": text[:40],
                    "abi_version": "v1",
                    "agent_id": None if i % 3 == 0 else Decimal(2**256 - 1 - i),
                    "args": {"text": text, "nested": [text, None, 1.5, True], "null": None, "n": str(2**255)},
                    "removed": i % 2 == 0,
                    "removed_at": None if i % 4 else T0 - timedelta(days=i),
                    "is_backfill": i % 5 == 0,
                    "indexed_at": T0,
                },
            )
        )
    return out


def _stored(ids: list[int]) -> list[tuple]:
    """Stored values but the id, the log index (differs by construction) and indexed_at
    (auto_now_add: bulk_create stamps now() over the given value, bulk_insert keeps it)."""
    fields = [f.attname for f in ChainEvent._meta.concrete_fields if f.attname not in ("id", "log_index", "indexed_at")]
    rows = {row[0]: row[1:] for row in ChainEvent.objects.filter(pk__in=ids).values_list("pk", *fields)}
    return [rows[pk] for pk in ids]


def test_copy_path_stores_what_the_orm_stores_and_sets_ascending_ids():
    chain, _ = Chain.objects.get_or_create(chain_id=31337, defaults={"name": "devnet"})
    count = COPY_MIN_ROWS + len(AWKWARD)
    fast = bulk_insert(_events(chain, count, log_offset=0))
    orm = ChainEvent.objects.bulk_create(_events(chain, count, log_offset=10_000))
    fast_ids = [e.pk for e in fast]
    assert all(pk is not None for pk in fast_ids)
    assert fast_ids == sorted(fast_ids)
    assert len(set(fast_ids)) == count
    assert _stored(fast_ids) == _stored([e.pk for e in orm])
    # The ids on the objects are the stored rows' ids, in row order.
    assert list(ChainEvent.objects.filter(pk__in=fast_ids).order_by("pk").values_list("log_index", flat=True)) == list(
        range(count)
    )
    if connection.vendor == "postgresql":  # JSON null stays JSON null inside args; nothing became SQL NULL
        assert ChainEvent.objects.filter(pk__in=fast_ids, args__null=None).count() == count


def test_small_and_large_batches_agree():
    """Below COPY_MIN_ROWS the INSERT path runs; both give the same rows."""
    chain, _ = Chain.objects.get_or_create(chain_id=31337, defaults={"name": "devnet"})
    small = bulk_insert(_events(chain, COPY_MIN_ROWS - 1, log_offset=0))
    large = bulk_insert(_events(chain, COPY_MIN_ROWS - 1 + COPY_MIN_ROWS, log_offset=20_000))
    assert _stored([e.pk for e in small]) == _stored([e.pk for e in large[: len(small)]])
    assert min(e.pk for e in large) > max(e.pk for e in small)
