"""triggers/api: one call creates a working trigger (conditions and actions nested,
validated together), errors name the condition or action, dry run, test, a
trigger's deliveries, enable/disable, following an agent — and that it fires."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions.models import Delivery
from actions.services import delivery_send, destination_create
from agents.models import Agent
from tests.fixtures.accounts import api_client
from tests.fixtures.factories import IDENTITY, make_chain, make_event, make_feedback_event
from triggers.models import Trigger, TriggerKey
from triggers.services import events_evaluate

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(world, webhook_receiver):
    destination = destination_create(
        organization=world.org, name="hook", channel="webhook", config={"url": webhook_receiver.url, "timeout": 3}
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    return destination


@pytest.fixture
def member(world):
    return world.client("member")


def low_feedback_payload(destination_id: int, **extra):
    return {
        "name": "Low feedback",
        "chain_ids": [31337],
        "event_types": ["NewFeedback"],
        "conditions": {"all": [{"type": "value_threshold", "op": "lt", "value": 50}]},
        "actions": [{"destination": destination_id, "template": {"text": "{{ event.args.valueNormalized }}"}}],
        **extra,
    }


def test_one_call_creates_a_working_trigger(world, member, hook, webhook_receiver):
    response = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["conditions"] == {"all": [{"type": "value_threshold", "op": "lt", "value": 50}]}
    assert [a["destination"] for a in body["actions"]] == [hook.pk]
    assert json.loads(body["actions"][0]["template"]) == {"text": "{{ event.args.valueNormalized }}"}
    trigger = Trigger.objects.get(pk=body["id"])
    assert trigger.organization == world.org
    assert trigger.created_by == world.users["member"]
    assert TriggerKey.objects.filter(trigger=trigger).exists()

    event = make_feedback_event(value=12)
    events_evaluate(event_ids=[event.pk])
    delivery = Delivery.objects.get(trigger_id=trigger.pk)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert json.loads(webhook_receiver.requests[-1].body) == {"text": "12"}

    listed = member.get(f"/api/v1/triggers/{trigger.pk}/deliveries/").json()
    assert [d["id"] for d in listed["results"]] == [str(delivery.uuid)]
    detail = member.get(f"/api/v1/deliveries/{delivery.uuid}/").json()
    assert detail["status"] == "succeeded"
    assert detail["attempts"][0]["outcome"] == "success"


def test_errors_say_which_condition_and_which_action(world, member, hook):
    other = destination_create(
        organization=world.users["outsider"].organizations.get(),
        name="theirs",
        channel="webhook",
        config={"url": "https://example.com/x"},
    )
    payload = low_feedback_payload(hook.pk)
    payload["conditions"] = {"all": [{"type": "value_threshold", "op": "bigger", "value": 50}]}
    payload["actions"].append({"destination": other.pk})
    payload["actions"].append({"destination": 10**12})
    response = member.post("/api/v1/triggers/", payload, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["actions"] == {
        "1": {"destination": ["no such destination"]},
        "2": {"destination": ["no such destination"]},
    }
    assert errors["conditions"][0].startswith("conditions.all[0].op: unknown operator 'bigger'")
    assert not Trigger.objects.exists()

    bad_template = low_feedback_payload(hook.pk)
    bad_template["actions"][0]["template"] = "{ not json"
    errors = member.post("/api/v1/triggers/", bad_template, format="json").json()["errors"]
    assert list(errors["actions"]["0"]) == ["template"]
    assert "JSON document" in errors["actions"]["0"]["template"][0]

    shape = member.post("/api/v1/triggers/", {"name": "x", "actions": [{}, {"destination": "a"}]}, format="json")
    assert shape.status_code == 400
    assert set(shape.json()["errors"]["actions"]) == {"0", "1"}


def test_update_replaces_actions_and_patch_keeps_them(world, member, hook):
    second = destination_create(
        organization=world.org, name="hook2", channel="webhook", config={"url": "https://example.com/2"}
    )
    trigger_id = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json").json()["id"]
    patched = member.patch(f"/api/v1/triggers/{trigger_id}/", {"description": "now described"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["description"] == "now described"
    assert len(patched.json()["actions"]) == 1
    put = member.put(
        f"/api/v1/triggers/{trigger_id}/",
        low_feedback_payload(second.pk, name="renamed", actions=[{"destination": second.pk}, {"destination": hook.pk}]),
        format="json",
    )
    assert put.status_code == 200, put.content
    assert [a["destination"] for a in put.json()["actions"]] == [second.pk, hook.pk]
    assert put.json()["name"] == "renamed"


def test_enable_disable_and_bulk_pause(world, member, hook):
    trigger_id = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json").json()["id"]
    assert member.post(f"/api/v1/triggers/{trigger_id}/disable/").json()["enabled"] is False
    assert not TriggerKey.objects.filter(trigger_id=trigger_id).exists()
    events_evaluate(event_ids=[make_feedback_event(value=1).pk])
    assert not Delivery.objects.exists()
    assert member.post(f"/api/v1/triggers/{trigger_id}/enable/").json()["enabled"] is True

    admin = world.client("admin")
    assert admin.post(f"/api/v1/organizations/{world.org.pk}/pause/").json()["paused"] is True
    events_evaluate(event_ids=[make_feedback_event(value=1).pk])
    assert not Delivery.objects.exists()
    assert admin.post(f"/api/v1/organizations/{world.org.pk}/resume/").json()["paused"] is False
    events_evaluate(event_ids=[make_feedback_event(value=1).pk])
    assert Delivery.objects.count() == 1


def test_dry_run_shows_matches_and_messages_and_sends_nothing(world, hook):
    member = world.client("member")
    trigger_id = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json").json()["id"]
    low, high = make_feedback_event(value=10), make_feedback_event(value=90)
    viewer = world.client("viewer")
    response = viewer.post(f"/api/v1/triggers/{trigger_id}/dry-run/", {"last": 10}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["events"] == 2
    assert body["matched"] == 1
    by_event = {r["event_id"]: r for r in body["results"]}
    assert by_event[high.pk]["matched"] is False
    message = by_event[low.pk]["messages"][0]
    assert message["destination"] == hook.pk
    assert json.loads(message["payload"]["body"]) == {"text": "10"}

    one = viewer.post(f"/api/v1/triggers/{trigger_id}/dry-run/", {"event_id": high.pk}, format="json").json()
    assert one["events"] == 1
    assert one["matched"] == 0
    assert (
        viewer.post(f"/api/v1/triggers/{trigger_id}/dry-run/", {"event_id": 10**15}, format="json").status_code == 404
    )
    assert not Delivery.objects.exists()


def test_test_sends_one_real_delivery_per_action(world, member, hook, webhook_receiver):
    trigger_id = member.post(
        "/api/v1/triggers/", low_feedback_payload(hook.pk, actions=[{"destination": hook.pk}]), format="json"
    ).json()["id"]
    response = member.post(f"/api/v1/triggers/{trigger_id}/test/")
    assert response.status_code == 202, response.content
    [result] = response.json()
    delivery = Delivery.objects.get(uuid=result["delivery"])
    assert delivery.kind == "test"
    assert delivery.trigger_id == trigger_id
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert webhook_receiver.requests[-1].verified


def test_a_template_that_cannot_render_the_sample_is_reported_not_queued(world, member, hook):
    payload = low_feedback_payload(hook.pk, actions=[{"destination": hook.pk, "template": {"x": "{{ nope.deeper }}"}}])
    trigger_id = member.post("/api/v1/triggers/", payload, format="json").json()["id"]
    [result] = member.post(f"/api/v1/triggers/{trigger_id}/test/").json()
    assert "undefined" in result["error"]
    assert "delivery" not in result
    assert not Delivery.objects.exists()


def test_list_is_scoped_and_cursor_paginated(world, member, hook):
    for i in range(3):
        member.post("/api/v1/triggers/", low_feedback_payload(hook.pk, name=f"t{i}"), format="json")
    page = member.get("/api/v1/triggers/?page_size=2").json()
    assert [t["name"] for t in page["results"]] == ["t2", "t1"]
    assert page["next"]
    rest = member.get(page["next"]).json()
    assert [t["name"] for t in rest["results"]] == ["t0"]
    assert world.client("outsider").get("/api/v1/triggers/").json()["results"] == []


#
# Following an agent
#


def make_agent(chain, agent_id: int) -> Agent:
    return Agent.objects.create(chain=chain, identity_address=IDENTITY, agent_id=agent_id, owner="0x" + "11" * 20)


def test_follow_an_agent_fires_on_its_events_and_only_its(world, member, hook, webhook_receiver):
    chain = make_chain()
    make_agent(chain, 42)
    response = member.post(
        f"/api/v1/agents/{chain.chain_id}:42/follow/", {"actions": [{"destination": hook.pk}]}, format="json"
    )
    assert response.status_code == 201, response.content
    trigger = Trigger.objects.get(pk=response.json()["id"])
    assert trigger.chain_ids == [chain.chain_id]

    theirs = make_feedback_event(agent_id=42, value=99)
    uri = make_event("URIUpdated", {"agentId": "42", "newURI": "ipfs://x", "updatedBy": IDENTITY}, agent_id=42)
    other_agent = make_feedback_event(agent_id=7, value=99)
    other_chain = make_feedback_event(agent_id=42, value=99, chain=make_chain(1, "Mainnet"))
    report = events_evaluate(event_ids=[theirs.pk, uri.pk, other_agent.pk, other_chain.pk])
    assert report.matches == 2
    deliveries = Delivery.objects.filter(trigger_id=trigger.pk).order_by("event_id")
    assert [d.event_id for d in deliveries] == [theirs.pk, uri.pk]
    assert all(delivery_send(delivery_id=d.pk) == "succeeded" for d in deliveries)
    assert len(webhook_receiver.accepted) == 2

    following = member.get(f"/api/v1/agents/{chain.chain_id}:42/follow/").json()
    assert [t["id"] for t in following] == [trigger.pk]
    assert member.delete(f"/api/v1/agents/{chain.chain_id}:42/follow/").status_code == 204
    assert not Trigger.objects.filter(pk=trigger.pk).exists()


def test_follow_unknown_agent_or_bad_id_is_404(world, member, hook):
    make_chain()
    body = {"actions": [{"destination": hook.pk}]}
    assert member.post("/api/v1/agents/31337:999/follow/", body, format="json").status_code == 404
    assert member.post("/api/v1/agents/nonsense/follow/", body, format="json").status_code == 404


#
# Robustness
#

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
leaf = st.fixed_dictionaries(
    {"type": st.sampled_from(["value_threshold", "agent_id", "field", "rate", "ema", "nope", "tag_equals"])},
    optional={
        "op": st.sampled_from(["lt", "gt", "eq", "regex", "in", "bogus"]),
        "value": json_values,
        "values": json_values,
        "field": st.sampled_from(["args.tag1", "chain_id", "bogus", "args.x"]),
        "window": json_values,
        "window_seconds": json_values,
    },
)
conditions = st.recursive(
    leaf | json_values,
    lambda children: (
        st.dictionaries(st.sampled_from(["all", "any", "not"]), st.lists(children, max_size=3), max_size=2)
        | st.lists(children, max_size=3)
    ),
    max_leaves=8,
)
trigger_payloads = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values | st.text(max_size=300),
        "chain_ids": json_values | st.lists(st.integers(-5, 2**64), max_size=3),
        "registries": json_values | st.lists(st.sampled_from(["identity", "reputation", "nope"]), max_size=3),
        "event_types": json_values | st.lists(st.sampled_from(["NewFeedback", "Registered", "Nope"]), max_size=3),
        "conditions": conditions,
        "actions": json_values
        | st.lists(
            st.fixed_dictionaries(
                {}, optional={"destination": json_values, "template": json_values, "enabled": json_values}
            ),
            max_size=3,
        ),
        "cooldown_seconds": json_values,
        "max_fires": json_values,
        "confirmation_mode": json_values | st.sampled_from(["instant", "confirmed"]),
        "confirmations": json_values,
        "enabled": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=trigger_payloads)
def test_generated_payloads_never_cause_a_500(world, member, hook, payload):
    response = member.post("/api/v1/triggers/", payload, format="json")
    assert response.status_code in (201, 400), (response.status_code, payload, response.content[:500])
    if response.status_code == 201:
        trigger_id = response.json()["id"]
        patched = member.patch(f"/api/v1/triggers/{trigger_id}/", payload, format="json")
        assert patched.status_code in (200, 400), (payload, patched.content[:500])
        dry = member.post(f"/api/v1/triggers/{trigger_id}/dry-run/", {"last": 5}, format="json")
        assert dry.status_code == 200


def test_same_invalid_payload_same_error_as_the_service(world, hook):
    """The API adds nothing of its own to semantic validation: the messages are the service's."""
    from triggers.services import trigger_validate

    bad = {"all": [{"type": "field", "field": "args.tag1", "op": "lt", "value": "abc"}]}
    with pytest.raises(ValidationError) as exc:
        trigger_validate(
            chain_ids=[], registries=[], event_types=[], conditions=bad, confirmation_mode="instant", confirmations=0
        )
    response = api_client(world.users["member"], organization=world.org).post(
        "/api/v1/triggers/", {"name": "x", "conditions": bad}, format="json"
    )
    assert response.json()["errors"]["conditions"] == exc.value.message_dict["conditions"]


