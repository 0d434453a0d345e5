"""The new-heads nudge: poll a chain the moment its node announces a block.

Beat polls every chain on a timer (``INDEXING_DISPATCH_INTERVAL``, each chain's
``poll_interval_seconds``), so a new block waits on average half a tick plus half a
poll interval before anyone looks at it — the floor of bench/e2e.py's polling mode.
``manage.py head_listener`` removes that wait: for every enabled chain whose enabled
RPC endpoint has a ``ws_url`` it keeps an ``eth_subscribe("newHeads")`` websocket open
and, on each head, enqueues that chain's poll task at once.

Polling stays the source of truth. A nudge is only an early ``poll_chain``: the same
task, the same per-chain lease (a nudge that finds a poll running retries briefly,
see ``indexing.tasks.poll_chain``), the same cursor check. A listener that is down,
a dropped websocket, a missed or malformed message only cost latency — beat still
polls every chain on its timer. That is why every error here is logged and retried
(reconnect with exponential backoff up to ``HEADS_RECONNECT_MAX_SECONDS``) and
nothing a node sends can crash the process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from .models import RpcEndpoint

__all__ = (
    "HeadFollower",
    "head_parse",
    "heads_listen",
    "poll_nudge",
    "ws_url_derive",
    "ws_urls_load",
)

logger = logging.getLogger("erc8004.indexing.heads")

# How long one recv waits before the loop looks at its stop flag again.
_RECV_TIMEOUT = 1.0
# A nudge older than this is pointless: beat has polled since.
_NUDGE_EXPIRES = 10.0


def ws_url_derive(http_url: str) -> str:
    """The websocket URL of a node that serves both on one port (anvil, geth with
    ``--ws`` on the http port, most local nodes): http→ws, https→wss."""
    if http_url.startswith("https://"):
        return "wss://" + http_url.removeprefix("https://")
    if http_url.startswith("http://"):
        return "ws://" + http_url.removeprefix("http://")
    raise ValueError(f"not an http(s) URL: {http_url!r}")


def ws_urls_load() -> dict[int, str]:
    """chain id → the websocket URL to follow: the first enabled endpoint (by priority)
    with a ``ws_url``, for every enabled chain that has one."""
    found: dict[int, str] = {}
    endpoints = (
        RpcEndpoint.objects.filter(enabled=True, chain__enabled=True)
        .exclude(ws_url="")
        .order_by("chain_id", "priority", "id")
        .values_list("chain_id", "ws_url")
    )
    for chain_id, ws_url in endpoints:
        found.setdefault(chain_id, ws_url)
    return found


def head_parse(message: str | bytes, subscription: str | None = None) -> int | None:
    """The block number of an ``eth_subscription`` newHeads notification (for
    ``subscription`` when given), or None for anything else — never raises: a node's
    message is untrusted input."""
    try:
        data = json.loads(message)
        if not isinstance(data, dict) or data.get("method") != "eth_subscription":
            return None
        params = data.get("params")
        if not isinstance(params, dict):
            return None
        if subscription is not None and params.get("subscription") != subscription:
            return None
        result = params.get("result")
        number = result.get("number") if isinstance(result, dict) else None
        if not isinstance(number, str) or not number.startswith("0x"):
            return None
        return int(number, 16)
    except (ValueError, TypeError):
        return None


def poll_nudge(chain_id: int, head: int) -> None:
    """Enqueue the chain's poll now (the task beat sends, marked as a nudge for ``head``)."""
    from .tasks import poll_chain

    poll_chain.apply_async((chain_id,), {"head": head}, expires=_NUDGE_EXPIRES)


def _subscribe(ws: Any) -> str:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if isinstance(data, dict) and data.get("id") == 1:
            if "error" in data or not isinstance(data.get("result"), str):
                raise ConnectionError(f"eth_subscribe refused: {data.get('error') or data}")
            return data["result"]
    raise TimeoutError("no answer to eth_subscribe")


def heads_listen(
    *,
    chain_id: int,
    ws_url: str,
    on_head: Callable[[int, int], None],
    stop: threading.Event,
    backoff_max: float | None = None,
    on_connect: Callable[[int], None] | None = None,
) -> None:
    """Follow one chain's new heads until ``stop`` is set, calling ``on_head(chain_id,
    number)`` for each. Reconnects with exponential backoff (1 s doubling up to
    ``backoff_max``, reset once a subscription is up); ``on_connect(chain_id)`` after
    each successful subscription (tests and metrics watch it)."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    backoff_max = settings.HEADS_RECONNECT_MAX_SECONDS if backoff_max is None else backoff_max
    delay = min(1.0, backoff_max)
    while not stop.is_set():
        try:
            with connect(ws_url, open_timeout=10, close_timeout=2, max_size=2**20) as ws:
                subscription = _subscribe(ws)
                logger.info("chain %s: following new heads at %s", chain_id, ws_url)
                delay = min(1.0, backoff_max)
                if on_connect:
                    on_connect(chain_id)
                while not stop.is_set():
                    try:
                        message = ws.recv(timeout=_RECV_TIMEOUT)
                    except TimeoutError:
                        continue
                    number = head_parse(message, subscription)
                    if number is None:
                        continue
                    try:
                        on_head(chain_id, number)
                    except Exception:  # a broker hiccup must not end the subscription
                        logger.warning("chain %s: could not nudge a poll for head %s", chain_id, number, exc_info=True)
        except (OSError, WebSocketException, ValueError) as exc:  # refused, dropped, handshake, bad answer
            if stop.is_set():
                return
            logger.warning("chain %s: new-heads websocket %s: %s; retrying in %.0fs", chain_id, ws_url, exc, delay)
        except Exception:
            if stop.is_set():
                return
            logger.exception("chain %s: new-heads listener failed; retrying in %.0fs", chain_id, delay)
        if stop.wait(delay):
            return
        delay = min(backoff_max, delay * 2)


@dataclass
class HeadFollower:
    """One ``heads_listen`` thread per chain with a websocket URL; ``sync()`` starts,
    stops and restarts them to match the endpoints in the database."""

    on_head: Callable[[int, int], None] = poll_nudge
    backoff_max: float | None = None
    _threads: dict[int, tuple[str, threading.Event, threading.Thread]] = field(default_factory=dict)

    def sync(self) -> dict[int, str]:
        wanted = ws_urls_load()
        close_old_connections()
        for chain_id, (url, stop, _thread) in list(self._threads.items()):
            if wanted.get(chain_id) != url:
                stop.set()
                del self._threads[chain_id]
        for chain_id, url in wanted.items():
            if chain_id not in self._threads:
                stop = threading.Event()
                thread = threading.Thread(
                    target=heads_listen,
                    kwargs={
                        "chain_id": chain_id,
                        "ws_url": url,
                        "on_head": self.on_head,
                        "stop": stop,
                        "backoff_max": self.backoff_max,
                    },
                    name=f"heads-{chain_id}",
                    daemon=True,
                )
                thread.start()
                self._threads[chain_id] = (url, stop, thread)
        return wanted

    def stop(self, timeout: float = 5.0) -> None:
        for _url, stop, _thread in self._threads.values():
            stop.set()
        for _url, _stop, thread in self._threads.values():
            thread.join(timeout)
        self._threads.clear()
