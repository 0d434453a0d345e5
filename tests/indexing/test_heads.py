"""indexing/heads.py: the new-heads nudge against real anvil websockets.

* a new block announced over ``newHeads`` makes the real worker run the chain's poll —
  with no beat running, nothing else could have polled;
* the listener survives its websocket dropping (anvil stopped and restarted on the
  same port) and follows the new node once it is back;
* nothing a node sends crashes it: a loopback websocket "node" answers the
  subscription, then sends garbage, then a real notification, which still counts.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from web3 import HTTPProvider, Web3

from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
from indexing.heads import HeadFollower, head_parse, heads_listen, ws_url_derive, ws_urls_load
from indexing.models import ChainCursor, RpcEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "message",
    [
        b"\xff\xfe not json",
        "[]",
        "null",
        '{"jsonrpc": "2.0", "id": 7, "result": "0x1"}',
        '{"method": "eth_subscription", "params": "x"}',
        '{"method": "eth_subscription", "params": {"subscription": "0xa", "result": {"number": 12}}}',
        '{"method": "eth_subscription", "params": {"subscription": "0xa", "result": {"number": "0xzz"}}}',
        '{"method": "eth_subscription", "params": {"subscription": "0xb", "result": {"number": "0x10"}}}',
    ],
)
def test_anything_but_a_head_of_our_subscription_is_ignored(message):
    assert head_parse(message, "0xa") is None


def test_a_head_parses_and_urls_derive():
    message = '{"method": "eth_subscription", "params": {"subscription": "0xa", "result": {"number": "0x10"}}}'
    assert head_parse(message, "0xa") == 16
    assert ws_url_derive("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert ws_url_derive("https://node.example/rpc") == "wss://node.example/rpc"


def test_a_new_block_makes_the_worker_poll_at_once(anvil_factory, celery_worker):
    anvil = anvil_factory()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=devnet_deploy(w3=w3))
    assert ws_urls_load() == {chain.chain_id: ws_url_derive(anvil.rpc_url)}
    follower = HeadFollower(backoff_max=0.5)
    try:
        follower.sync()

        # Beat is not running: only a nudge can poll. Mine a block a second until one
        # is indexed (the subscription may still be opening when the first is mined),
        # then one more, which must be indexed too.
        def indexed(block: int) -> bool:
            done = ChainCursor.objects.filter(pk=chain.chain_id).values_list("last_block_number", flat=True).first()
            return done is not None and done >= block

        for _ in range(20):
            w3.provider.make_request("evm_mine", [])
            if wait_until(lambda block=w3.eth.block_number: indexed(block), 1.0):
                break
        w3.provider.make_request("evm_mine", [])
        target = w3.eth.block_number
        assert wait_until(lambda: indexed(target), 30)
        assert ChainCursor.objects.get(pk=chain.chain_id).head_block >= target
    finally:
        follower.stop()


def test_the_listener_reconnects_after_the_websocket_drops(anvil_factory):
    first = anvil_factory()
    ws_url = ws_url_derive(first.rpc_url)
    heads: list[int] = []
    connects: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=heads_listen,
        kwargs={
            "chain_id": 31337,
            "ws_url": ws_url,
            "on_head": lambda chain_id, number: heads.append(number),
            "stop": stop,
            "backoff_max": 0.5,
            "on_connect": connects.append,
        },
        daemon=True,
    )
    thread.start()
    try:
        w3 = Web3(HTTPProvider(first.rpc_url))
        assert wait_until(lambda: connects == [31337])
        w3.provider.make_request("evm_mine", [])
        assert wait_until(lambda: 1 in heads)

        port = first.port
        first.stop()  # the websocket drops; reconnects are refused while the port is closed
        time.sleep(1.5)
        assert thread.is_alive()
        second = anvil_factory(port=port)
        assert wait_until(lambda: len(connects) == 2)
        heads.clear()
        Web3(HTTPProvider(second.rpc_url)).provider.make_request("evm_mine", [])
        assert wait_until(lambda: 1 in heads)  # the restarted chain's block 1, over the new socket
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_garbage_from_the_node_does_not_end_the_subscription():
    from websockets.sync.server import serve

    def node(ws) -> None:
        request = json.loads(ws.recv())
        ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0xfeed"}))
        for junk in ("not json", "[1, 2]", '{"method": "eth_subscription", "params": {"result": {}}}'):
            ws.send(junk)
        ws.send(b"\x00\x01binary")
        head = {"subscription": "0xfeed", "result": {"number": "0x2a", "hash": "0x" + "00" * 32}}
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": head}))
        with contextlib.suppress(Exception):  # the listener closes when the test stops it
            ws.recv(timeout=10)

    with serve(node, "127.0.0.1", 0) as server:
        server_thread = threading.Thread(target=server.serve_forever, daemon=True)
        server_thread.start()
        port = server.socket.getsockname()[1]
        heads: list[int] = []
        stop = threading.Event()
        thread = threading.Thread(
            target=heads_listen,
            kwargs={
                "chain_id": 1,
                "ws_url": f"ws://127.0.0.1:{port}",
                "on_head": lambda chain_id, number: heads.append(number),
                "stop": stop,
                "backoff_max": 0.5,
            },
            daemon=True,
        )
        thread.start()
        try:
            assert wait_until(lambda: heads == [42], 10)
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(10)
            server.shutdown()


def test_endpoints_without_a_websocket_or_disabled_are_not_followed(anvil_factory):
    anvil = anvil_factory()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=devnet_deploy(w3=w3))
    RpcEndpoint.objects.filter(chain=chain).update(ws_url="")
    assert ws_urls_load() == {}
    RpcEndpoint.objects.filter(chain=chain).update(ws_url="ws://127.0.0.1:1", enabled=False)
    assert ws_urls_load() == {}