def test_absurdly_nested_json_is_a_400(member):
    body = "[" * 100_000 + "]" * 100_000
    response = member.post("/api/v1/triggers/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_follow_end_to_end_on_the_devnet(anvil_factory, celery_worker, webhook_receiver):
    """Production's path: a follow made through the API, then a devnet workload, the
    poller, the indexer's commit hook, a real worker, a signed webhook arriving —
    once for each new event of the followed agent, and for no other agent."""
    from web3 import HTTPProvider, Web3

    from indexing.devnet.contracts import devnet_deploy, devnet_register_chain
    from indexing.devnet.workload import Workload
    from indexing.models import ChainEvent
    from tests.fixtures.accounts import make_user
    from tests.triggers.test_receivers import poll_until_caught_up

    anvil = anvil_factory(accounts=10)
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    deployment = devnet_deploy(w3=w3)
    chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=w3.eth.chain_id, deployment=deployment)
    workload = Workload(w3, deployment, seed=5)
    workload.run(40)
    poll_until_caught_up(chain.chain_id)
    busiest = (
        ChainEvent.objects.filter(chain=chain, agent_id__isnull=False)
        .values_list("agent_id", flat=True)
        .order_by("agent_id")
    )
    counts: dict = {}
    for agent_id in busiest:
        counts[agent_id] = counts.get(agent_id, 0) + 1
    agent_id = int(max(counts, key=counts.get))

    user = make_user()
    client = api_client(user)
    hook = client.post(
        "/api/v1/destinations/",
        {"name": "hook", "channel": "webhook", "config": {"url": webhook_receiver.url}},
        format="json",
    ).json()
    webhook_receiver.secrets.append(hook["generated_secret"])
    follow = client.post(
        f"/api/v1/agents/{chain.chain_id}:{agent_id}/follow/", {"actions": [{"destination": hook["id"]}]}, format="json"
    )
    assert follow.status_code == 201, follow.content
    last_before = ChainEvent.objects.filter(chain=chain).order_by("-id").values_list("id", flat=True).first()

    workload.run(150)
    poll_until_caught_up(chain.chain_id)
    new_events = ChainEvent.objects.filter(chain=chain, id__gt=last_before, removed=False, agent_id=agent_id)
    expected = new_events.count()
    assert expected > 0, "the workload did not touch the followed agent"
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=60), (
        f"{len(webhook_receiver.accepted)} of {expected} arrived"
    )
    bodies = [json.loads(r.body) for r in webhook_receiver.requests if r.verified]
    assert {str(b["event"]["agent_id"]) for b in bodies} == {str(agent_id)}
    assert {b["event"]["id"] for b in bodies} == set(new_events.values_list("id", flat=True))
    assert set(webhook_receiver.accepted.values()) == {1}


