"""actions/channels/webhook.py: Standard Webhooks signing (and rotation) verified by an
independent receiver; statuses and timeouts classified."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from django.utils import timezone

from actions.channels.webhook import webhook_sign
from actions.models import Attempt, Destination
from actions.services import delivery_send, destination_create, destination_secret_rotate
from tests.actions.conftest import make_delivery

pytestmark = pytest.mark.django_db


def test_signature_matches_the_standard_webhooks_test_vector():
    """The example from the Standard Webhooks spec's reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    body = '{"test": 2432232314}'
    assert webhook_sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_headers_and_signature(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination, key="match:1:dest:2")
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    (received,) = webhook_receiver.requests
    assert received.verified
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == str(delivery.uuid)
    assert received.headers["idempotency-key"] == "match:1:dest:2"
    assert abs(int(received.timestamp) - timezone.now().timestamp()) < 5
    # Recompute by hand, as a receiver in another language would.
    key = base64.b64decode(webhook_destination.secret.reveal().removeprefix("whsec_"))
    expected = hmac.new(key, f"{received.webhook_id}.{received.timestamp}.{received.body}".encode(), hashlib.sha256)
    assert received.signature == "v1," + base64.b64encode(expected.digest()).decode()


def test_extra_headers_and_method(org, webhook_receiver):
    destination = destination_create(
        organization=org,
        name="put",
        channel="webhook",
        config={"url": webhook_receiver.url, "method": "PUT", "headers": {"X-Team": "payments"}},
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    assert delivery_send(delivery_id=make_delivery(destination).pk) == "succeeded"
    assert webhook_receiver.requests[0].headers["x-team"] == "payments"


def test_key_rotation_signs_with_both_keys_during_the_overlap(webhook_destination, webhook_receiver):
    old = webhook_destination.secret.reveal()
    new = destination_secret_rotate(destination=webhook_destination, keep_previous_seconds=3600)
    assert new != old
    # A receiver still on the old key and one already on the new key both accept it.
    for receiver_keys in ([old], [new]):
        webhook_receiver.secrets = receiver_keys
        assert delivery_send(delivery_id=make_delivery(webhook_destination).pk) == "succeeded"
    assert all(r.verified for r in webhook_receiver.requests)
    assert len(webhook_receiver.requests[-1].signature.split(" ")) == 2
    # After the overlap only the new key signs.
    Destination.objects.filter(pk=webhook_destination.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    webhook_destination.refresh_from_db()
    webhook_receiver.secrets = [old]
    assert delivery_send(delivery_id=make_delivery(webhook_destination).pk) == "dead"  # 401 from the receiver
    webhook_receiver.secrets = [new]
    assert delivery_send(delivery_id=make_delivery(webhook_destination).pk) == "succeeded"
    assert len(webhook_receiver.requests[-1].signature.split(" ")) == 1


def test_redirects_are_not_followed(org, webhook_receiver):
    destination = destination_create(
        organization=org, name="moved", channel="webhook", config={"url": webhook_receiver.url}
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    webhook_receiver.fail_next(1, 301, {"Location": "http://169.254.169.254/"})
    delivery = make_delivery(destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    assert "not followed" in Attempt.objects.get(delivery=delivery).error


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(500, "retrying"), (502, "retrying"), (408, "retrying"), (400, "dead"), (404, "dead"), (422, "dead")],
)
def test_status_classification(webhook_destination, webhook_receiver, status, outcome):
    webhook_receiver.fail_next(1, status)
    assert delivery_send(delivery_id=make_delivery(webhook_destination).pk) == outcome


def test_slow_receiver_times_out_and_is_retried(org, webhook_receiver):
    destination = destination_create(
        organization=org, name="slow", channel="webhook", config={"url": webhook_receiver.url, "timeout": 1}
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    webhook_receiver.slow(1.5)
    delivery = make_delivery(destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    attempt = Attempt.objects.get(delivery=delivery)
    assert "OutboundTimeout" in attempt.error
    assert attempt.duration_ms < 1500


def test_receiver_down_is_retried(webhook_destination, webhook_receiver):
    webhook_receiver.down()
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    assert "OutboundConnectionError" in Attempt.objects.get(delivery=delivery).error


def test_response_excerpt_is_bounded(webhook_destination, webhook_receiver):
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    attempt = Attempt.objects.get(delivery=delivery)
    assert attempt.response_excerpt == '{"received": true}'
