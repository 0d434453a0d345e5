"""Fault scenario 4: a flaky RPC provider (docs/reliability.md).

Issue text: "A loopback RPC proxy in front of anvil that fails 20 % of calls (HTTP 429
with Retry-After, 500, timeouts, truncated JSON, a block-range limit) and sometimes
returns a stale head."

The stack runs as deployed (a Celery worker per queue and beat, subprocesses on a
private ``redis-server``, metrics in multiprocess mode as under ``make run``). Two
devnet chains get the same seeded workload while they are being indexed, one after
the other:

* the **baseline** chain's endpoint is anvil itself;
* the **faulty** chain has two endpoints, each a proxy (tests/fixtures/rpc_proxy.py)
  in front of its anvil with its own seeded fault stream: 429 + Retry-After, 500,
  a hang past the client's timeout, a JSON body cut in half, ``eth_getLogs`` refused
  over more than 2 blocks (Infura's -32005), and ``eth_blockNumber`` answering an
  older head now and then. The client fails over between the two.

Verdict: every delivery of both chains arrived exactly once (harness), the read
model of each chain equals its truth, and the faulty chain caught up. Reported: the
faults injected by kind, the RPC errors and failovers the product counted
(``erc8004_rpc_errors_total`` / ``erc8004_rpc_failovers_total``), and the time to
catch up after the workload stopped, faulty vs. baseline.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, multiprocess

from actions.models import Delivery, DeliveryStatus
from indexing.devnet.contracts import devnet_register_chain
from indexing.devnet.workload import Workload
from indexing.models import ChainCursor, RpcEndpoint
from tests.faults.harness import FULL, OFFLINE_ENV, sized, verdict_check
from tests.fixtures.pipeline import low_feedback_count, pipeline_build
from tests.fixtures.processes import stack_env, wait_for
from tests.fixtures.rpc_proxy import FaultPlan
from tests.fixtures.truth import read_model_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

BURSTS = sized(20, 150)  # the workload runs in bursts while the chain is indexed
OPS_PER_BURST = 12
PAUSE = 0.3  # seconds between bursts
BATCH = 8  # transactions per block: many blocks, many polls
SEED = 41
RPC_TIMEOUT = 1.0  # the workers' INDEXING_RPC_TIMEOUT; the proxy hangs longer


def _plan(seed: int) -> FaultPlan:
    """About one HTTP request in five fails (1 - .95 * .95 * .96 * .95 ≈ 18 %, plus the
    range refusals), and one eth_blockNumber in four is 3 blocks stale."""
    return FaultPlan(
        max_log_range=2,
        suggest_range=False,
        rate_429=0.05,
        retry_after=0.5,
        rate_500=0.05,
        rate_timeout=0.04,
        timeout_seconds=RPC_TIMEOUT * 2,
        rate_truncated=0.05,
        rate_stale_head=0.25,
        stale_by=3,
        seed=seed,
    )


def _counter(directory: str, name: str, chain_id: int) -> Counter:
    """A counter of the worker processes (multiprocess files), summed by its ``kind``
    label (or in total under ""), for one chain."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    found: Counter = Counter()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("chain") == str(chain_id):
                found[sample.labels.get("kind", "")] += int(sample.value)
    return found


def _caught_up(chain_id: int, w3) -> bool:
    head = w3.eth.get_block("latest")
    cursor = ChainCursor.objects.filter(pk=chain_id).first()
    return (
        cursor is not None
        and cursor.last_block_number == head["number"]
        and (cursor.last_block_hash == w3.to_hex(head["hash"]))
    )


