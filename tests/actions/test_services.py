"""actions/services.py: the engine, driven directly (the tests play the worker with
``delivery_send``), against real receivers, PostgreSQL and Redis."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from actions.models import Attempt, Delivery, Destination
from actions.services import (
    breaker_reset,
    deliveries_dispatch_due,
    deliveries_sweep,
    delivery_cancel,
    delivery_create,
    delivery_replay,
    delivery_retract,
    delivery_send,
    destination_create,
    destination_test,
    destination_update,
    payload_build,
)
from tests.actions.conftest import SAMPLE_CONTEXT, make_delivery, send_due

pytestmark = pytest.mark.django_db


def _sleep_until_due(delivery: Delivery) -> None:
    delivery.refresh_from_db()
    if delivery.next_attempt_at:
        time.sleep(max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds()) + 0.01)


#
# Destinations
#


def test_webhook_destination_gets_a_generated_signing_secret(org):
    destination = destination_create(
        organization=org, name="h", channel="webhook", config={"url": "https://example.com/h"}
    )
    assert destination.secret.reveal().startswith("whsec_")
    assert destination.config == {"url": "https://example.com/h", "method": "POST", "headers": {}, "timeout": 10.0}


@pytest.mark.parametrize(
    ("channel", "config", "field"),
    [
        ("webhook", {}, "url"),
        ("webhook", {"url": "ftp://example.com"}, "url"),
        ("webhook", {"url": "http://169.254.169.254/"}, "url"),
        ("webhook", {"url": "https://example.com", "method": "GET"}, "method"),
        ("webhook", {"url": "https://example.com", "headers": {"Authorization": "Bearer x"}}, "headers"),
        ("webhook", {"url": "https://example.com", "headers": {"webhook-id": "x"}}, "headers"),
        ("webhook", {"url": "https://example.com", "timeout": 9999}, "timeout"),
        ("webhook", {"url": "https://example.com", "surprise": 1}, "config"),
        ("telegram", {"chat_id": "not a chat"}, "chat_id"),
        ("telegram", {"chat_id": "1", "parse_mode": "Markdown"}, "parse_mode"),
        ("mcp", {"url": "https://example.com/mcp"}, "tool_name"),
        ("mcp", {"tool_name": "notify"}, "url"),
        ("mcp", {"use_agent_endpoint": True, "url": "https://example.com/mcp", "tool_name": "notify"}, "url"),
    ],
)
def test_config_is_validated_per_channel(org, channel, config, field):
    with pytest.raises(ValidationError) as caught:
        destination_create(
            organization=org,
            name="x",
            channel=channel,
            config=config,
            secret="123456:" + "A" * 30 if channel == "telegram" else None,
        )
    assert field in caught.value.message_dict


def test_telegram_needs_a_token_somewhere(org):
    with override_settings(TELEGRAM_BOT_TOKEN=""), pytest.raises(ValidationError, match="no bot token"):
        destination_create(organization=org, name="t", channel="telegram", config={"chat_id": "1"})
    with override_settings(TELEGRAM_BOT_TOKEN="123456:" + "B" * 30):
        destination_create(organization=org, name="t", channel="telegram", config={"chat_id": "-1001234"})


def test_names_are_unique_per_organization(org):
    destination_create(organization=org, name="same", channel="webhook", config={"url": "https://example.com"})
    with pytest.raises(ValidationError, match="already has"):
        destination_create(organization=org, name="same", channel="webhook", config={"url": "https://example.com"})


def test_destination_update_revalidates(webhook_destination):
    with pytest.raises(ValidationError):
        destination_update(destination=webhook_destination, config={"url": "http://10.0.0.1/"})
    destination_update(destination=webhook_destination, enabled=False, failure_threshold=3)
    webhook_destination.refresh_from_db()
    assert (webhook_destination.enabled, webhook_destination.failure_threshold) == (False, 3)


#
# Creation and idempotency
#


def test_same_idempotency_key_gives_one_delivery(webhook_destination):
    first = make_delivery(webhook_destination, key="match:1:dest:1")
    second = make_delivery(webhook_destination, key="match:1:dest:1")
    assert first.pk == second.pk
    assert Delivery.objects.count() == 1


def test_delivery_create_inside_the_callers_transaction(webhook_destination):
    """A conflict inside the caller's transaction does not poison it (savepoint)."""
    with transaction.atomic():
        a = make_delivery(webhook_destination, key="k1")
        b = make_delivery(webhook_destination, key="k1")
        c = make_delivery(webhook_destination, key="k2")
    assert a.pk == b.pk != c.pk
    assert Delivery.objects.count() == 2


