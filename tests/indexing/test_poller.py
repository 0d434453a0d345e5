"""indexing/poller.py against a real anvil devnet running the project's contracts.

Every test ends by comparing the database with the workload's ground truth
(tests/fixtures/truth.py), so "indexed" always means "indexed exactly right".
"""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone
from web3 import HTTPProvider, Web3

from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
from indexing.devnet.workload import Workload
from indexing.models import ChainCursor, ChainEvent, RpcEndpoint, UnknownLog
from indexing.poller import CursorMoved, _commit_range, chain_poll
from indexing.services import chain_reindex_from
from indexing.signals import events_indexed, events_removed
from tests.fixtures.rpc_proxy import FaultPlan
from tests.fixtures.truth import read_model_diff

pytestmark = pytest.mark.django_db


@pytest.fixture
def devnet(anvil_factory):
    """A fresh anvil with the contracts deployed and the chain registered."""
    anvil = anvil_factory()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    deployment = devnet_deploy(w3=w3)
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=deployment)
    workload = Workload(w3, deployment, seed=7)
    yield SimpleNamespace(anvil=anvil, w3=w3, deployment=deployment, chain=chain, workload=workload)
    workload.close()


def poll_until_caught_up(chain_id: int, limit: int = 200) -> list:
    results = []
    for _ in range(limit):
        result = chain_poll(chain_id=chain_id)
        results.append(result)
        assert result.outcome != "error", result.error
        if not result.behind and result.outcome not in ("busy", "retry"):
            return results
    raise AssertionError(f"not caught up after {limit} polls: {results[-3:]}")


def use_rpc(chain, url: str) -> None:
    RpcEndpoint.objects.filter(chain=chain).delete()
    RpcEndpoint.objects.create(chain=chain, url=url, priority=0)


class Collector:
    """Records what the indexer announces (a real signal receiver)."""

    def __init__(self) -> None:
        self.indexed: list[int] = []
        self.removed: list[int] = []

    def on_indexed(self, sender, *, events, **kwargs) -> None:
        self.indexed += [e.pk for e in events]

    def on_removed(self, sender, *, events, **kwargs) -> None:
        self.removed += [e.pk for e in events]


@pytest.fixture
def collector():
    c = Collector()
    events_indexed.connect(c.on_indexed, dispatch_uid="test-collector-indexed")
    events_removed.connect(c.on_removed, dispatch_uid="test-collector-removed")
    yield c
    events_indexed.disconnect(dispatch_uid="test-collector-indexed")
    events_removed.disconnect(dispatch_uid="test-collector-removed")


#
# Indexing
#


def test_every_event_type_is_indexed_exactly(devnet, collector):
    devnet.workload.run(400)
    poll_until_caught_up(devnet.chain.chain_id)
    truth = devnet.workload.truth()
    assert read_model_diff(truth, chain_id=devnet.chain.chain_id) == []
    assert len(collector.indexed) == ChainEvent.objects.filter(chain=devnet.chain).count()
    cursor = ChainCursor.objects.get(pk=devnet.chain.chain_id)
    assert cursor.last_block_number == devnet.w3.eth.block_number
    assert cursor.last_block_hash == devnet.w3.eth.get_block("latest")["hash"].to_0x_hex()
    assert cursor.last_error == ""


def test_rerunning_a_range_changes_nothing(devnet, collector):
    devnet.workload.run(200)
    poll_until_caught_up(devnet.chain.chain_id)
    ids_before = set(ChainEvent.objects.values_list("pk", flat=True))
    announced = len(collector.indexed)
    chain_reindex_from(chain_id=devnet.chain.chain_id, block=0)
    poll_until_caught_up(devnet.chain.chain_id)
    assert set(ChainEvent.objects.values_list("pk", flat=True)) == ids_before
    assert len(collector.indexed) == announced  # nothing re-announced, nothing re-projected
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []


def test_a_crash_between_fetch_and_commit_loses_and_duplicates_nothing(devnet):
    devnet.workload.run(150)

    def crash(sender, **kwargs):
        raise RuntimeError("worker died mid-batch")

    events_indexed.connect(crash, dispatch_uid="test-crash")
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            chain_poll(chain_id=devnet.chain.chain_id)
    finally:
        events_indexed.disconnect(dispatch_uid="test-crash")
    assert ChainEvent.objects.count() == 0
    assert ChainCursor.objects.get(pk=devnet.chain.chain_id).last_block_number is None
    poll_until_caught_up(devnet.chain.chain_id)
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []


def test_backfill_is_flagged_by_age(devnet):
    devnet.workload.run(30)
    devnet.chain.notify_max_age_seconds = 0
    devnet.chain.save()
    poll_until_caught_up(devnet.chain.chain_id)
    assert not ChainEvent.objects.filter(is_backfill=False).exists()


def test_events_before_a_deployment_start_block_are_ignored(devnet):
    devnet.workload.run(60)
    head = devnet.w3.eth.block_number
    devnet.chain.deployments.update(start_block=head + 1)
    poll_until_caught_up(devnet.chain.chain_id)
    assert ChainEvent.objects.count() == 0


#
# RPC trouble
#


def test_a_dead_first_rpc_url_fails_over(devnet):
    devnet.workload.run(80)
    RpcEndpoint.objects.filter(chain=devnet.chain).update(priority=5)
    dead = RpcEndpoint.objects.create(chain=devnet.chain, url="http://127.0.0.1:9", priority=0)
    poll_until_caught_up(devnet.chain.chain_id)
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []
    dead.refresh_from_db()
    assert "RpcUnavailable" not in dead.last_error  # message is the transport error itself
    assert dead.last_error
    assert dead.last_error_at is not None


@pytest.mark.parametrize("suggest", [False, True], ids=["bisect", "suggested-range"])
def test_a_node_refusing_wide_ranges_still_yields_every_event(devnet, rpc_proxy_factory, suggest):
    devnet.workload.run(250)
    proxy = rpc_proxy_factory(devnet.anvil.rpc_url, FaultPlan(max_log_range=7, suggest_range=suggest))
    use_rpc(devnet.chain, proxy.url)
    devnet.chain.max_block_range = 1000
    devnet.chain.save()
    poll_until_caught_up(devnet.chain.chain_id)
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []
    assert proxy.faults["range"] > 0
    assert ChainCursor.objects.get(pk=devnet.chain.chain_id).span <= 7


def test_flaky_node_with_429_500_and_truncated_json(devnet, rpc_proxy_factory, settings):
    settings.INDEXING_RPC_TIMEOUT = 1.0
    devnet.workload.run(120)
    plan = FaultPlan(rate_429=0.1, retry_after=0.05, rate_500=0.1, rate_truncated=0.1, seed=3)
    proxy = rpc_proxy_factory(devnet.anvil.rpc_url, plan)
    use_rpc(devnet.chain, proxy.url)
    for _ in range(100):
        result = chain_poll(chain_id=devnet.chain.chain_id)
        if result.outcome in ("indexed", "caught_up") and not result.behind:
            break
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []
    assert sum(proxy.faults.values()) > 0


def test_undecodable_logs_are_recorded_and_skipped(devnet, rpc_proxy_factory):
    devnet.workload.run(60)

    def mangle(logs):
        if not logs:
            return logs
        out = copy.deepcopy(logs)
        broken = out[0]
        broken["data"] = broken["data"][:10]  # wrong data length
        ghost = dict(out[-1], topics=["0x" + "99" * 32], logIndex=hex(900))
        return [*out, ghost]

    proxy = rpc_proxy_factory(devnet.anvil.rpc_url, FaultPlan(mangle_logs=mangle))
    use_rpc(devnet.chain, proxy.url)
    poll_until_caught_up(devnet.chain.chain_id)
    reasons = list(UnknownLog.objects.values_list("reason", flat=True))
    assert any("unknown topic0" in r for r in reasons)
    assert ChainCursor.objects.get(pk=devnet.chain.chain_id).last_block_number == devnet.w3.eth.block_number
    assert ChainCursor.objects.get(pk=devnet.chain.chain_id).unknown_log_count == len(reasons)


