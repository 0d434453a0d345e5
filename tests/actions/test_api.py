"""actions/api: destinations (write-only secrets, masked hint, breaker, test,
rotation) and deliveries (filters, cursor paging, attempts, replay, cancel) — and no
secret in any response."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from actions.models import Delivery, DeliveryStatus, Destination
from actions.services import delivery_send
from tests.actions.conftest import BOT_TOKEN, make_delivery
from triggers.services import ActionSpec, trigger_create

pytestmark = pytest.mark.django_db

WHSEC = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


@pytest.fixture
def member(world):
    return world.client("member")


def test_create_webhook_destination_generates_a_secret_shown_once(member, webhook_receiver):
    response = member.post(
        "/api/v1/destinations/",
        {"name": "hook", "channel": "webhook", "config": {"url": webhook_receiver.url}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["generated_secret"]
    assert secret.startswith("whsec_")
    assert body["secret_hint"] == "…" + secret[-4:]
    assert "secret" not in body
    again = member.get(f"/api/v1/destinations/{body['id']}/").json()
    assert secret not in json.dumps(again)
    assert "generated_secret" not in again


def test_a_given_secret_is_write_only(member, telegram_api):
    response = member.post(
        "/api/v1/destinations/",
        {
            "name": "chat",
            "channel": "telegram",
            "config": {"chat_id": "42", "api_base_url": telegram_api.base_url},
            "secret": BOT_TOKEN,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["generated_secret"] is None
    assert body["has_secret"] is True
    assert BOT_TOKEN not in response.content.decode()
    assert BOT_TOKEN.split(":")[1] not in response.content.decode()
    destination_id = body["id"]
    patched = member.patch(
        f"/api/v1/destinations/{destination_id}/", {"secret": "987:ZZyyXXwwVVuuTTssRRqqPP"}, format="json"
    )
    assert patched.status_code == 200
    assert "987:ZZ" not in patched.content.decode()
    assert Destination.objects.get(pk=destination_id).secret.reveal() == "987:ZZyyXXwwVVuuTTssRRqqPP"


def test_config_errors_are_nested_under_config(member):
    response = member.post(
        "/api/v1/destinations/",
        {"name": "bad", "channel": "webhook", "config": {"url": "http://10.0.0.1/x", "method": "BREW"}},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors["config"]) == {"url", "method"}
    assert (
        member.post(
            "/api/v1/destinations/", {"name": "x", "channel": "pigeon", "config": {}}, format="json"
        ).status_code
        == 400
    )


def test_config_errors_as_a_whole_and_per_key_together_are_a_400(member):
    """An unknown config key next to a bad url was a 500 (the whole-config message
    list was then indexed like the per-key dict); found by tests/faults/test_bad_input_api.py."""
    response = member.post(
        "/api/v1/destinations/",
        {"name": "bad", "channel": "webhook", "config": {"url": "ftp://x/", "parse_mode": "HTML", "timeout": 0}},
        format="json",
    )
    assert response.status_code == 400
    config = response.json()["errors"]["config"]
    assert set(config) == {"url", "timeout", "non_field_errors"}
    assert config["non_field_errors"] == ["unknown keys: parse_mode"]
    assert Destination.objects.count() == 0


def test_channel_is_fixed_and_names_unique(member, webhook_destination, world):
    url = f"/api/v1/destinations/{webhook_destination.pk}/"
    assert world.client("member").patch(url, {"channel": "telegram"}, format="json").status_code == 404  # other org
    mine = member.post(
        "/api/v1/destinations/",
        {"name": "a", "channel": "webhook", "config": {"url": "https://example.com/a"}},
        format="json",
    ).json()
    response = member.patch(f"/api/v1/destinations/{mine['id']}/", {"channel": "telegram"}, format="json")
    assert response.status_code == 400
    assert "channel" in response.json()["errors"]
    duplicate = member.post(
        "/api/v1/destinations/",
        {"name": "a", "channel": "webhook", "config": {"url": "https://example.com/b"}},
        format="json",
    )
    assert duplicate.status_code == 400
    assert "name" in duplicate.json()["errors"]


def test_breaker_state_and_reset(world, member):
    destination = Destination.objects.create(
        organization=world.org,
        name="flaky",
        channel="webhook",
        config={"url": "https://example.com/f"},
        breaker_state="open",
        consecutive_failures=7,
        breaker_opened_at=timezone.now(),
        breaker_retry_at=timezone.now() + timedelta(minutes=1),
    )
    url = f"/api/v1/destinations/{destination.pk}/breaker/"
    state = world.client("viewer").get(url).json()
    assert state["state"] == "open"
    assert state["consecutive_failures"] == 7
    assert world.client("viewer").post(url).status_code == 403
    reset = member.post(url).json()
    assert reset["state"] == "closed"
    assert reset["consecutive_failures"] == 0


def test_destination_test_sends_a_real_message(world, member, webhook_receiver):
    created = member.post(
        "/api/v1/destinations/",
        {"name": "h", "channel": "webhook", "config": {"url": webhook_receiver.url}},
        format="json",
    ).json()
    webhook_receiver.secrets = [created["generated_secret"]]
    response = member.post(f"/api/v1/destinations/{created['id']}/test/")
    assert response.status_code == 202
    delivery = Delivery.objects.get(uuid=response.json()["id"])
    assert delivery.kind == "test"
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert webhook_receiver.requests[-1].verified


def test_rotate_secret_shows_the_new_one_once(member):
    created = member.post(
        "/api/v1/destinations/",
        {"name": "h", "channel": "webhook", "config": {"url": "https://example.com/h"}},
        format="json",
    ).json()
    rotated = member.post(f"/api/v1/destinations/{created['id']}/rotate-secret/").json()
    assert rotated["secret"] != created["generated_secret"]
    assert rotated["previous_secret_expires_at"]
    assert rotated["secret"] not in member.get(f"/api/v1/destinations/{created['id']}/").content.decode()


def test_a_destination_in_use_cannot_be_deleted(world, member):
    created = member.post(
        "/api/v1/destinations/",
        {"name": "h", "channel": "webhook", "config": {"url": "https://example.com/h"}},
        format="json",
    ).json()
    trigger_create(
        organization=world.org, name="t", actions=[ActionSpec(destination=Destination.objects.get(pk=created["id"]))]
    )
    response = member.delete(f"/api/v1/destinations/{created['id']}/")
    assert response.status_code == 409
    assert "disable it instead" in response.json()["detail"]


#
# Deliveries
#


@pytest.fixture
def hook(world, webhook_receiver):
    from actions.services import destination_create

    destination = destination_create(
        organization=world.org, name="hook", channel="webhook", config={"url": webhook_receiver.url, "timeout": 3}
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    return destination


def test_delivery_filters_and_cursor_paging(world, member, hook, telegram_api):
    from actions.services import destination_create

    telegram_api.tokens.add(BOT_TOKEN)
    chat = destination_create(
        organization=world.org,
        name="chat",
        channel="telegram",
        config={"chat_id": "1", "api_base_url": telegram_api.base_url},
        secret=BOT_TOKEN,
    )
    deliveries = [make_delivery(hook, trigger_id=1) for _ in range(3)] + [make_delivery(chat, trigger_id=2)]
    Delivery.objects.filter(pk=deliveries[0].pk).update(status=DeliveryStatus.DEAD)
    old = timezone.now() - timedelta(days=2)
    Delivery.objects.filter(pk=deliveries[1].pk).update(created_at=old)

    def ids(query: str) -> list[str]:
        response = member.get(f"/api/v1/deliveries/?{query}")
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    assert ids("status=dead") == [str(deliveries[0].uuid)]
    assert ids("channel=telegram") == [str(deliveries[3].uuid)]
    assert ids("trigger=1") == [str(d.uuid) for d in reversed(deliveries[:3])]
    assert ids(f"destination={chat.pk}") == [str(deliveries[3].uuid)]
    before = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"created_before={before}") == [str(deliveries[1].uuid)]
    assert str(deliveries[1].uuid) not in ids(f"created_after={before}")
    assert member.get("/api/v1/deliveries/?status=nope").status_code == 400

    page = member.get("/api/v1/deliveries/?page_size=3").json()
    assert len(page["results"]) == 3
    assert page["next"]
    make_delivery(hook)  # a new row does not shift the next page
    rest = member.get(page["next"]).json()
    assert [d["id"] for d in rest["results"]] == [str(deliveries[0].uuid)]


def test_delivery_detail_replay_and_cancel(world, member, hook, webhook_receiver):
    delivery = make_delivery(hook)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    detail = member.get(f"/api/v1/deliveries/{delivery.uuid}/").json()
    assert detail["attempts"][0]["response_code"] == 200
    assert json.loads(detail["payload"]["body"])
    assert member.post(f"/api/v1/deliveries/{delivery.uuid}/replay/").status_code == 409

    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.DEAD)
    replayed = member.post(f"/api/v1/deliveries/{delivery.uuid}/replay/")
    assert replayed.status_code == 200
    assert replayed.json()["status"] == "pending"
    cancelled = member.post(f"/api/v1/deliveries/{delivery.uuid}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert member.get("/api/v1/deliveries/not-a-uuid/").status_code == 404
    assert member.get("/api/v1/deliveries/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_secrets_never_appear_in_any_response(world, member, hook, telegram_api, webhook_receiver):
    """Every GET endpoint of every resource, as the owner: no secret, whole or in part."""
    from actions.services import destination_create

    telegram_api.tokens.add(BOT_TOKEN)
    chat = destination_create(
        organization=world.org,
        name="chat",
        channel="telegram",
        config={"chat_id": "1", "api_base_url": telegram_api.base_url},
        secret=BOT_TOKEN,
    )
    trigger = trigger_create(
        organization=world.org, name="t", actions=[ActionSpec(destination=hook), ActionSpec(destination=chat)]
    )
    delivery = make_delivery(hook, trigger_id=trigger.pk)
    delivery_send(delivery_id=delivery.pk)
    sent = make_delivery(chat, trigger_id=trigger.pk)
    delivery_send(delivery_id=sent.pk)
    owner = world.client("owner")
    created = owner.post("/api/v1/api-keys/", {"name": "k"}, format="json").json()
    secrets = [
        hook.secret.reveal(),
        hook.secret.reveal().removeprefix("whsec_"),
        BOT_TOKEN,
        BOT_TOKEN.split(":")[1],
        created["key"],
        created["key"].split("_")[2],
    ]
    paths = [
        "/api/v1/destinations/",
        f"/api/v1/destinations/{hook.pk}/",
        f"/api/v1/destinations/{chat.pk}/",
        f"/api/v1/destinations/{chat.pk}/breaker/",
        "/api/v1/deliveries/",
        f"/api/v1/deliveries/{delivery.uuid}/",
        f"/api/v1/deliveries/{sent.uuid}/",
        "/api/v1/triggers/",
        f"/api/v1/triggers/{trigger.pk}/",
        f"/api/v1/triggers/{trigger.pk}/deliveries/",
        "/api/v1/api-keys/",
        f"/api/v1/api-keys/{created['id']}/",
        "/api/v1/auth/me/",
        "/api/v1/organizations/",
        f"/api/v1/organizations/{world.org.pk}/members/",
    ]
    responses = [owner.get(p) for p in paths]
    responses.append(owner.post(f"/api/v1/triggers/{trigger.pk}/dry-run/", {"last": 5}, format="json"))
    responses.append(owner.post(f"/api/v1/destinations/{chat.pk}/breaker/"))
    responses.append(owner.patch(f"/api/v1/destinations/{chat.pk}/", {"secret": BOT_TOKEN}, format="json"))
    responses.append(owner.get("/api/v1/schema/"))
    for path, response in zip([*paths, "dry-run", "breaker reset", "patch", "schema"], responses, strict=True):
        assert response.status_code == 200, (path, response.content[:200])
        text = response.content.decode()
        for secret in secrets:
            assert secret not in text, path