def test_bulk_creation_for_one_event_fanning_out(org, webhook_destination, webhook_receiver):
    from actions.services import DeliverySpec, deliveries_create

    others = [
        destination_create(organization=org, name=f"d{i}", channel="webhook", config={"url": webhook_receiver.url})
        for i in range(3)
    ]
    webhook_receiver.secrets += [d.secret.reveal() for d in others]
    already = make_delivery(others[0], key="event:1:dest:0")
    specs = [
        DeliverySpec(
            destination=d,
            payload=payload_build(destination=d, template=None, context=SAMPLE_CONTEXT),
            idempotency_key=f"event:1:dest:{i}",
            event_id=1,
        )
        for i, d in enumerate(others)
    ]
    with transaction.atomic():
        rows = deliveries_create(specs=specs)
        again = deliveries_create(specs=specs)  # a re-run of the same evaluation
    assert [r.idempotency_key for r in rows] == ["event:1:dest:0", "event:1:dest:1", "event:1:dest:2"]
    assert rows[0].pk == already.pk  # the existing row, not a second one
    assert [r.pk for r in again] == [r.pk for r in rows]
    assert Delivery.objects.count() == 3
    assert send_due() == ["succeeded"] * 3


def test_payload_is_frozen_and_names_its_delivery(webhook_destination):
    delivery = make_delivery(webhook_destination, match_id=9, trigger_id=3, event_id=7)
    body = json.loads(delivery.payload["body"])
    assert body["delivery_id"] == str(delivery.uuid) == delivery.payload["delivery_id"]
    assert body["type"] == "event.matched"
    assert body["event"]["args"]["score"] == 97
    assert delivery.payload["url"] == webhook_destination.config["url"]
    assert (delivery.match_id, delivery.trigger_id, delivery.event_id) == (9, 3, 7)


def test_reusing_a_payload_for_two_deliveries_is_refused(webhook_destination):
    payload = payload_build(destination=webhook_destination, template=None, context=SAMPLE_CONTEXT)
    delivery_create(destination=webhook_destination, payload=payload, idempotency_key="a")
    with pytest.raises(ValueError, match="one payload per delivery"):
        delivery_create(destination=webhook_destination, payload=payload, idempotency_key="b")


#
# Sending, retries, dead letters
#


def test_webhook_success(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination, key="match:5:dest:1", event_block_timestamp=timezone.now())
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 1)
    assert delivery.sent_at
    (received,) = webhook_receiver.requests
    assert received.verified
    assert received.webhook_id == str(delivery.uuid)
    assert received.headers["idempotency-key"] == "match:5:dest:1"
    assert received.body == delivery.payload["body"]
    attempt = Attempt.objects.get(delivery=delivery)
    assert (attempt.number, attempt.outcome, attempt.response_code) == (1, "success", 200)
    destination = Destination.objects.get(pk=webhook_destination.pk)
    assert destination.last_success_at


