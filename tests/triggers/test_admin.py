"""triggers/admin.py: one validation path with the API (same errors for the same
payload), inline actions saved through the service, enable/disable/dry-run admin
actions."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from actions.services import destination_create
from tests.fixtures.accounts import api_client
from tests.fixtures.factories import make_feedback_event
from triggers.models import Trigger, TriggerKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def hook(world):
    return destination_create(
        organization=world.org, name="hook", channel="webhook", config={"url": "https://example.com/hook"}
    )


def form_data(org, *, conditions, actions, **extra):
    data = {
        "organization": org.pk,
        "name": "Low feedback",
        "description": "",
        "enabled": "on",
        "chain_ids": "31337",
        "event_types": ["NewFeedback"],
        "conditions": json.dumps(conditions),
        "cooldown_seconds": 0,
        "max_fires": "",
        "max_fires_window_seconds": 3600,
        "confirmation_mode": "instant",
        "confirmations": 0,
        "actions-TOTAL_FORMS": len(actions),
        "actions-INITIAL_FORMS": 0,
        "actions-MIN_NUM_FORMS": 0,
        "actions-MAX_NUM_FORMS": 1000,
    }
    for i, action in enumerate(actions):
        data.update(
            {
                f"actions-{i}-position": i,
                f"actions-{i}-destination": action["destination"],
                f"actions-{i}-template": action.get("template", ""),
                f"actions-{i}-enabled": "on",
            }
        )
    data.update(extra)
    return data


LOW = {"all": [{"type": "value_threshold", "op": "lt", "value": 50}]}


def test_add_with_inline_actions_goes_through_the_service(admin_client, world, hook):
    response = admin_client.post(
        reverse("admin:triggers_trigger_add"),
        form_data(world.org, conditions=LOW, actions=[{"destination": hook.pk, "template": '{"v": "{{ event.id }}"}'}]),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    trigger = Trigger.objects.get()
    assert trigger.conditions == LOW
    assert trigger.chain_ids == [31337]
    assert [(a.destination_id, a.template) for a in trigger.actions.all()] == [(hook.pk, '{"v": "{{ event.id }}"}')]
    assert TriggerKey.objects.filter(trigger=trigger, event_type="NewFeedback").exists()

    change = reverse("admin:triggers_trigger_change", args=[trigger.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert "value_threshold" in page.content.decode()
    data = form_data(world.org, conditions=LOW, actions=[])
    data.update(
        {
            "actions-TOTAL_FORMS": 1,
            "actions-INITIAL_FORMS": 1,
            "actions-0-id": trigger.actions.get().pk,
            "actions-0-trigger": trigger.pk,
            "actions-0-destination": hook.pk,
            "actions-0-template": "",
            "actions-0-position": 0,
            "actions-0-DELETE": "on",
            "name": "renamed",
        }
    )
    assert admin_client.post(change, data).status_code == 302
    trigger.refresh_from_db()
    assert trigger.name == "renamed"
    assert not trigger.actions.exists()


@pytest.mark.parametrize(
    ("field", "conditions", "extra"),
    [
        ("conditions", {"all": [{"type": "value_threshold", "op": "bigger", "value": 50}]}, {}),
        ("conditions", {"any": [{"type": "field", "field": "args.x", "op": "lt", "value": "abc"}]}, {}),
        ("conditions", {"type": "rate", "window_seconds": 0, "op": "gt", "count": 3}, {}),
        ("confirmations", LOW, {"confirmation_mode": "confirmed", "confirmations": 0}),
    ],
)
def test_same_invalid_payload_same_error_in_the_api_and_the_admin(admin_client, world, hook, field, conditions, extra):
    api = api_client(world.users["member"], organization=world.org).post(
        "/api/v1/triggers/",
        {"name": "x", "conditions": conditions, "actions": [{"destination": hook.pk}], **extra},
        format="json",
    )
    assert api.status_code == 400
    page = admin_client.post(
        reverse("admin:triggers_trigger_add"),
        form_data(world.org, conditions=conditions, actions=[{"destination": hook.pk}], **extra),
    )
    assert page.status_code == 200
    form_errors = page.context["adminform"].form.errors
    assert form_errors[field] == api.json()["errors"][field]
    assert not Trigger.objects.exists()


def test_another_organizations_destination_is_refused_the_same_way(admin_client, world):
    theirs = destination_create(
        organization=world.users["outsider"].organizations.get(),
        name="theirs",
        channel="webhook",
        config={"url": "https://example.com/t"},
    )
    api = api_client(world.users["member"], organization=world.org).post(
        "/api/v1/triggers/", {"name": "x", "actions": [{"destination": theirs.pk}]}, format="json"
    )
    page = admin_client.post(
        reverse("admin:triggers_trigger_add"), form_data(world.org, conditions={}, actions=[{"destination": theirs.pk}])
    )
    assert page.status_code == 200
    inline_errors = page.context["inline_admin_formsets"][0].formset.errors[0]
    assert (
        inline_errors["destination"] == api.json()["errors"]["actions"]["0"]["destination"] == ["no such destination"]
    )
    bad_template = admin_client.post(
        reverse("admin:triggers_trigger_add"),
        form_data(world.org, conditions={}, actions=[{"destination": theirs.pk, "template": "{ nope"}]),
    )
    assert bad_template.status_code == 200
    assert not Trigger.objects.exists()


def test_admin_actions_enable_disable_and_dry_run(admin_client, world, hook):
    from triggers.services import ActionSpec, trigger_create

    trigger = trigger_create(
        organization=world.org,
        name="low",
        event_types=["NewFeedback"],
        conditions=LOW,
        actions=[ActionSpec(destination=hook, template='{"value": "{{ event.args.valueNormalized }}"}')],
    )
    changelist = reverse("admin:triggers_trigger_changelist")
    admin_client.post(changelist, {"action": "disable", "_selected_action": [trigger.pk]})
    trigger.refresh_from_db()
    assert not trigger.enabled
    assert not TriggerKey.objects.filter(trigger=trigger).exists()
    admin_client.post(changelist, {"action": "enable", "_selected_action": [trigger.pk]})
    trigger.refresh_from_db()
    assert trigger.enabled

    make_feedback_event(value=7)
    make_feedback_event(value=70)
    page = admin_client.post(changelist, {"action": "dry_run", "_selected_action": [trigger.pk]})
    assert page.status_code == 200
    html = page.content.decode()
    assert "1 of 2 event(s) matched" in html
    assert "&quot;value&quot;: &quot;7&quot;" in html


def test_pages_render(admin_client, world, hook):
    from actions.models import Delivery
    from tests.actions.conftest import make_delivery
    from triggers.services import ActionSpec, trigger_create

    trigger = trigger_create(organization=world.org, name="t", actions=[ActionSpec(destination=hook)])
    delivery = make_delivery(hook, trigger_id=trigger.pk)
    urls = [
        reverse("admin:index"),
        reverse("admin:triggers_trigger_changelist") + "?q=t",
        reverse("admin:triggers_trigger_add"),
        reverse("admin:triggers_trigger_change", args=[trigger.pk]),
        reverse("admin:triggers_match_changelist"),
        reverse("admin:actions_delivery_changelist") + f"?trigger_id={trigger.pk}",
        reverse("admin:actions_delivery_change", args=[delivery.pk]),
        reverse("admin:actions_attempt_changelist"),
        reverse("admin:erc8004_organization_changelist"),
        reverse("admin:erc8004_organization_change", args=[world.org.pk]),
        reverse("admin:erc8004_membership_changelist"),
        reverse("admin:erc8004_apikey_changelist"),
        reverse("admin:erc8004_apikey_add"),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "Traceback" not in response.content.decode()
    filtered = admin_client.get(reverse("admin:actions_delivery_changelist") + f"?trigger_id={trigger.pk}")
    assert str(delivery.uuid) in filtered.content.decode()
    assert Delivery.objects.count() == 1