@pytest.mark.timeout(sized(240, 900))
def test_flaky_rpc_provider_loses_and_repeats_nothing(
    devnet_factory, webhook_receiver, redis_server, process_group, rpc_proxy_factory, tmp_path
):
    started = time.monotonic()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    baseline = devnet_factory(chain_id=31337)
    faulty = devnet_factory(chain_id=31338)
    # The baseline chain, its organization, webhook destination and a trigger on every
    # NewFeedback of every chain (so the faulty chain's events fire it too).
    pipeline = pipeline_build(baseline, webhook_receiver, seed=SEED, every_feedback=True, batch_size=BATCH)
    chain_a = pipeline.chain.chain_id
    chain_b = faulty.w3.eth.chain_id
    proxies = [rpc_proxy_factory(faulty.anvil.rpc_url, _plan(seed)) for seed in (101, 202)]

    group = process_group
    group.env = stack_env(
        redis_server,
        **OFFLINE_ENV,
        INDEXING_RPC_TIMEOUT=str(RPC_TIMEOUT),
        INDEXING_MAX_BLOCKS_PER_POLL="4",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    # As deploy/ runs them: the indexing queue on two processes (polls beside file fetches).
    group.worker("indexing", pool="prefork", concurrency=2)
    group.worker("triggers")
    group.worker("actions", pool="threads", concurrency=4)
    group.beat()

    def run(devnet, workload: Workload, chain_id: int, earlier: int) -> tuple[float, float]:
        """The workload while the chain is indexed; (seconds to catch up after it
        stopped, seconds from its start) — caught up = cursor at the head's hash and
        every delivery so far (``earlier`` ones of the other chain too) arrived."""

        def settled(expected: int) -> bool:
            return _caught_up(chain_id, devnet.w3) and len(webhook_receiver.accepted) >= expected

        # Warm-up burst (not measured), the same on both chains: first polls, first
        # deliveries, worker caches — so the baseline does not pay for the start-up.
        wait_for(lambda: _caught_up(chain_id, devnet.w3), 120, what=f"chain {chain_id} to be followed")
        workload.run(OPS_PER_BURST)
        warm = earlier + low_feedback_count(workload.truth(), every_feedback=True)
        wait_for(lambda: settled(warm), 120, what=f"chain {chain_id} to warm up")
        t0 = time.monotonic()
        for _ in range(BURSTS):
            workload.run(OPS_PER_BURST)
            time.sleep(PAUSE)
        t_end = time.monotonic()
        expected = earlier + low_feedback_count(workload.truth(), every_feedback=True)
        wait_for(
            lambda: settled(expected),
            sized(120, 600),
            what=f"chain {chain_id} to catch up and deliver",
        )
        done = time.monotonic()
        return done - t_end, done - t0

    base_catchup, base_total = run(baseline, pipeline.workload, chain_a, 0)
    expected_a = low_feedback_count(pipeline.workload.truth(), every_feedback=True)

    # The faulty chain: same workload (same seed), endpoints = the two proxies.
    chain = devnet_register_chain(rpc_url=proxies[0].url, chain_id=chain_b, deployment=faulty.deployment)
    RpcEndpoint.objects.create(chain=chain, url=proxies[1].url, priority=1)
    workload_b = Workload(faulty.w3, faulty.deployment, seed=SEED, batch_size=BATCH)
    try:
        fault_catchup, fault_total = run(faulty, workload_b, chain_b, expected_a)
    finally:
        workload_b.close()
    expected = expected_a + low_feedback_count(workload_b.truth(), every_feedback=True)

    wait_for(
        lambda: set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED},
        30,
        what="every delivery recorded as succeeded",
    )
    verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_b, truth=workload_b.truth())
    assert read_model_diff(pipeline.workload.truth(), chain_id=chain_a) == []

    injected: Counter = Counter()
    for proxy in proxies:
        injected.update(proxy.faults)
    requests = sum(p.requests for p in proxies)
    errors = _counter(str(metrics_dir), "erc8004_rpc_errors_total", chain_b)
    failovers = sum(_counter(str(metrics_dir), "erc8004_rpc_failovers_total", chain_b).values())
    failing = sum(v for k, v in injected.items() if k != "stale_head")
    print(
        f"\nflaky RPC: {requests} requests to 2 proxies, {failing} failed ({100 * failing / requests:.0f}%) — "
        f"{dict(sorted(injected.items()))}; product counted errors {dict(sorted(errors.items()))}, "
        f"{failovers} failovers; {verdict.distinct} deliveries once each ({verdict.resent} resent ids); "
        f"{BURSTS * OPS_PER_BURST} txs per chain in {BURSTS} bursts after a warm-up: "
        f"caught up {fault_catchup:.1f}s after the workload (baseline {base_catchup:.1f}s), "
        f"{fault_total:.1f}s from its start (baseline {base_total:.1f}s); test {time.monotonic() - started:.0f}s"
    )
    assert failing > 0
    if FULL:  # enough requests for every kind to come up (at CI size a rare kind may not)
        for kind in ("429", "500", "timeout", "truncated", "range", "stale_head"):
            assert injected[kind] > 0, f"no {kind} fault was injected: make the workload longer"
    # Every 429 reached the client at once (nothing else can mask it): the product's counter agrees.
    assert errors["RpcRateLimited"] == injected["429"]
    assert sum(errors.values()) > 0, "the product counted no RPC error"
    assert failovers > 0, "the product never failed over"