def test_a_sent_delivery_is_never_sent_again(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert delivery_send(delivery_id=delivery.pk) == "skipped-succeeded"  # the task ran twice
    assert webhook_receiver.accepted[str(delivery.uuid)] == 1


def test_retries_send_the_same_bytes_under_the_same_id(webhook_destination, webhook_receiver, fast_ladder):
    webhook_receiver.fail_next(2, 503)
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    assert delivery_send(delivery_id=delivery.pk) == "skipped-not-due"  # the ladder is honoured
    _sleep_until_due(delivery)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    _sleep_until_due(delivery)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert [r.status for r in webhook_receiver.requests] == [503, 503, 200]
    assert {r.webhook_id for r in webhook_receiver.requests} == {str(delivery.uuid)}
    assert {r.body for r in webhook_receiver.requests} == {delivery.payload["body"]}
    assert len({r.signature for r in webhook_receiver.requests}) >= 1
    assert list(Attempt.objects.filter(delivery=delivery).values_list("number", "outcome")) == [
        (1, "failure"),
        (2, "failure"),
        (3, "success"),
    ]


def test_permanent_failure_is_dead_at_once_and_replay_sends_it(webhook_destination, webhook_receiver):
    webhook_receiver.gone()
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    delivery.refresh_from_db()
    assert delivery.last_error == "HTTP 410"
    assert not Attempt.objects.get(delivery=delivery).retryable
    webhook_receiver.always_status = None  # the receiver is fixed
    assert delivery_replay(delivery_id=delivery.pk)
    assert not delivery_replay(delivery_id=delivery.pk)  # only dead rows replay
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert list(Attempt.objects.filter(delivery=delivery).values_list("number", flat=True)) == [1, 2]


def test_ladder_exhausted_is_dead(webhook_destination, webhook_receiver, fast_ladder):
    webhook_receiver.fail_next(100, 500)
    delivery = make_delivery(webhook_destination)
    outcomes = []
    for _ in range(len(fast_ladder) + 1):
        outcomes.append(delivery_send(delivery_id=delivery.pk))
        _sleep_until_due(delivery)
    assert outcomes == ["retrying"] * len(fast_ladder) + ["dead"]
    assert delivery_send(delivery_id=delivery.pk) == "skipped-dead"
    # Replay starts a fresh ladder.
    assert delivery_replay(delivery_id=delivery.pk)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"


def test_retry_after_is_honoured(webhook_destination, webhook_receiver, fast_ladder):
    webhook_receiver.rate_limit_next(1, retry_after=5)
    delivery = make_delivery(webhook_destination)
    before = timezone.now()
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + timedelta(seconds=5)  # not the 0.2 s ladder step
    # The whole destination waits, not only this row: another delivery is paced, not attempted.
    other = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=other.pk) == "rate-limited"
    other.refresh_from_db()
    assert (other.attempt_count, other.status) == (0, "pending")
    # 429 says "alive, slow down": it does not count towards the breaker.
    assert Destination.objects.get(pk=webhook_destination.pk).consecutive_failures == 0


def test_cancel_only_waiting_rows(webhook_destination):
    delivery = make_delivery(webhook_destination)
    assert delivery_cancel(delivery_id=delivery.pk)
    assert delivery_send(delivery_id=delivery.pk) == "skipped-cancelled"
    assert not delivery_cancel(delivery_id=delivery.pk)


def test_disabled_destination_waits_without_spending_attempts(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination)
    destination_update(destination=webhook_destination, enabled=False)
    assert delivery_send(delivery_id=delivery.pk) == "destination-disabled"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("pending", 0)
    assert webhook_receiver.requests == []


#
# Circuit breaker
#


