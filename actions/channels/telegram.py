"""Telegram Bot API ``sendMessage``.

* Request: ``POST {api_base_url}/bot{token}/sendMessage`` with a JSON body
  ``{chat_id, text, parse_mode?, link_preview_options?, disable_notification?,
  reply_parameters?}``; ``plain`` means no ``parse_mode``.
* Token: the destination's secret, else ``settings.TELEGRAM_BOT_TOKEN``. It is in
  the URL path, so it never appears in errors (``erc8004.outbound`` names hosts
  only) and the ``httpx2`` logger is kept at WARNING.
* Response: ``{"ok": true, "result": {"message_id": …, "chat": {"id": …}}}`` →
  success, ``message_id`` kept in ``response_data`` (a retraction replies to it).
  ``{"ok": false, "error_code": 429, "parameters": {"retry_after": N}}`` → retry
  after N seconds, and the chat's shared bucket is blocked for N seconds so no other
  worker hits it meanwhile. 5xx → retry. 400 (e.g. "can't parse entities"),
  401, 403 (bot blocked/kicked), 404 → dead: sending again cannot help.
* Pacing (shared through Redis): ``TELEGRAM_GLOBAL_PER_SECOND`` per bot token,
  ``TELEGRAM_PER_CHAT_PER_SECOND`` per chat, ``TELEGRAM_GROUP_PER_MINUTE`` for groups
  and channels (negative chat ids, ``@channel`` names).
* A retraction is a reply to the original message (``reply_parameters.message_id``,
  ``allow_sending_without_reply`` so a deleted original does not fail it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError

from erc8004.outbound import OutboundError, outbound_request, outbound_validate_url

from ..ratelimit import Bucket, bucket_key
from ..templates import (
    DEFAULT_TEXT_TEMPLATES,
    PARSE_MODES,
    TELEGRAM_MAX_CHARS,
    TemplateError,
    escape_html,
    escape_markdown_v2,
    render_text,
)
from . import ChannelResult, excerpt, http_status_retryable
from .webhook import timeout_clean

if TYPE_CHECKING:
    from ..models import Delivery, Destination

__all__ = ("config_clean", "payload_build", "rate_buckets", "retraction_payload", "send")

_CHAT_ID = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
_SECRET_FIELD = "secret"  # noqa: S105  (the field name in error messages)
_TOKEN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$")


def config_clean(config: Mapping[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    unknown = set(config) - {"chat_id", "parse_mode", "api_base_url", "disable_link_preview", "silent", "timeout"}
    if unknown:
        errors["config"] = f"unknown keys: {', '.join(sorted(unknown))}"
    chat_id = str(config.get("chat_id") or "").strip()
    if not _CHAT_ID.match(chat_id):
        errors["chat_id"] = "a numeric chat id (negative for groups) or an @channel username"
    parse_mode = config.get("parse_mode") or "MarkdownV2"
    if parse_mode not in PARSE_MODES:
        errors["parse_mode"] = f"one of {', '.join(PARSE_MODES)}"
    api_base_url = str(config.get("api_base_url") or "").strip().rstrip("/")
    if api_base_url:
        try:
            outbound_validate_url(api_base_url)
        except OutboundError as exc:
            errors["api_base_url"] = str(exc)
    if secret and not _TOKEN.match(secret):
        errors[_SECRET_FIELD] = "a bot token looks like 123456:ABC-DEF… (from @BotFather)"
    if not secret and not settings.TELEGRAM_BOT_TOKEN:
        errors[_SECRET_FIELD] = "no bot token: set this destination's secret or TELEGRAM_BOT_TOKEN"
    timeout = timeout_clean(config.get("timeout"), errors)
    if errors:
        raise ValidationError(errors)
    clean: dict[str, Any] = {
        "chat_id": chat_id,
        "parse_mode": parse_mode,
        "disable_link_preview": bool(config.get("disable_link_preview", True)),
        "silent": bool(config.get("silent", False)),
        "timeout": timeout,
    }
    if api_base_url:
        clean["api_base_url"] = api_base_url
    return clean


def _params(config: Mapping[str, Any], text: str) -> dict[str, Any]:
    chat_id: int | str = config["chat_id"]
    if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
        chat_id = int(chat_id)
    params: dict[str, Any] = {"chat_id": chat_id, "text": text}
    if config.get("parse_mode", "MarkdownV2") != "plain":
        params["parse_mode"] = config.get("parse_mode", "MarkdownV2")
    if config.get("disable_link_preview", True):
        params["link_preview_options"] = {"is_disabled": True}
    if config.get("silent"):
        params["disable_notification"] = True
    return params


def payload_build(
    *, destination: Destination, template: Any, context: Mapping[str, Any], delivery_id: str
) -> dict[str, Any]:
    mode = destination.config.get("parse_mode", "MarkdownV2")
    source = template if isinstance(template, str) and template.strip() else DEFAULT_TEXT_TEMPLATES[mode]
    text = render_text(source, context, mode=mode, max_chars=TELEGRAM_MAX_CHARS)
    if not text.strip():
        raise TemplateError("the rendered message is empty (Telegram refuses empty messages)")
    return {"delivery_id": delivery_id, "method": "sendMessage", "params": _params(destination.config, text)}


_RETRACTION_TEXT = "Retracted: the event above was removed from the chain ({reason}). Disregard it."


def retraction_payload(
    *, destination: Destination, original: Delivery, reason: str, delivery_id: str
) -> dict[str, Any]:
    """A reply to the original message; ``reply_parameters`` is completed from the
    original's ``message_id`` when the retraction is sent (the original may still be
    in flight when the retraction is created)."""
    params = dict(original.payload.get("params") or {})
    mode = params.get("parse_mode", "plain")
    text = _RETRACTION_TEXT.format(reason=reason)
    if mode == "MarkdownV2":
        text = "_" + escape_markdown_v2(text) + "_"
    elif mode == "HTML":
        text = "<i>" + escape_html(text) + "</i>"
    params["text"] = text
    params.pop("reply_parameters", None)
    return {"delivery_id": delivery_id, "method": "sendMessage", "params": params, "reply_to_original": True}


def _token(destination: Destination) -> str:
    return destination.secret.reveal() if destination.secret else settings.TELEGRAM_BOT_TOKEN


def rate_buckets(*, delivery: Delivery, destination: Destination) -> list[Bucket]:
    token = _token(destination)
    chat = str(delivery.payload.get("params", {}).get("chat_id", ""))
    per_chat = settings.TELEGRAM_PER_CHAT_PER_SECOND
    if chat.startswith(("-", "@")):
        per_chat = min(per_chat, settings.TELEGRAM_GROUP_PER_MINUTE / 60.0)
    return [
        Bucket(bucket_key("tg", "bot", token), per_second=settings.TELEGRAM_GLOBAL_PER_SECOND),
        Bucket(bucket_key("tg", "chat", token, chat), per_second=per_chat),
    ]


def send(*, delivery: Delivery, destination: Destination) -> ChannelResult:
    token = _token(destination)
    if not token:
        return ChannelResult(ok=False, error="no bot token: set the destination's secret or TELEGRAM_BOT_TOKEN")
    payload = delivery.payload
    params = dict(payload["params"])
    if payload.get("reply_to_original") and delivery.retracts is not None:
        message_id = (delivery.retracts.response_data or {}).get("message_id")
        if message_id:
            params["reply_parameters"] = {"message_id": message_id, "allow_sending_without_reply": True}
    base = (destination.config.get("api_base_url") or settings.TELEGRAM_API_BASE_URL).rstrip("/")
    timeout = float(destination.config.get("timeout") or settings.ACTIONS_DEFAULT_TIMEOUT)
    try:
        response = outbound_request(
            "POST",
            f"{base}/bot{token}/{payload.get('method', 'sendMessage')}",
            headers={"Content-Type": "application/json"},
            body=json.dumps(params, ensure_ascii=False),
            timeout=timeout,
            max_bytes=settings.ACTIONS_RESPONSE_MAX_BYTES,
        )
    except OutboundError as exc:
        return ChannelResult(ok=False, retryable=exc.retryable, error=f"{type(exc).__name__}: {exc}")
    text = excerpt(response.content)
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ChannelResult(
            ok=False,
            retryable=http_status_retryable(response.status_code),
            status_code=response.status_code,
            response_excerpt=text,
            error=f"HTTP {response.status_code}: not a Bot API response",
        )
    if data.get("ok") is True:
        result = data.get("result") or {}
        return ChannelResult(
            ok=True,
            status_code=response.status_code,
            response_excerpt=text,
            response_data={"message_id": result.get("message_id"), "chat_id": (result.get("chat") or {}).get("id")},
        )
    code = int(data.get("error_code") or response.status_code)
    description = str(data.get("description") or "")
    parameters = data.get("parameters") or {}
    if code == 429:
        retry_after = float(parameters.get("retry_after") or 1)
        return ChannelResult(
            ok=False,
            retryable=True,
            status_code=code,
            response_excerpt=text,
            error=f"Telegram {code}: {description}",
            retry_after=retry_after,
            counts_for_breaker=False,
        )
    error = f"Telegram {code}: {description}"
    # Our own text was refused: nothing wrong with the chat or the bot.
    payload_problem = code == 400 and ("parse entities" in description or "too long" in description)
    if parameters.get("migrate_to_chat_id"):
        error += f" (the group is now chat {parameters['migrate_to_chat_id']}; update the destination)"
    return ChannelResult(
        ok=False,
        retryable=http_status_retryable(code),
        status_code=code,
        response_excerpt=text,
        error=error,
        counts_for_breaker=not payload_problem,
    )
