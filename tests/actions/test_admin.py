"""actions/admin.py: secrets are write-only and never rendered; operator actions work."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from actions.models import Delivery, Destination
from actions.services import delivery_send
from tests.actions.conftest import BOT_TOKEN, make_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def test_secrets_never_appear_in_admin_pages(admin_client, webhook_destination, telegram_destination, webhook_receiver):
    webhook_secret = webhook_destination.secret.reveal()
    delivery = make_delivery(webhook_destination)
    delivery_send(delivery_id=delivery.pk)
    pages = [
        reverse("admin:actions_destination_changelist"),
        reverse("admin:actions_destination_change", args=[webhook_destination.pk]),
        reverse("admin:actions_destination_change", args=[telegram_destination.pk]),
        reverse("admin:actions_delivery_changelist"),
        reverse("admin:actions_delivery_change", args=[delivery.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in (webhook_secret, webhook_secret.removeprefix("whsec_"), BOT_TOKEN, BOT_TOKEN.split(":")[1]):
            assert secret not in html, url
    change = admin_client.get(
        reverse("admin:actions_destination_change", args=[telegram_destination.pk])
    ).content.decode()
    assert "…" + BOT_TOKEN[-4:] in change  # the hint only


def test_secret_is_write_only_through_the_form(admin_client, org, webhook_destination):
    url = reverse("admin:actions_destination_change", args=[webhook_destination.pk])
    data = {
        "organization": org.pk,
        "name": "hook",
        "config": '{"url": "https://example.com/hook"}',
        "new_secret": "",
        "enabled": "on",
        "failure_threshold": 5,
        "cooldown_seconds": 60,
    }
    old = webhook_destination.secret.reveal()
    assert admin_client.post(url, data).status_code == 302
    assert Destination.objects.get(pk=webhook_destination.pk).secret.reveal() == old  # empty keeps it
    data["new_secret"] = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    assert admin_client.post(url, data).status_code == 302
    destination = Destination.objects.get(pk=webhook_destination.pk)
    assert destination.secret.reveal() == data["new_secret"]
    assert destination.previous_secret.reveal() == old  # rotation: the old key keeps signing for a while
    bad = {**data, "new_secret": "not-a-webhook-secret"}
    response = admin_client.post(url, bad)
    assert response.status_code == 200
    assert "whsec_" in response.content.decode()  # the field's error, not a crash
    assert "not-a-webhook-secret" not in response.content.decode()  # and not echoed back
    data["config"] = '{"url": "http://10.0.0.1/"}'
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "not a public address" in response.content.decode()


def test_create_through_the_admin_generates_a_webhook_secret(admin_client, org):
    response = admin_client.post(
        reverse("admin:actions_destination_add"),
        {
            "organization": org.pk,
            "name": "new",
            "channel": "webhook",
            "config": '{"url": "https://example.com/new"}',
            "enabled": "on",
            "failure_threshold": 5,
            "cooldown_seconds": 60,
        },
        follow=True,
    )
    assert response.status_code == 200
    destination = Destination.objects.get(name="new")
    assert destination.secret.reveal().startswith("whsec_")
    assert destination.config["method"] == "POST"


def test_reset_breaker_and_replay_actions(admin_client, webhook_destination, webhook_receiver):
    Destination.objects.filter(pk=webhook_destination.pk).update(breaker_state="open", consecutive_failures=5)
    response = admin_client.post(
        reverse("admin:actions_destination_changelist"),
        {"action": "reset_breaker", "_selected_action": [webhook_destination.pk]},
    )
    assert response.status_code == 302
    assert Destination.objects.get(pk=webhook_destination.pk).breaker_state == "closed"

    webhook_receiver.gone()
    delivery = make_delivery(webhook_destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    response = admin_client.post(
        reverse("admin:actions_delivery_changelist"), {"action": "replay", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"


def test_delivery_list_filters(admin_client, webhook_destination):
    make_delivery(webhook_destination)
    url = reverse("admin:actions_delivery_changelist")
    for query in (
        "?status__exact=pending",
        "?destination__channel__exact=webhook",
        f"?destination__id__exact={webhook_destination.pk}",
    ):
        response = admin_client.get(url + query)
        assert response.status_code == 200
        assert "1 delivery" in response.content.decode()