def test_breaker_opens_probes_and_closes(org, webhook_receiver, fast_ladder):
    destination = destination_create(
        organization=org,
        name="flaky",
        channel="webhook",
        config={"url": webhook_receiver.url, "timeout": 2},
        failure_threshold=2,
        cooldown_seconds=1,
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    webhook_receiver.down()
    a, b, c = (make_delivery(destination) for _ in range(3))
    assert delivery_send(delivery_id=a.pk) == "retrying"
    assert Destination.objects.get(pk=destination.pk).breaker_state == "closed"
    assert delivery_send(delivery_id=b.pk) == "retrying"
    destination.refresh_from_db()
    assert (destination.breaker_state, destination.consecutive_failures) == ("open", 2)
    # Open: waiting rows are not attempted (and not lost), and the dispatcher skips them.
    assert delivery_send(delivery_id=c.pk) == "breaker-open"
    c.refresh_from_db()
    assert (c.status, c.attempt_count) == ("pending", 0)
    assert deliveries_dispatch_due() == 0
    # After the cooldown one probe goes through; it fails → open again.
    time.sleep(1.05)
    assert delivery_send(delivery_id=c.pk) == "retrying"
    destination.refresh_from_db()
    assert destination.breaker_state == "open"
    # Receiver back: the next probe succeeds and closes the breaker.
    webhook_receiver.up()
    time.sleep(1.05)
    _sleep_until_due(a)
    assert delivery_send(delivery_id=a.pk) == "succeeded"
    destination.refresh_from_db()
    assert (destination.breaker_state, destination.consecutive_failures) == ("closed", 0)
    _sleep_until_due(b)
    assert delivery_send(delivery_id=b.pk) == "succeeded"


def test_half_open_lets_exactly_one_probe_through(org, webhook_receiver):
    destination = destination_create(
        organization=org, name="p", channel="webhook", config={"url": webhook_receiver.url}, cooldown_seconds=1
    )
    Destination.objects.filter(pk=destination.pk).update(
        breaker_state="open", breaker_opened_at=timezone.now(), breaker_retry_at=timezone.now() - timedelta(seconds=1)
    )
    from actions.services import _breaker_admit

    destination.refresh_from_db()
    assert _breaker_admit(destination, timezone.now())  # the probe
    assert not _breaker_admit(destination, timezone.now())  # same stale view: loses the race
    destination.refresh_from_db()
    assert destination.breaker_state == "half_open"
    assert not _breaker_admit(destination, timezone.now())  # probe in flight


def test_rows_held_by_the_breaker_go_out_on_the_first_tick_after_it_closes(org, webhook_receiver, unconsumed_queue):
    # Regression (fault scenario 6, tests/faults/test_receiver_down.py): a row turned away
    # while a probe was in flight was rescheduled to the probe's lease expiry (timeout +
    # margins, ~40 s), so after the receiver came back and the probe closed the breaker,
    # everything else still waited that long. The row is due now; the dispatcher's gate on
    # the destination's breaker_retry_at is what holds it, and only while that holds.
    destination = destination_create(
        organization=org, name="b", channel="webhook", config={"url": webhook_receiver.url}, cooldown_seconds=1
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    probe_until = timezone.now() + timedelta(seconds=40)
    Destination.objects.filter(pk=destination.pk).update(
        breaker_state="half_open", breaker_opened_at=timezone.now(), breaker_retry_at=probe_until
    )
    held = make_delivery(destination)
    assert delivery_send(delivery_id=held.pk) == "breaker-open"
    held.refresh_from_db()
    assert (held.status, held.attempt_count) == ("pending", 0)
    assert held.next_attempt_at <= timezone.now()
    assert deliveries_dispatch_due() == 0  # the probe is still out: the gate holds the row
    breaker_reset(destination_id=destination.pk)  # as a successful probe does: closed, retry_at cleared
    assert deliveries_dispatch_due() == 1
    assert delivery_send(delivery_id=held.pk) == "succeeded"


def test_breaker_reset(org, webhook_receiver):
    destination = destination_create(
        organization=org, name="r", channel="webhook", config={"url": webhook_receiver.url}
    )
    Destination.objects.filter(pk=destination.pk).update(
        breaker_state="open", consecutive_failures=9, breaker_retry_at=timezone.now() + timedelta(hours=1)
    )
    breaker_reset(destination_id=destination.pk)
    destination.refresh_from_db()
    assert (destination.breaker_state, destination.consecutive_failures, destination.breaker_retry_at) == (
        "closed",
        0,
        None,
    )


def test_payload_errors_do_not_trip_the_breaker(org, telegram_destination, telegram_api):
    # Telegram refuses our text (a literal "." the author forgot to escape): dead, not the chat's fault.
    delivery = make_delivery(telegram_destination, template="Done.")
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    assert Destination.objects.get(pk=telegram_destination.pk).consecutive_failures == 0


#
# Crashed senders
#


def test_sweeper_recovers_an_expired_lease(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination)
    # A sender claimed it and died: the row is "sending" with a lease in the past.
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", attempt_count=1, locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert delivery_send(delivery_id=delivery.pk) == "skipped-sending"
    assert deliveries_sweep() == 1
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    assert "lease expired" in delivery.last_error
    assert Attempt.objects.get(delivery=delivery, number=1).error.startswith("lease expired")
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert delivery.attempts.count() == 2


def test_a_stale_sender_cannot_overwrite_newer_state(webhook_destination, webhook_receiver):
    """Fencing: the attempt number decides whose result counts."""
    from actions.channels import ChannelResult
    from actions.services import _record

    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"  # attempt 1 (the newer state)
    late = _record(
        delivery=delivery,
        destination=webhook_destination,
        attempt_no=0,
        result=ChannelResult(ok=False, retryable=True, error="late"),
        started=timezone.now(),
        duration_ms=1,
    )
    assert late == "failed-stale"
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"


#
# Retractions
#


def test_retracting_a_delivered_webhook_sends_event_retracted(webhook_destination, webhook_receiver):
    original = make_delivery(webhook_destination, key="match:1:dest:x", match_id=1)
    assert delivery_send(delivery_id=original.pk) == "succeeded"
    outcome = delivery_retract(delivery_id=original.pk, reason="reorg at block 12")
    assert outcome.outcome == "retraction"
    again = delivery_retract(delivery_id=original.pk)
    assert again.retraction.pk == outcome.retraction.pk  # idempotent
    retraction = outcome.retraction
    assert (retraction.kind, retraction.retracts_id, retraction.idempotency_key) == (
        "retraction",
        original.pk,
        "retract:match:1:dest:x",
    )
    assert delivery_send(delivery_id=retraction.pk) == "succeeded"
    body = json.loads(webhook_receiver.requests[-1].body)
    assert body == {
        "type": "event.retracted",
        "delivery_id": str(retraction.uuid),
        "retracts": str(original.uuid),
        "reason": "reorg at block 12",
        "trigger_id": None,
        "match_id": 1,
        "event_id": None,
    }
    assert webhook_receiver.requests[-1].verified


def test_retracting_before_sending_cancels(webhook_destination, webhook_receiver):
    original = make_delivery(webhook_destination)
    assert delivery_retract(delivery_id=original.pk).outcome == "cancelled"
    assert delivery_send(delivery_id=original.pk) == "skipped-cancelled"
    assert delivery_retract(delivery_id=original.pk).outcome == "nothing"
    assert webhook_receiver.requests == []


def test_retraction_waits_for_an_original_in_flight(webhook_destination, webhook_receiver, fast_ladder):
    original = make_delivery(webhook_destination)
    webhook_receiver.fail_next(1, 500)
    assert delivery_send(delivery_id=original.pk) == "retrying"  # tried once: the receiver may have it
    Delivery.objects.filter(pk=original.pk).update(status="sending")  # …and is being retried right now
    retraction = delivery_retract(delivery_id=original.pk).retraction
    assert delivery_send(delivery_id=retraction.pk) == "retraction-waits-for-original"
    Delivery.objects.filter(pk=original.pk).update(status="retrying")  # that retry failed too
    retraction.refresh_from_db()
    Delivery.objects.filter(pk=retraction.pk).update(next_attempt_at=timezone.now())
    assert delivery_send(delivery_id=retraction.pk) == "succeeded"
    original.refresh_from_db()
    assert original.status == "cancelled"  # it will not be retried after its retraction


#
# Dispatcher
#


def test_dispatcher_publishes_due_rows_once_per_grace(webhook_destination):
    from erc8004.queues import queue_depth

    with override_settings(ACTIONS_QUEUE=f"actions-test-{time.monotonic_ns()}", ACTIONS_SEND_BATCH=1):
        from django.conf import settings

        rows = [make_delivery(webhook_destination) for _ in range(3)]
        Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(dispatched_at=None)
        assert deliveries_dispatch_due() == 3
        assert deliveries_dispatch_due() == 0  # already published, within the grace period
        assert queue_depth(settings.ACTIONS_QUEUE) == 3
        Delivery.objects.update(dispatched_at=timezone.now() - timedelta(hours=1))  # messages presumed lost
        assert deliveries_dispatch_due() == 3
        future = make_delivery(webhook_destination)
        Delivery.objects.filter(pk=future.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
        assert deliveries_dispatch_due() == 0


def test_dispatcher_packs_up_to_a_batch_of_deliveries_per_message(webhook_destination):
    """20 due rows with ACTIONS_SEND_BATCH=8 are 3 messages (8 + 8 + 4), and the
    queue limit counts messages: with room for 2, 16 rows go out and 4 wait."""
    from erc8004.queues import queue_depth, redis_client

    queue = f"actions-test-{time.monotonic_ns()}"
    rows = [make_delivery(webhook_destination) for _ in range(20)]
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(dispatched_at=None)
    with override_settings(ACTIONS_QUEUE=queue, ACTIONS_SEND_BATCH=8, ACTIONS_QUEUE_LIMIT=2):
        from django.conf import settings

        assert deliveries_dispatch_due() == 16
        assert queue_depth(queue) == 2
        with override_settings(ACTIONS_QUEUE_LIMIT=10):
            assert deliveries_dispatch_due() == 4
        assert queue_depth(queue) == 3
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        raw = redis_client(settings.CELERY_BROKER_URL).lrange(prefix + queue, 0, -1)
    batches = [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in raw]
    assert sorted(len(b) for b in batches) == [4, 8, 8]
    assert sorted(pk for b in batches for pk in b) == sorted(r.pk for r in rows)


def test_destination_test_sends_a_sample(webhook_destination, webhook_receiver):
    delivery = destination_test(destination=webhook_destination)
    assert delivery.kind == "test"
    assert send_due() == ["succeeded"]
    assert json.loads(webhook_receiver.requests[0].body)["agent"]["name"].startswith("Test agent")
