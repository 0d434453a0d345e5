"""Channels: how a frozen payload reaches a Telegram chat, a webhook endpoint or an
MCP server. Each channel module has the same five functions:

* ``config_clean(config, *, secret) -> dict`` — validate a destination's config,
  raising ``django.core.exceptions.ValidationError`` with field messages;
* ``payload_build(*, destination, template, context, delivery_id) -> dict`` — render
  and freeze what will be sent;
* ``retraction_payload(*, destination, original, reason, delivery_id) -> dict``;
* ``rate_buckets(*, delivery, destination) -> list[Bucket]`` — shared rate limits;
* ``send(*, delivery, destination) -> ChannelResult`` — one attempt. It never
  raises for a receiver's failure; it classifies it.

The engine (``actions/services.py``) owns everything around an attempt: claiming,
the breaker, rate limits, retries and recording.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ("ChannelResult", "channel_module", "excerpt", "parse_retry_after")


@dataclass(frozen=True)
class ChannelResult:
    ok: bool
    retryable: bool = False
    status_code: int | None = None
    response_excerpt: str = ""
    error: str = ""
    retry_after: float | None = None  # seconds, from the receiver (Retry-After, Telegram retry_after)
    response_data: dict[str, Any] = field(default_factory=dict)
    # Does this failure say something about the destination's health? A 429 (it is
    # alive, just pacing us) or an error in our own payload does not.
    counts_for_breaker: bool = True


def channel_module(channel: str) -> ModuleType:
    from . import mcp, telegram, webhook

    modules = {"telegram": telegram, "webhook": webhook, "mcp": mcp}
    try:
        return modules[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}") from None


def excerpt(data: bytes | str, limit: int = 500) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None) -> float | None:
    """HTTP ``Retry-After``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def http_status_retryable(status: int) -> bool:
    """408, 429 and 5xx may succeed later; other 4xx (and unfollowed 3xx) will not."""
    return status in (408, 429) or status >= 500
