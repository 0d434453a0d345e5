"""indexing/rpc.py against a real anvil, directly and through the misbehaving proxy:
failover, error classification, Retry-After, batches, and eth_getLogs ranges that
adapt to both the node's limits and the chain's density."""

from __future__ import annotations

import pytest
from web3 import HTTPProvider, Web3

from indexing.decoding import known_topics
from indexing.devnet.contracts import devnet_deploy
from indexing.devnet.workload import Workload
from indexing.rpc import RpcClient, RpcRangeTooLarge, RpcResponseError, RpcUnavailable, _classify_error, logs_fetch
from tests.fixtures.rpc_proxy import FaultPlan


@pytest.fixture
def dense_chain(anvil_factory):
    """A devnet with a few hundred registry logs packed into a handful of blocks."""
    anvil = anvil_factory(accounts=20, gas_limit=300_000_000)
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    deployment = devnet_deploy(w3=w3)
    workload = Workload(w3, deployment, seed=3)
    workload.run(300)
    workload.close()
    return anvil, w3, list(deployment.addresses().values()), deployment.block


def fetch(client, addresses, first, last, **kwargs):
    return logs_fetch(client, addresses=addresses, topics0=known_topics(), from_block=first, to_block=last, **kwargs)


def test_density_narrows_the_range_and_loses_nothing(dense_chain):
    anvil, w3, addresses, first = dense_chain
    client = RpcClient(urls=[anvil.rpc_url])
    last = w3.eth.block_number
    everything, _ = fetch(client, addresses, first, last, span=10_000, max_span=10_000)
    assert len(everything) > 200
    adaptive, span = fetch(client, addresses, first, last, span=1, max_span=10_000, target_logs=20)
    assert [(log["blockNumber"], log["logIndex"]) for log in adaptive] == [
        (log["blockNumber"], log["logIndex"]) for log in everything
    ]
    # Blocks here hold far more than 20 logs each: the learned span never widened.
    assert span == 1


def test_refused_ranges_shrink_to_the_nodes_limit(dense_chain, rpc_proxy_factory):
    anvil, w3, addresses, first = dense_chain
    proxy = rpc_proxy_factory(anvil.rpc_url, FaultPlan(max_log_range=3, suggest_range=True))
    client = RpcClient(urls=[proxy.url])
    logs, span = fetch(client, addresses, first, w3.eth.block_number, span=100, max_span=100)
    direct, _ = fetch(RpcClient(urls=[anvil.rpc_url]), addresses, first, w3.eth.block_number, span=100, max_span=100)
    assert len(logs) == len(direct)
    assert span <= 3
    assert proxy.faults["range"] >= 1


def test_a_single_refused_block_is_an_error_not_a_gap(dense_chain, rpc_proxy_factory):
    anvil, _, addresses, first = dense_chain
    proxy = rpc_proxy_factory(anvil.rpc_url, FaultPlan(max_log_range=0))
    with pytest.raises(RpcRangeTooLarge):
        fetch(RpcClient(urls=[proxy.url]), addresses, first, first, span=1, max_span=1)


def test_failover_rotates_past_a_dead_url_and_records_it(anvil):
    client = RpcClient(urls=["http://127.0.0.1:9", anvil.rpc_url], sleep=lambda s: None)
    assert client.block_number() >= 0
    assert client.health["http://127.0.0.1:9"].failures == 1
    assert client.health[anvil.rpc_url].successes == 1


def test_retry_after_is_honoured_before_the_next_try(anvil, rpc_proxy_factory):
    proxy = rpc_proxy_factory(anvil.rpc_url, FaultPlan(rate_429=1.0, retry_after=1.5))
    slept: list[float] = []
    client = RpcClient(urls=[proxy.url], max_attempts=2, sleep=slept.append)
    with pytest.raises(Exception, match="429"):
        client.block_number()
    assert slept[0] == pytest.approx(1.5)


def test_truncated_json_is_transient(anvil, rpc_proxy_factory):
    proxy = rpc_proxy_factory(anvil.rpc_url, FaultPlan(rate_truncated=1.0))
    client = RpcClient(urls=[proxy.url], max_attempts=2, sleep=lambda s: None)
    with pytest.raises(RpcUnavailable, match="invalid JSON"):
        client.block_number()


def test_batch_results_come_back_in_request_order(anvil):
    client = RpcClient(urls=[anvil.rpc_url])
    headers = client.blocks_by_number([0, 0, 0])
    assert [h["number"] for h in headers] == ["0x0", "0x0", "0x0"]


@pytest.mark.parametrize(
    ("error", "kind", "suggested"),
    [
        (
            {
                "code": -32005,
                "message": "query returned more than 10000 results. Try with this block range [0x10, 0x20].",
            },
            RpcRangeTooLarge,
            (16, 32),
        ),
        (
            {
                "code": -32602,
                "message": "Log response size exceeded. ... this block range should work: [0x0, 0xd043b8]",
            },
            RpcRangeTooLarge,
            (0, 0xD043B8),
        ),
        ({"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"}, RpcResponseError, None),
        ({"code": -32000, "message": "header not found"}, RpcUnavailable, None),
    ],
)
def test_errors_are_classified(error, kind, suggested):
    exc = _classify_error(error, endpoint="x", method="eth_getLogs")
    assert isinstance(exc, kind)
    if suggested:
        assert exc.suggested == suggested