def test_hand_built_representation_matches_the_declared_serializer(world, member, hook):
    """TriggerSerializer/ActionSerializer build their dicts by hand for speed; they
    must say exactly what DRF's generic walk of the declared fields says."""
    from rest_framework import serializers

    from triggers.api.serializers import ActionSerializer, TriggerSerializer

    trigger_id = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json").json()["id"]
    trigger = Trigger.objects.get(pk=trigger_id)
    Trigger.objects.filter(pk=trigger_id).update(fire_count=3)
    trigger.refresh_from_db()
    fast = TriggerSerializer().to_representation(trigger)
    generic = serializers.ModelSerializer.to_representation(TriggerSerializer(), trigger)
    generic["actions"] = [
        serializers.ModelSerializer.to_representation(ActionSerializer(), a) for a in trigger.actions.all()
    ]
    assert json.loads(json.dumps(fast)) == json.loads(json.dumps(generic, default=str))
    assert list(fast) == list(TriggerSerializer.Meta.fields)


def test_test_renders_like_a_real_match_from_the_newest_watched_event(world, member, hook, webhook_receiver):
    template = {
        "agent": "{{ event.agent_id }}",
        "tx": "{{ event.tx_hash }}",
        "score": "{{ event.args.valueNormalized }}",
    }
    payload = low_feedback_payload(hook.pk, actions=[{"destination": hook.pk, "template": template}])
    trigger_id = member.post("/api/v1/triggers/", payload, format="json").json()["id"]
    [sample] = member.post(f"/api/v1/triggers/{trigger_id}/test/").json()
    body = json.loads(Delivery.objects.get(uuid=sample["delivery"]).payload["body"])
    assert body == {"agent": "1", "tx": "0x" + "00" * 32, "score": "87"}  # no event yet: a made-up one

    event = make_feedback_event(agent_id=9, value=33)
    [real] = member.post(f"/api/v1/triggers/{trigger_id}/test/").json()
    body = json.loads(Delivery.objects.get(uuid=real["delivery"]).payload["body"])
    assert body == {"agent": "9", "tx": event.tx_hash, "score": "33"}


