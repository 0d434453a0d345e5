"""Fault 3: PostgreSQL restarted (``pg_ctl restart -m fast``) in the middle of indexing
and delivery.

The shared PostgreSQL serves every other session, so the stack runs on a private
cluster created under the test's tmp dir (initdb as ``postgres``, trust auth on
loopback, a free port) holding a copy of the test database (its migrated schema).
The worker subprocesses get its ``DATABASE_URL``; this process points its own
``default`` connection at it for the duration (``django_default_database``), so the
pipeline setup, the waits and the very same verdict as every other scenario read
what the workers wrote — no second code path for the verdict.

A fast restart terminates every backend: a poll batch, an evaluation or a send's
record that is mid-transaction rolls back, and every worker's persistent connection
(CONN_MAX_AGE) is dead. What must hold: the poller resumes from its committed cursor
(the batch that rolled back is indexed again, once: ``ChainEvent`` is unique per
block hash and log index), evaluations lost with their task are swept, a send whose
outcome could not be recorded is retried under the same ``webhook-id`` after its
lease, and no worker process dies. CI: one restart; full: three, with the chain moving
in between.
"""

from __future__ import annotations

import time

import pytest
from django.db import connections

from actions.models import Delivery, DeliveryStatus
from indexing.models import ChainCursor, ChainEvent
from tests.faults.harness import FULL, sized, verdict_check
from tests.faults.servers import PrivatePostgres, db_read, django_default_database, postgres_unavailable
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

RESTARTS = sized(1, 3)


def _cursor(chain_id: int) -> int | None:
    return db_read(lambda: ChainCursor.objects.get(pk=chain_id).last_block_number or 0)


def test_postgres_restart_mid_indexing_and_delivery(
    devnet_factory, webhook_receiver, redis_server, process_group, tmp_path
):
    reason = postgres_unavailable()
    if reason:
        print(f"\npostgres restart: skipped: {reason}")
        pytest.skip(reason)
    source = dict(connections["default"].settings_dict)
    devnet = devnet_factory()
    with PrivatePostgres() as pg, django_default_database(pg.createdb_from(source, "erc8004_faults")):
        pipeline = pipeline_build(devnet, webhook_receiver, seed=71, every_feedback=True, batch_size=6)
        chain_id = pipeline.chain.chain_id
        webhook_receiver.slow(0.05)
        group = process_group
        group.env = stack_env(
            redis_server,
            DATABASE_URL=pg.url("erc8004_faults"),
            INDEXING_MAX_BLOCKS_PER_POLL="3",
            IPFS_GATEWAYS="http://127.0.0.1:9",
            ACTIONS_LEASE_MARGIN_SECONDS="2",
            ACTIONS_SWEEP_INTERVAL="1",
        )
        pipeline.workload.run(sized(200, 300))
        group.worker("indexing", pool="prefork", concurrency=2)
        group.worker("triggers")
        group.worker("actions", pool="threads", concurrency=4)
        group.beat()

        restarts = []
        for n in range(RESTARTS):
            # Mid-run: deliveries arriving, the indexer still behind.
            floor = len(webhook_receiver.accepted) + 5
            assert webhook_receiver.wait_for(lambda r, floor=floor: len(r.accepted) >= floor, timeout=120)
            indexed = _cursor(chain_id)
            arrived = len(webhook_receiver.accepted)
            t0 = time.monotonic()
            pg.restart()
            restarts.append((arrived, indexed, time.monotonic() - t0))
            assert indexed is not None
            assert indexed < devnet.w3.eth.block_number, f"restart {n + 1}: the indexer had caught up"
            if n + 1 < RESTARTS:
                pipeline.workload.run(40)  # the chain keeps moving between restarts
        last_restart = time.monotonic()

        head = devnet.w3.eth.block_number
        expected = low_feedback_count(pipeline.workload.truth(), every_feedback=True)
        assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=sized(150, 300)), (
            f"{len(webhook_receiver.accepted)} of {expected} arrived"
        )
        recovered_after = time.monotonic() - last_restart
        wait_for(lambda: (_cursor(chain_id) or 0) >= head, 60, what="indexing to finish")
        wait_for(
            lambda: db_read(lambda: not Delivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists()),
            60,
            what="all recorded",
        )
        settled_after = time.monotonic() - last_restart
        dead = {name: proc.returncode for name, proc in group.procs.items() if proc.poll() is not None}
        assert not dead, f"processes died: {dead}"
        truth = pipeline.workload.truth()
        # read_model_diff (in the verdict) also compares the event counts per type: nothing missing or doubled.
        verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_id, truth=truth)
        events = ChainEvent.objects.filter(chain_id=chain_id, removed=False).count()
        terminated = pg.logfile.read_text(errors="replace").count("terminating connection")
        print(
            f"\npostgres restart ({'full' if FULL else 'ci'}): {RESTARTS} fast restart(s) at "
            + ", ".join(f"{a}/{expected} deliveries, block {b} ({d:.1f}s)" for a, b, d in restarts)
            + f"; {terminated} sessions terminated; all {verdict.distinct} delivered {recovered_after:.1f}s after "
            f"the last restart (all recorded after {settled_after:.1f}s), {events} events indexed once; "
            f"resent under the same webhook-id: {verdict.resent}"
        )
