"""actions/channels/telegram.py against the Bot API stand-in (real shapes, strict parser)."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from actions.models import Attempt, Delivery, Destination
from actions.services import delivery_retract, delivery_send, destination_create
from tests.actions.conftest import BOT_TOKEN, SAMPLE_CONTEXT, make_delivery

pytestmark = pytest.mark.django_db


def test_default_markdown_message_with_hostile_values_is_accepted(telegram_destination, telegram_api):
    delivery = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    (message,) = telegram_api.messages
    assert message.parse_mode == "MarkdownV2"
    assert "Agent (v1.2) [beta] *star*" in message.plain_text  # reserved characters survived, escaped
    delivery.refresh_from_db()
    assert delivery.response_data == {"message_id": message.message_id, "chat_id": 424242}
    assert delivery.payload["params"]["link_preview_options"] == {"is_disabled": True}


@pytest.mark.parametrize("mode", ["HTML", "plain"])
def test_other_parse_modes(org, telegram_api, mode):
    telegram_api.tokens.add(BOT_TOKEN)
    destination = destination_create(
        organization=org,
        name=mode,
        channel="telegram",
        config={"chat_id": "7", "parse_mode": mode, "api_base_url": telegram_api.base_url},
        secret=BOT_TOKEN,
    )
    delivery = make_delivery(
        destination, template="<b>{{ agent.name }}</b> &amp; {{ event.args.tag1 }}" if mode == "HTML" else None
    )
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    (message,) = telegram_api.messages
    assert message.parse_mode == (None if mode == "plain" else "HTML")
    if mode == "HTML":
        assert message.plain_text == "Agent (v1.2) [beta] *star* & fast-and_cheap!"


def test_unescaped_literal_in_the_template_is_refused_and_dead(telegram_destination, telegram_api):
    delivery = make_delivery(telegram_destination, template="Agent {{ agent.agent_id }} registered.")
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    attempt = Attempt.objects.get(delivery=delivery)
    assert attempt.response_code == 400
    assert "can't parse entities" in attempt.error
    assert not attempt.retryable


def test_429_retry_after_is_honoured_for_the_whole_chat(telegram_destination, telegram_api, fast_ladder):
    telegram_api.rate_limit_next(1, retry_after=4)
    first = make_delivery(telegram_destination)
    before = timezone.now()
    assert delivery_send(delivery_id=first.pk) == "retrying"
    first.refresh_from_db()
    assert first.next_attempt_at >= before + timedelta(seconds=4)
    assert "Too Many Requests: retry after 4" in first.last_error
    second = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=second.pk) == "rate-limited"  # the chat is blocked, no request made
    assert telegram_api.requests == 1
    assert Destination.objects.get(pk=telegram_destination.pk).consecutive_failures == 0


def test_server_errors_retry_and_client_errors_are_dead(telegram_destination, telegram_api, fast_ladder):
    telegram_api.fail_next(1, 502, "Bad Gateway")
    delivery = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    time.sleep(0.3)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"

    telegram_api.fail_next(1, 403, "Forbidden: bot was blocked by the user")
    blocked = make_delivery(telegram_destination)
    time.sleep(1.05)  # per-chat pacing
    assert delivery_send(delivery_id=blocked.pk) == "dead"
    blocked.refresh_from_db()
    assert blocked.last_error == "Telegram 403: Forbidden: bot was blocked by the user"


def test_the_bot_token_never_leaks(telegram_destination, telegram_api):
    telegram_api.tokens.clear()  # the token is revoked: 401
    delivery = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    delivery.refresh_from_db()
    attempt = Attempt.objects.get(delivery=delivery)
    stored = " ".join([delivery.last_error, str(delivery.payload), attempt.error, attempt.response_excerpt])
    assert "Unauthorized" in stored
    assert BOT_TOKEN not in stored
    assert BOT_TOKEN.split(":")[1] not in repr(Destination.objects.get(pk=telegram_destination.pk).__dict__)


def test_global_bot_token_from_settings(org, telegram_api, settings):
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    telegram_api.tokens.add(BOT_TOKEN)
    destination = destination_create(
        organization=org, name="g", channel="telegram", config={"chat_id": "99", "api_base_url": telegram_api.base_url}
    )
    assert destination.secret is None
    assert delivery_send(delivery_id=make_delivery(destination).pk) == "succeeded"
    assert telegram_api.messages[0].token == BOT_TOKEN


def test_retraction_replies_to_the_original_message(telegram_destination, telegram_api):
    original = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=original.pk) == "succeeded"
    retraction = delivery_retract(delivery_id=original.pk, reason="reorg").retraction
    time.sleep(1.05)  # one message per second per chat
    assert delivery_send(delivery_id=retraction.pk) == "succeeded"
    first, second = telegram_api.messages
    assert second.reply_to_message_id == first.message_id
    assert "Retracted" in second.plain_text
    assert "reorg" in second.plain_text


def test_no_retraction_for_a_message_telegram_never_accepted(telegram_destination, telegram_api, fast_ladder):
    telegram_api.fail_next(1, 500)
    original = make_delivery(telegram_destination)
    assert delivery_send(delivery_id=original.pk) == "retrying"
    retraction = delivery_retract(delivery_id=original.pk).retraction
    assert delivery_send(delivery_id=retraction.pk) == "cancelled"
    original.refresh_from_db()
    assert original.status == "cancelled"
    assert telegram_api.messages == []


def test_per_chat_pacing_in_one_process(telegram_destination, telegram_api):
    deliveries = [make_delivery(telegram_destination, context=SAMPLE_CONTEXT) for _ in range(3)]
    started = time.monotonic()
    outcomes = [delivery_send(delivery_id=d.pk) for d in deliveries]
    assert outcomes == ["succeeded"] * 3  # waited in-process for their slots (≤ max wait)
    times = [m.at for m in telegram_api.messages]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))
    assert time.monotonic() - started < 3.5
    assert Delivery.objects.filter(status="succeeded").count() == 3
