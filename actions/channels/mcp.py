"""MCP tool calls over Streamable HTTP, with the official ``mcp`` SDK.

Each attempt opens a real MCP session: ``initialize`` (``MCP_CONNECT_MODE="legacy"``,
the handshake every current server speaks; ``"auto"`` lets the SDK probe
``server/discover`` first), the ``Mcp-Session-Id`` the server hands out,
``tools/call`` with the frozen arguments, then the session is closed (DELETE).
An optional bearer token (the destination's secret) goes in ``Authorization``.

SSRF: the SDK makes its own HTTP requests, but it accepts an ``httpx2.AsyncClient``;
ours is built on ``erc8004.outbound.guarded_async_transport()``, whose connection
pool resolves, checks and connects to the checked IP — the same rule (and the same
absence of a DNS-rebinding window) as every other outbound request. The SDK itself
refuses redirects that leave the endpoint's origin. The URL is also checked before
the session starts, for a clear error.

Outcomes:

* the tool ran and returned a result → success (``response_data`` keeps a short
  excerpt of its text content and its structured content);
* the tool ran and reported an error (``isError: true``) → **retryable** failure:
  MCP tools report their own failures this way (a downstream outage, a busy
  agent), the arguments are frozen and were accepted, so trying again later is the
  useful default; the retry ladder bounds it and the breaker counts it;
* a tool the server does not list, or arguments the tool's ``inputSchema`` refuses
  (checked with ``tools/list`` before calling: servers report both as tool errors,
  which would otherwise be retried for hours), JSON-RPC "method not found" /
  "invalid params", and HTTP 4xx (401/403 bad token, 404 no endpoint) → dead;
* connection errors, timeouts, HTTP 5xx, other JSON-RPC errors → retryable.

Retractions call the same tool (or ``retraction_tool_name`` if configured) with
``{"type": "event.retracted", "delivery_id", "retracts": <original delivery uuid>,
"reason", "original_arguments"}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from django.conf import settings
from django.core.exceptions import ValidationError

from erc8004.outbound import (
    USER_AGENT,
    OutboundError,
    guarded_async_transport,
    outbound_check_url,
    outbound_validate_url,
)

from ..templates import DEFAULT_JSON_TEMPLATE, PayloadError, render_json
from . import ChannelResult, excerpt, http_status_retryable
from .webhook import timeout_clean

if TYPE_CHECKING:
    from ..models import Delivery, Destination
    from ..ratelimit import Bucket

__all__ = ("agent_mcp_endpoint", "config_clean", "payload_build", "rate_buckets", "retraction_payload", "send")

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
# JSON-RPC codes meaning "this call can never succeed as is".
_PERMANENT_RPC_CODES = frozenset({-32601, -32602})


def agent_mcp_endpoint(agent: Mapping[str, Any] | None) -> str | None:
    """The MCP endpoint an agent publishes in its registration file: the first
    ``services`` entry named ``MCP`` (case-insensitive) with an http(s) endpoint.

    Read from the agent view the triggers layer puts in the template context
    (``agents.selectors.agent_view``: ``services[{name, endpoint, version?}]``), so the
    endpoint is the one known when the event was evaluated, frozen into the payload
    like everything else, and no query is made here."""
    for service in (agent or {}).get("services") or []:
        if not isinstance(service, Mapping):
            continue
        endpoint = str(service.get("endpoint") or "").strip()
        if str(service.get("name") or "").lower() == "mcp" and endpoint.lower().startswith(("https://", "http://")):
            return endpoint
    return None


def config_clean(config: Mapping[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    unknown = set(config) - {"url", "use_agent_endpoint", "tool_name", "retraction_tool_name", "timeout"}
    if unknown:
        errors["config"] = f"unknown keys: {', '.join(sorted(unknown))}"
    use_agent = bool(config.get("use_agent_endpoint", False))
    url = str(config.get("url") or "").strip()
    if use_agent:
        if url:
            errors["url"] = "leave empty when use_agent_endpoint is set"
    elif not url:
        errors["url"] = "required (or set use_agent_endpoint)"
    else:
        try:
            outbound_validate_url(url)
        except OutboundError as exc:
            errors["url"] = str(exc)
    tool = str(config.get("tool_name") or "")
    if not _TOOL_NAME.match(tool):
        errors["tool_name"] = "1-128 characters: letters, digits, _ . / -"
    retraction_tool = str(config.get("retraction_tool_name") or "")
    if retraction_tool and not _TOOL_NAME.match(retraction_tool):
        errors["retraction_tool_name"] = "1-128 characters: letters, digits, _ . / -"
    timeout = timeout_clean(config.get("timeout"), errors)
    if errors:
        raise ValidationError(errors)
    clean: dict[str, Any] = {"tool_name": tool, "timeout": timeout}
    if use_agent:
        clean["use_agent_endpoint"] = True
    else:
        clean["url"] = url
    if retraction_tool:
        clean["retraction_tool_name"] = retraction_tool
    return clean


def _endpoint(destination: Destination, context: Mapping[str, Any]) -> str:
    if not destination.config.get("use_agent_endpoint"):
        return destination.config["url"]
    agent = context.get("agent") or {}
    url = agent_mcp_endpoint(agent)
    if not url:
        raise PayloadError(
            f"agent {agent.get('agent_id', '?')!r} publishes no MCP endpoint (a services entry named MCP) "
            "in its registration file"
        )
    try:
        outbound_validate_url(url)
    except OutboundError as exc:
        raise PayloadError(f"agent MCP endpoint refused: {exc}") from None
    return url


def payload_build(
    *, destination: Destination, template: Any, context: Mapping[str, Any], delivery_id: str
) -> dict[str, Any]:
    arguments = render_json(template if template not in (None, "", {}) else DEFAULT_JSON_TEMPLATE, context)
    if not isinstance(arguments, dict):
        raise PayloadError("MCP tool arguments must be a JSON object")
    return {
        "delivery_id": delivery_id,
        "url": _endpoint(destination, context),
        "tool": destination.config["tool_name"],
        "arguments": arguments,
    }


def retraction_payload(
    *, destination: Destination, original: Delivery, reason: str, delivery_id: str
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "url": original.payload["url"],
        "tool": destination.config.get("retraction_tool_name") or original.payload["tool"],
        "arguments": {
            "type": "event.retracted",
            "delivery_id": delivery_id,
            "retracts": str(original.uuid),
            "reason": reason,
            "original_arguments": original.payload.get("arguments") or {},
        },
    }


def rate_buckets(*, delivery: Delivery, destination: Destination) -> list[Bucket]:
    return []


async def _call(
    *, url: str, tool: str, arguments: dict[str, Any], token: str | None, timeout: float, statuses: list[int]
) -> Any:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import Implementation

    async def record_status(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with anyio.fail_after(timeout):
        async with (
            httpx2.AsyncClient(
                transport=guarded_async_transport(),
                headers=headers,
                timeout=httpx2.Timeout(timeout),
                trust_env=False,
                follow_redirects=False,
                event_hooks={"response": [record_status]},
            ) as http,
            Client(
                streamable_http_client(url, http_client=http),
                mode=settings.MCP_CONNECT_MODE,
                read_timeout_seconds=timeout,
                cache=None,
                client_info=Implementation(name="erc8004", version="1.0"),
            ) as client,
        ):
            await _check_tool(client, tool, arguments)
            return await client.call_tool(tool, arguments)


class _PermanentCallError(Exception):
    """The call can never succeed as is (no such tool, arguments its schema refuses)."""

    def __init__(self, message: str, *, destination_fault: bool) -> None:
        super().__init__(message)
        self.destination_fault = destination_fault  # no such tool: the destination is misconfigured


async def _check_tool(client: Any, tool: str, arguments: dict[str, Any]) -> None:
    """Fail fast and permanently when the server has no such tool or its input schema
    refuses the frozen arguments (servers report both as tool *errors*, which would
    otherwise be retried for hours)."""
    import jsonschema

    names: list[str] = []
    cursor: str | None = None
    for _ in range(20):  # pages
        listing = await client.list_tools(cursor=cursor)
        for candidate in listing.tools:
            if candidate.name == tool:
                try:
                    jsonschema.validate(arguments, candidate.input_schema)
                except jsonschema.ValidationError as exc:
                    raise _PermanentCallError(
                        f"arguments refused by the tool's input schema: {excerpt(exc.message, 300)}",
                        destination_fault=False,
                    ) from None
                except jsonschema.SchemaError:
                    pass  # the server's schema is broken; let the server judge
                return
            names.append(candidate.name)
        cursor = listing.next_cursor
        if not cursor:
            break
    raise _PermanentCallError(
        f"the server has no tool {tool!r} (it has: {excerpt(', '.join(names), 200) or 'none'})",
        destination_fault=True,
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out += _leaves(inner)
        return out
    return [exc]


def _classify(exc: BaseException, statuses: list[int]) -> ChannelResult:
    from mcp.shared.exceptions import MCPError

    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, _PermanentCallError):
            return ChannelResult(ok=False, retryable=False, error=str(leaf), counts_for_breaker=leaf.destination_fault)
        if isinstance(leaf, OutboundError):
            return ChannelResult(ok=False, retryable=leaf.retryable, error=f"{type(leaf).__name__}: {leaf}")
    http_error = next((s for s in reversed(statuses) if s >= 400), None)
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            code = leaf.error.code
            message = f"MCP error {code}: {excerpt(leaf.error.message, 300)}"
            if http_error is not None:
                return ChannelResult(
                    ok=False,
                    retryable=http_status_retryable(http_error),
                    status_code=http_error,
                    error=f"HTTP {http_error}; {message}",
                    counts_for_breaker=http_error != 429,
                )
            return ChannelResult(ok=False, retryable=code not in _PERMANENT_RPC_CODES, error=message)
    leaf = leaves[0]
    if isinstance(leaf, TimeoutError):
        return ChannelResult(ok=False, retryable=True, error="timed out")
    if isinstance(leaf, httpx2.TransportError):
        return ChannelResult(ok=False, retryable=True, error=f"{type(leaf).__name__}: {excerpt(str(leaf), 300)}")
    return ChannelResult(ok=False, retryable=True, error=f"{type(leaf).__name__}: {excerpt(str(leaf), 300)}")


def send(*, delivery: Delivery, destination: Destination) -> ChannelResult:
    payload = delivery.payload
    url = payload["url"]
    try:
        outbound_check_url(url)
    except OutboundError as exc:
        return ChannelResult(ok=False, retryable=exc.retryable, error=f"{type(exc).__name__}: {exc}")
    timeout = float(destination.config.get("timeout") or settings.ACTIONS_DEFAULT_TIMEOUT)
    statuses: list[int] = []
    call = functools.partial(
        _call,
        url=url,
        tool=payload["tool"],
        arguments=payload.get("arguments") or {},
        token=destination.secret.reveal() if destination.secret else None,
        timeout=timeout,
        statuses=statuses,
    )
    try:
        result = anyio.run(call)
    except Exception as exc:
        return _classify(exc, statuses)
    texts = [getattr(block, "text", "") for block in (result.content or []) if getattr(block, "type", "") == "text"]
    text = excerpt("\n".join(t for t in texts if t), 500)
    if result.is_error:
        return ChannelResult(
            ok=False, retryable=True, response_excerpt=text, error=f"tool error: {text or 'no detail'}"
        )
    data: dict[str, Any] = {"text": text}
    if result.structured_content is not None:
        rendered = excerpt(str(result.structured_content), 2000)
        data["structured"] = result.structured_content if len(rendered) < 2000 else rendered
    return ChannelResult(ok=True, response_excerpt=text, response_data=data)