def test_browsable_api_pages_render(world, client, hook):
    """Session auth + text/html: the browsable API for each resource (forms included)."""
    member = api_client(world.users["member"], organization=world.org)
    trigger_id = member.post("/api/v1/triggers/", low_feedback_payload(hook.pk), format="json").json()["id"]
    client.force_login(world.users["admin"])
    q = f"?organization={world.org.slug}"
    for path in (
        "/api/v1/triggers/",
        f"/api/v1/triggers/{trigger_id}/",
        f"/api/v1/triggers/{trigger_id}/deliveries/",
        "/api/v1/destinations/",
        f"/api/v1/destinations/{hook.pk}/",
        f"/api/v1/destinations/{hook.pk}/breaker/",
        "/api/v1/deliveries/",
        "/api/v1/api-keys/",
        "/api/v1/organizations/",
        f"/api/v1/organizations/{world.org.pk}/members/",
        "/api/v1/auth/me/",
    ):
        response = client.get(path + q, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
        assert b"Traceback (most recent call last)" not in response.content


def test_list_rows_match_the_detail(world, member, hook):
    """A list page attaches actions as rows; each item must equal the trigger's detail."""
    for i in range(3):
        member.post("/api/v1/triggers/", low_feedback_payload(hook.pk, name=f"t{i}"), format="json")
    for item in member.get("/api/v1/triggers/").json()["results"]:
        assert item == member.get(f"/api/v1/triggers/{item['id']}/").json()
