"""actions/channels/mcp.py against an MCP server built with the official SDK."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from actions.models import Attempt
from actions.services import delivery_retract, delivery_send, destination_create, destination_secret_set
from tests.actions.conftest import make_delivery

pytestmark = pytest.mark.django_db


def test_a_real_session_then_the_tool_call(mcp_destination, mcp_server):
    delivery = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    (call,) = mcp_server.calls
    assert call["type"] == "event.matched"
    assert call["delivery_id"] == str(delivery.uuid)
    assert call["event"]["args"]["score"] == 97
    methods = [m for m, _ in mcp_server.rpc]
    assert methods[0] == "initialize"  # the handshake the seed never did
    assert "tools/call" in methods
    sessions = {s for m, s in mcp_server.rpc if m != "initialize"}
    assert len(sessions) == 1
    assert None not in sessions  # every later request carried the Mcp-Session-Id
    delivery.refresh_from_db()
    assert delivery.response_data["text"] == f"recorded {delivery.uuid}"


def test_custom_arguments_template(mcp_destination, mcp_server):
    template = {"note": "score {{ event.args.score }} for {{ agent.name }}", "delivery_id": "{{ delivery_id }}"}
    delivery = make_delivery(mcp_destination, template=template)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert mcp_server.calls[0]["note"] == "score 97 for Agent (v1.2) [beta] *star*"


def test_tool_errors_are_retried(mcp_destination, mcp_server, fast_ladder):
    mcp_server.fail_tool_next(1)
    delivery = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    assert "tool error" in Attempt.objects.get(delivery=delivery).error
    time.sleep(0.3)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert len(mcp_server.calls) == 1


def test_http_500_is_retried(mcp_destination, mcp_server, fast_ladder):
    mcp_server.fail_http_next(1)
    delivery = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    assert Attempt.objects.get(delivery=delivery).response_code == 500
    time.sleep(0.3)
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"


def test_unknown_tool_and_refused_arguments_are_dead(org, mcp_server):
    destination = destination_create(
        organization=org, name="wrong", channel="mcp", config={"url": mcp_server.url, "tool_name": "nope"}
    )
    delivery = make_delivery(destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"
    assert "has no tool 'nope' (it has: notify)" in Attempt.objects.get(delivery=delivery).error

    notify = destination_create(
        organization=org, name="notify", channel="mcp", config={"url": mcp_server.url, "tool_name": "notify"}
    )
    bad = make_delivery(notify, template={"event": "{{ event.type }}"})  # a string where the schema wants an object
    assert delivery_send(delivery_id=bad.pk) == "dead"
    assert "input schema" in Attempt.objects.get(delivery=bad).error
    assert mcp_server.calls == []


def test_bearer_token(mcp_destination, mcp_server):
    mcp_server.token = "agent-token-0123456789"
    delivery = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=delivery.pk) == "dead"  # 401 without it
    assert Attempt.objects.get(delivery=delivery).response_code == 401
    destination_secret_set(destination=mcp_destination, secret="agent-token-0123456789")
    second = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=second.pk) == "succeeded"


def test_ssrf_rules_apply_to_the_sdk(mcp_destination, mcp_server):
    delivery = make_delivery(mcp_destination)
    with override_settings(OUTBOUND_ALLOWLIST=[]):
        assert delivery_send(delivery_id=delivery.pk) == "dead"
    assert "OutboundBlocked" in Attempt.objects.get(delivery=delivery).error
    assert mcp_server.rpc == []


def test_the_guarded_transport_checks_at_connect_time(mcp_server):
    """Even past our pre-flight check, the SDK's own connections go through the guard."""
    import anyio

    from actions.channels.mcp import _call, _classify

    statuses: list[int] = []
    with override_settings(OUTBOUND_ALLOWLIST=[]):
        try:
            anyio.run(
                lambda: _call(url=mcp_server.url, tool="notify", arguments={}, token=None, timeout=5, statuses=statuses)
            )
        except Exception as exc:
            result = _classify(exc, statuses)
        else:
            pytest.fail("connected to a refused address")
    assert "OutboundBlocked" in result.error
    assert not result.retryable
    assert mcp_server.rpc == []


def test_unreachable_server_is_retried(org, fast_ladder):
    destination = destination_create(
        organization=org, name="down", channel="mcp", config={"url": "http://127.0.0.1:9/mcp", "tool_name": "notify"}
    )
    delivery = make_delivery(destination)
    assert delivery_send(delivery_id=delivery.pk) == "retrying"


def test_retraction_calls_the_tool_with_the_retraction_shape(mcp_destination, mcp_server):
    original = make_delivery(mcp_destination)
    assert delivery_send(delivery_id=original.pk) == "succeeded"
    retraction = delivery_retract(delivery_id=original.pk, reason="reorg").retraction
    assert delivery_send(delivery_id=retraction.pk) == "succeeded"
    call = mcp_server.calls[-1]
    assert call["type"] == "event.retracted"
    assert call["retracts"] == str(original.uuid)
    assert call["reason"] == "reorg"
    assert call["original_arguments"]["delivery_id"] == str(original.uuid)


def test_the_agents_own_mcp_endpoint(org, mcp_server):
    """use_agent_endpoint: the MCP service in the event agent's registration file."""
    from actions.services import payload_build
    from actions.templates import PayloadError

    destination = destination_create(
        organization=org, name="a", channel="mcp", config={"use_agent_endpoint": True, "tool_name": "notify"}
    )
    with pytest.raises(ValidationError, match="leave empty"):
        destination_create(
            organization=org,
            name="b",
            channel="mcp",
            config={"use_agent_endpoint": True, "url": mcp_server.url, "tool_name": "notify"},
        )
    agent = {
        "agent_id": "5",
        "services": [
            {"name": "A2A", "endpoint": "https://a2a.example/agent.json"},
            {"name": "mcp", "endpoint": mcp_server.url, "version": "2025-06-18"},
        ],
    }
    delivery = make_delivery(destination, context={"agent": agent, "event": {"id": 1, "type": "Registered"}})
    assert delivery.payload["url"] == mcp_server.url
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert mcp_server.calls[0]["agent"]["agent_id"] == "5"

    for services, message in (
        ([], "publishes no MCP endpoint"),
        ([{"name": "MCP", "endpoint": "ipfs://not-http"}], "publishes no MCP endpoint"),
        ([{"name": "MCP", "endpoint": "http://169.254.169.254/mcp"}], "refused"),
    ):
        with pytest.raises(PayloadError, match=message):
            payload_build(
                destination=destination, template=None, context={"agent": {"agent_id": "6", "services": services}}
            )
