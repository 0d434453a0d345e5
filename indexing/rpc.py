"""A small JSON-RPC client built for polling: several endpoints per chain with
failover, error classification, and adaptive ``eth_getLogs`` range splitting.

Why not web3's provider retries: they retry blindly on one URL, never retry batches,
and cannot tell "range too large" (shrink and continue) from "rate limited" (back
off, rotate) from "node down" (rotate). The poller needs all three told apart
(reference/stack.md §2.2, §2.7, §2.8). Logs stay raw hex dicts — formatting them into
web3 AttributeDicts would cost more than decoding them.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from erc8004 import metrics

__all__ = (
    "RpcClient",
    "RpcError",
    "RpcRangeTooLarge",
    "RpcRateLimited",
    "RpcResponseError",
    "RpcUnavailable",
    "logs_fetch",
)

logger = logging.getLogger("erc8004.indexing.rpc")


class RpcError(Exception):
    """Base of every RPC failure; ``endpoint`` is the URL that produced it."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class RpcUnavailable(RpcError):
    """Transport trouble: connection refused, timeout, HTTP 5xx, truncated or non-JSON body."""


class RpcRateLimited(RpcError):
    """HTTP 429 or a JSON-RPC rate-limit error; ``retry_after`` in seconds when the node said."""

    def __init__(self, message: str, *, endpoint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_after = retry_after


class RpcRangeTooLarge(RpcError):
    """The node refused an eth_getLogs range or result size; ``suggested`` is the range it proposed."""

    def __init__(self, message: str, *, endpoint: str = "", suggested: tuple[int, int] | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.suggested = suggested


class RpcResponseError(RpcError):
    """A JSON-RPC error that is not about transport, rate or range (bad params, ...)."""

    def __init__(self, message: str, *, endpoint: str = "", code: int | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.code = code


_RANGE_HINTS = (
    "more than",
    "limit exceeded",
    "query timeout",
    "block range",
    "range too large",
    "range is too large",
    "response size",
    "too many",
    "exceed",
    "max range",
)
_RATE_HINTS = ("rate limit", "too many requests", "rate-limit", "throttl", "capacity")
_SUGGESTED_RANGE_RE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")


def _classify_error(error: dict[str, Any], *, endpoint: str, method: str) -> RpcError:
    code = error.get("code")
    message = str(error.get("message", ""))
    lowered = message.lower()
    if code == 429 or any(hint in lowered for hint in _RATE_HINTS):
        return RpcRateLimited(message, endpoint=endpoint)
    if method == "eth_getLogs" and (code in (-32005, -32602, -32614) or any(h in lowered for h in _RANGE_HINTS)):
        if code == -32602 and not any(h in lowered for h in _RANGE_HINTS):
            return RpcResponseError(message, endpoint=endpoint, code=code)
        suggested = None
        found = _SUGGESTED_RANGE_RE.search(message) or _SUGGESTED_RANGE_RE.search(json.dumps(error.get("data", "")))
        if found:
            suggested = (int(found.group(1), 16), int(found.group(2), 16))
        return RpcRangeTooLarge(message, endpoint=endpoint, suggested=suggested)
    if code in (-32000, -32603) and ("header not found" in lowered or "unknown block" in lowered):
        # A load-balanced node that is a block behind: transient, try another.
        return RpcUnavailable(message, endpoint=endpoint)
    return RpcResponseError(message, endpoint=endpoint, code=code)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass
class EndpointHealth:
    """What the client learned about one URL during its life (the poller persists it)."""

    url: str
    successes: int = 0
    failures: int = 0
    last_error: str = ""


@dataclass
class RpcClient:
    """JSON-RPC over HTTP to a list of endpoints tried in order, rotating on failure.

    ``max_attempts`` bounds the total tries of one call across all endpoints;
    between full rounds it backs off exponentially with jitter (honouring a node's
    Retry-After up to ``max_backoff``). A call that still fails raises the last error.
    """

    urls: Sequence[str]
    chain_id: int = 0
    timeout: float = 10.0
    max_attempts: int = 6
    base_backoff: float = 0.25
    max_backoff: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    _current: int = 0
    _next_id: int = 1
    health: dict[str, EndpointHealth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an RpcClient needs at least one URL")
        self.health = {url: EndpointHealth(url) for url in self.urls}

    @property
    def url(self) -> str:
        return self.urls[self._current]

    def _rotate(self) -> None:
        if len(self.urls) > 1:
            metrics.RPC_FAILOVERS.labels(chain=str(self.chain_id)).inc()
        self._current = (self._current + 1) % len(self.urls)

    def _post(self, payload: Any, *, method: str) -> Any:
        url = self.url
        metrics.RPC_CALLS.labels(chain=str(self.chain_id), method=method).inc()
        try:
            response = self.session.post(url, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RpcUnavailable(f"{type(exc).__name__}: {exc}", endpoint=url) from exc
        if response.status_code == 429:
            raise RpcRateLimited(
                "HTTP 429", endpoint=url, retry_after=_retry_after_seconds(response.headers.get("Retry-After"))
            )
        if response.status_code == 413:
            raise RpcRangeTooLarge("HTTP 413", endpoint=url)
        if response.status_code >= 500 or response.status_code in (408, 502, 503, 504):
            raise RpcUnavailable(f"HTTP {response.status_code}", endpoint=url)
        if response.status_code >= 400:
            raise RpcResponseError(f"HTTP {response.status_code}: {response.text[:200]}", endpoint=url)
        try:
            return response.json()
        except ValueError as exc:
            raise RpcUnavailable(f"invalid JSON body ({len(response.content)} bytes)", endpoint=url) from exc

    def _with_failover(self, method: str, send: Callable[[], Any]) -> Any:
        last: RpcError | None = None
        for attempt in range(self.max_attempts):
            try:
                result = send()
            except (RpcUnavailable, RpcRateLimited) as exc:
                last = exc
                self.health[exc.endpoint].failures += 1
                self.health[exc.endpoint].last_error = str(exc)[:500]
                metrics.RPC_ERRORS.labels(chain=str(self.chain_id), kind=type(exc).__name__).inc()
                logger.warning("rpc %s failed on %s: %s", method, exc.endpoint, exc)
                self._rotate()
                # Back off once per full round over the endpoints, or when told to.
                if isinstance(exc, RpcRateLimited) and exc.retry_after is not None:
                    self.sleep(min(exc.retry_after, self.max_backoff))
                elif (attempt + 1) % len(self.urls) == 0:
                    delay = min(self.max_backoff, self.base_backoff * 2 ** (attempt // len(self.urls)))
                    self.sleep(random.uniform(delay / 2, delay))
                continue
            except RpcError as exc:
                metrics.RPC_ERRORS.labels(chain=str(self.chain_id), kind=type(exc).__name__).inc()
                raise
            self.health[self.url].successes += 1
            return result
        assert last is not None
        raise last

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call with failover; returns ``result`` or raises an RpcError."""

        def send() -> Any:
            request_id = self._next_id
            self._next_id += 1
            body = self._post(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}, method=method
            )
            if not isinstance(body, dict):
                raise RpcUnavailable("response is not a JSON-RPC object", endpoint=self.url)
            if "error" in body and body["error"] is not None:
                raise _classify_error(body["error"], endpoint=self.url, method=method)
            if "result" not in body:
                raise RpcUnavailable("response has no result", endpoint=self.url)
            return body["result"]

        return self._with_failover(method, send)

    def batch(self, calls: Sequence[tuple[str, list[Any]]], *, chunk: int = 100) -> list[Any]:
        """Several calls in JSON-RPC batches of ``chunk``; results in request order.

        An error in any element fails the chunk (and is classified like a single call),
        so the caller never sees a partial answer.
        """
        results: list[Any] = []
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            method = part[0][0] if part else "batch"

            def send(part: Sequence[tuple[str, list[Any]]] = part, method: str = method) -> list[Any]:
                base = self._next_id
                self._next_id += len(part)
                payload = [
                    {"jsonrpc": "2.0", "id": base + i, "method": m, "params": p} for i, (m, p) in enumerate(part)
                ]
                body = self._post(payload, method=method)
                if not isinstance(body, list) or len(body) != len(part):
                    raise RpcUnavailable("batch response is not a list of the right length", endpoint=self.url)
                by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
                out = []
                for i, (m, _) in enumerate(part):
                    item = by_id.get(base + i)
                    if item is None:
                        raise RpcUnavailable("batch response is missing an id", endpoint=self.url)
                    if item.get("error") is not None:
                        raise _classify_error(item["error"], endpoint=self.url, method=m)
                    out.append(item.get("result"))
                return out

            results.extend(self._with_failover(method, send))
        return results

    # Typed helpers for the calls the poller makes.

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block_by_number(self, number: int | str) -> dict[str, Any] | None:
        tag = hex(number) if isinstance(number, int) else number
        return self.call("eth_getBlockByNumber", [tag, False])

    def blocks_by_number(self, numbers: Sequence[int]) -> list[dict[str, Any] | None]:
        return self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])

    def chain_id_fetch(self) -> int:
        return int(self.call("eth_chainId"), 16)


def logs_fetch(
    client: RpcClient,
    *,
    addresses: Sequence[str],
    topics0: Sequence[str],
    from_block: int,
    to_block: int,
    span: int,
    max_span: int,
    target_logs: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """All logs of ``addresses`` with any of ``topics0`` in ``[from_block, to_block]``.

    Walks the range in chunks of ``span`` blocks; shrinks the span (to the node's
    suggestion, else by half) when the node refuses a range or a result size, and
    adapts it to the chain's density: a chunk with more than ``target_logs`` logs
    makes the next one proportionally narrower, a sparse one doubles it. So one
    response stays about ``target_logs`` long however dense the history — a devnet
    with hundreds of logs per block once returned its whole history in one call.
    Returns the logs in chain order and the span learned, which the caller persists
    so the next poll starts from a fitting size. A single block the node still
    refuses raises :class:`RpcRangeTooLarge` — nothing is skipped.
    """
    span = max(1, min(span or max_span, max_span))
    ceiling = max_span  # lowered by each refusal, so a refused size is not tried again this call
    logs: list[dict[str, Any]] = []
    start = from_block
    while start <= to_block:
        end = min(to_block, start + span - 1)
        flt = {"fromBlock": hex(start), "toBlock": hex(end), "address": list(addresses), "topics": [list(topics0)]}
        try:
            chunk = client.call("eth_getLogs", [flt])
        except RpcRangeTooLarge as exc:
            if end == start:
                raise
            suggested = exc.suggested
            if suggested and suggested[0] == start and start <= suggested[1] < end:
                span = suggested[1] - start + 1
            else:
                span = max(1, (end - start + 1) // 2)
            ceiling = span
            logger.info("eth_getLogs %s-%s refused (%s); span now %s", start, end, exc, span)
            continue
        if not isinstance(chunk, list):
            raise RpcUnavailable("eth_getLogs result is not a list", endpoint=client.url)
        logs.extend(chunk)
        start = end + 1
        if target_logs and len(chunk) > target_logs:
            span = max(1, span * target_logs // len(chunk))
        elif span < ceiling and (not target_logs or len(chunk) < target_logs // 2):
            span = min(ceiling, span * 2)
    logs.sort(key=lambda item: (int(item["blockNumber"], 16), int(item["logIndex"], 16)))
    return logs, span
