"""Signed webhooks (Standard Webhooks, https://www.standardwebhooks.com).

Every request carries:

* ``webhook-id`` — the delivery's uuid: the same on every retry, so it is the
  receiver's idempotency key;
* ``webhook-timestamp`` — Unix seconds of this attempt (receivers reject old ones);
* ``webhook-signature`` — ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``
  where ``key`` is the base64-decoded part of the ``whsec_…`` secret. While a key
  rotation overlaps, the previous key signs too: space-separated signatures, and a
  receiver accepts the request if any one verifies with a key it knows;
* ``Idempotency-Key`` — the delivery's idempotency key (built by the caller from
  the match and the destination).

The body is the frozen JSON string, sent byte for byte on every attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from erc8004.outbound import OutboundError, outbound_request, outbound_validate_url

from ..templates import DEFAULT_JSON_TEMPLATE, render_json
from . import ChannelResult, excerpt, http_status_retryable, parse_retry_after

if TYPE_CHECKING:
    from ..models import Delivery, Destination
    from ..ratelimit import Bucket

__all__ = (
    "config_clean",
    "payload_build",
    "rate_buckets",
    "retraction_payload",
    "send",
    "webhook_secret_generate",
    "webhook_secret_key",
    "webhook_sign",
)

METHODS = ("POST", "PUT", "PATCH")
# Set by us on every request; a destination may not override them.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "idempotency-key", "user-agent"}
)
# Credentials do not belong in config (it is not encrypted, and the API shows it).
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)


def webhook_secret_generate() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secrets look like whsec_<base64>")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("webhook signing keys are 24 to 64 bytes")
    return key


def webhook_sign(*, secret: str, msg_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(webhook_secret_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def config_clean(config: Mapping[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    unknown = set(config) - {"url", "method", "headers", "timeout"}
    if unknown:
        errors["config"] = f"unknown keys: {', '.join(sorted(unknown))}"
    url = str(config.get("url") or "").strip()
    if not url:
        errors["url"] = "required"
    else:
        try:
            outbound_validate_url(url)
        except OutboundError as exc:
            errors["url"] = str(exc)
    method = str(config.get("method") or "POST").upper()
    if method not in METHODS:
        errors["method"] = f"one of {', '.join(METHODS)}"
    headers = config.get("headers") or {}
    clean_headers: dict[str, str] = {}
    if not isinstance(headers, Mapping):
        errors["headers"] = "an object of header name → value"
    else:
        for name, value in headers.items():
            lower = str(name).lower()
            if lower in _RESERVED_HEADERS or lower.startswith("webhook-"):
                errors["headers"] = f"{name} is set by the sender and cannot be overridden"
            elif lower in _CREDENTIAL_HEADERS:
                errors["headers"] = (
                    f"{name}: credentials do not belong in config (stored unencrypted); "
                    "receivers authenticate requests with the webhook-signature header"
                )
            elif not isinstance(value, str) or len(value) > 1024 or "\n" in value or "\r" in value:
                errors["headers"] = f"{name}: a single-line string of at most 1024 characters"
            elif not str(name).isascii() or not str(name).replace("-", "").replace("_", "").isalnum():
                errors["headers"] = f"{name}: not a valid header name"
            else:
                clean_headers[str(name)] = value
    timeout = timeout_clean(config.get("timeout"), errors)
    if secret is not None:
        try:
            webhook_secret_key(secret)
        except ValueError as exc:
            errors["secret"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return {"url": url, "method": method, "headers": clean_headers, "timeout": timeout}


def timeout_clean(value: Any, errors: dict[str, str]) -> float:
    if value is None or value == "":
        return float(settings.ACTIONS_DEFAULT_TIMEOUT)
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        errors["timeout"] = "a number of seconds"
        return 0.0
    if not 1 <= timeout <= settings.ACTIONS_MAX_TIMEOUT:
        errors["timeout"] = f"between 1 and {settings.ACTIONS_MAX_TIMEOUT:g} seconds"
    return timeout


def _body(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def payload_build(
    *, destination: Destination, template: Any, context: Mapping[str, Any], delivery_id: str
) -> dict[str, Any]:
    body = render_json(template if template not in (None, "", {}) else DEFAULT_JSON_TEMPLATE, context)
    config = destination.config
    return {
        "delivery_id": delivery_id,
        "method": config.get("method", "POST"),
        "url": config["url"],
        "headers": dict(config.get("headers") or {}),
        "body": _body(body),
    }


def retraction_payload(
    *, destination: Destination, original: Delivery, reason: str, delivery_id: str
) -> dict[str, Any]:
    """``event.retracted``: same endpoint and headers, a body that names the original."""
    body = {
        "type": "event.retracted",
        "delivery_id": delivery_id,
        "retracts": str(original.uuid),
        "reason": reason,
        "trigger_id": original.trigger_id,
        "match_id": original.match_id,
        "event_id": original.event_id,
    }
    payload = original.payload
    return {
        "delivery_id": delivery_id,
        "method": payload.get("method", "POST"),
        "url": payload["url"],
        "headers": dict(payload.get("headers") or {}),
        "body": _body(body),
    }


def rate_buckets(*, delivery: Delivery, destination: Destination) -> list[Bucket]:
    return []


def signature_header(*, destination: Destination, msg_id: str, timestamp: int, body: str) -> str:
    secrets_in_use = []
    if destination.secret:
        secrets_in_use.append(destination.secret.reveal())
    if (
        destination.previous_secret
        and destination.previous_secret_expires_at
        and destination.previous_secret_expires_at > timezone.now()
    ):
        secrets_in_use.append(destination.previous_secret.reveal())
    return " ".join(webhook_sign(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_in_use)


def send(*, delivery: Delivery, destination: Destination) -> ChannelResult:
    payload = delivery.payload
    body: str = payload["body"]
    msg_id = str(delivery.uuid)
    timestamp = int(time.time())
    headers = {
        **payload.get("headers", {}),
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "Idempotency-Key": delivery.idempotency_key,
    }
    try:
        signature = signature_header(destination=destination, msg_id=msg_id, timestamp=timestamp, body=body)
    except ValueError as exc:
        return ChannelResult(ok=False, retryable=False, error=f"signing secret: {exc}")
    if signature:
        headers["webhook-signature"] = signature
    timeout = float(destination.config.get("timeout") or settings.ACTIONS_DEFAULT_TIMEOUT)
    try:
        response = outbound_request(
            payload.get("method", "POST"),
            payload["url"],
            headers=headers,
            body=body,
            timeout=timeout,
            max_bytes=settings.ACTIONS_RESPONSE_MAX_BYTES,
            truncate=True,
        )
    except OutboundError as exc:
        return ChannelResult(ok=False, retryable=exc.retryable, error=f"{type(exc).__name__}: {exc}")
    status = response.status_code
    text = excerpt(response.content)
    if 200 <= status < 300:
        return ChannelResult(ok=True, status_code=status, response_excerpt=text, response_data={"status": status})
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        return ChannelResult(
            ok=False,
            status_code=status,
            response_excerpt=text,
            error=f"HTTP {status}: redirect to {excerpt(location, 200)} not followed (update the URL)",
        )
    return ChannelResult(
        ok=False,
        retryable=http_status_retryable(status),
        status_code=status,
        response_excerpt=text,
        error=f"HTTP {status}",
        retry_after=parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None,
        counts_for_breaker=status != 429,
    )