#
# Reorgs
#


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_reorg_rewinds_marks_removed_and_rebuilds(devnet, collector, depth):
    w3, workload = devnet.w3, devnet.workload
    workload.run(120)
    poll_until_caught_up(devnet.chain.chain_id)
    before = set(ChainEvent.objects.values_list("pk", flat=True))
    token = workload.snapshot()
    workload.run(25)  # the branch that will be orphaned
    w3.provider.make_request("anvil_mine", [hex(max(0, depth - 1))])
    poll_until_caught_up(devnet.chain.chain_id)
    orphan_ids = set(ChainEvent.objects.values_list("pk", flat=True)) - before
    assert orphan_ids
    workload.revert(token)
    workload.run(25)  # the branch that wins
    w3.provider.make_request("anvil_mine", [hex(depth + 1)])
    results = poll_until_caught_up(devnet.chain.chain_id)
    assert "reorg" in [r.outcome for r in results]
    assert set(collector.removed) == orphan_ids
    assert set(ChainEvent.objects.filter(removed=True).values_list("pk", flat=True)) == orphan_ids
    cursor = ChainCursor.objects.get(pk=devnet.chain.chain_id)
    assert cursor.reorg_count == 1
    assert read_model_diff(workload.truth(), chain_id=devnet.chain.chain_id) == []


#
# Locking
#


def test_a_held_lease_makes_a_second_poller_busy_until_it_expires(devnet):
    chain_poll(chain_id=devnet.chain.chain_id)
    ChainCursor.objects.filter(pk=devnet.chain.chain_id).update(
        lease_owner="other-worker", lease_until=timezone.now() + timezone.timedelta(seconds=60)
    )
    assert chain_poll(chain_id=devnet.chain.chain_id).outcome == "busy"
    ChainCursor.objects.filter(pk=devnet.chain.chain_id).update(
        lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert chain_poll(chain_id=devnet.chain.chain_id).outcome != "busy"


@pytest.mark.django_db(transaction=True)
def test_a_database_restart_mid_poll_does_not_leave_the_lease_held(devnet):
    """A PostgreSQL restart (or failover) kills the poller's connection mid-batch and
    refuses new ones for a moment. The poller is alive: it must give its lease back
    once the database answers again, or the chain stays blocked for every other worker
    for INDEXING_LEASE_SECONDS (150 s) — tests/faults/test_postgres_restart.py found
    this. Here the batch's own backend is terminated and the (per-checkout) test
    database refuses connections for a second, as during ``pg_ctl restart -m fast``."""
    import threading

    import psycopg2
    from django.db import OperationalError, connection

    devnet.workload.run(30)
    db = connection.settings_dict
    admin = psycopg2.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None, dbname="postgres"
    )
    admin.autocommit = True

    def allow(flag: bool) -> None:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS {str(flag).lower()}')

    def restart(sender, **kwargs):
        allow(False)
        threading.Timer(1.0, allow, (True,)).start()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    events_indexed.connect(restart, dispatch_uid="test-restart")
    try:
        with pytest.raises(OperationalError):
            chain_poll(chain_id=devnet.chain.chain_id, owner="worker-a")
    finally:
        events_indexed.disconnect(dispatch_uid="test-restart")
        time.sleep(1.5)
        allow(True)
        admin.close()
    cursor = ChainCursor.objects.get(pk=devnet.chain.chain_id)
    assert (cursor.lease_owner, cursor.lease_until, cursor.last_block_number) == ("", None, None)
    assert chain_poll(chain_id=devnet.chain.chain_id, owner="worker-b").outcome != "busy"
    poll_until_caught_up(devnet.chain.chain_id)
    assert read_model_diff(devnet.workload.truth(), chain_id=devnet.chain.chain_id) == []


def test_a_stale_poller_cannot_commit_over_a_newer_cursor(devnet):
    devnet.workload.run(20)
    stale = ChainCursor.objects.get_or_create(chain=devnet.chain)[0]
    poll_until_caught_up(devnet.chain.chain_id)
    with pytest.raises(CursorMoved):
        _commit_range(
            chain=devnet.chain,
            cursor=stale,
            end=stale.last_block_number or 0,
            headers={0: {"hash": "0x" + "00" * 32, "parentHash": "0x" + "00" * 32, "timestamp": "0x0"}},
            decoded=[],
            unknown=[],
            deployments={},
            span=1,
        )
