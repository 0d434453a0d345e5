"""agents/api/serializers.py: the hand-written list renderings are exactly what DRF's
generic field walk produces from the declared fields (which define the OpenAPI
schema), so the fast path can never drift from the documented shape."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from agents.api.selectors import (
    IdentityDirectory,
    event_list_queryset,
    feedback_list_queryset,
    validation_list_queryset,
)
from agents.api.serializers import AgentSerializer, EventSerializer, FeedbackSerializer, ValidationSerializer
from agents.models import Agent, FeedbackFile, FileStatus, RegistrationFile
from agents.projections import agent_aggregates_refresh

from ..factories import address, agent_make, chain_make, event_make, feedback_make, validation_make

pytestmark = pytest.mark.django_db


def generic(serializer_class, instance, context):
    serializer = serializer_class(instance, context=context)
    return serializers.ModelSerializer.to_representation(serializer, instance)


def fast(serializer_class, instance, context):
    return serializer_class(instance, context=context).data


def test_fast_renderings_equal_the_generic_ones():
    chain = chain_make()
    with_file = agent_make(chain, 0, name="n", services=[{"name": "MCP"}], supported_trust=["reputation"], active=True)
    RegistrationFile.objects.create(agent=with_file, uri="ipfs://x", status=FileStatus.ERROR, error="HTTP 404")
    bare = agent_make(chain, 1, registered_at=None, last_activity_at=None)
    f1 = feedback_make(with_file, address(1), 1, -325, 2, tag1="yield", revoked=True, feedback_uri="ipfs://f")
    FeedbackFile.objects.create(feedback=f1, uri="ipfs://f", status=FileStatus.OK, hash_status="match", text="t")
    feedback_make(bare, address(2), 1, 7)
    validation_make(with_file, address(3), response=0, tag="zk")
    validation_make(bare, address(3))
    event_make(chain, "Registered", agent_id=0)
    event_make(chain, "Upgraded", removed=True)
    agent_aggregates_refresh(agent_pks=[with_file.pk, bare.pk])
    context = {"directory": IdentityDirectory.load()}
    cases = [
        (AgentSerializer, list(Agent.objects.select_related("registration_file"))),
        (FeedbackSerializer, list(feedback_list_queryset())),
        (ValidationSerializer, list(validation_list_queryset())),
        (EventSerializer, list(event_list_queryset())),
    ]
    for serializer_class, rows in cases:
        assert rows
        for row in rows:
            expected = generic(serializer_class, row, context)
            got = fast(serializer_class, row, context)
            assert got == expected, serializer_class.__name__
            assert list(got) == list(serializer_class(context=context).fields), serializer_class.__name__


def test_fast_detail_rendering_equals_the_generic_one():
    from agents.api.serializers import AgentDetailSerializer
    from agents.models import AgentMetadata, OperatorApproval
    from agents.reputation import reputation_report_get, validation_summary_get

    from ..factories import T0

    chain = chain_make()
    agent = agent_make(chain, 5, name="detail")
    RegistrationFile.objects.create(agent=agent, uri="ipfs://x", status=FileStatus.OK, raw="{}", parsed={"a": 1})
    AgentMetadata.objects.create(agent=agent, key="k", key_hash="k", value="0x6869", updated_block=1, updated_at=T0)
    AgentMetadata.objects.create(agent=agent, key="b", key_hash="b", value="0xff", updated_block=1, updated_at=T0)
    OperatorApproval.objects.create(
        chain=chain,
        identity_address=agent.identity_address,
        owner=agent.owner,
        operator=address(8),
        approved=True,
        updated_block=1,
    )
    feedback_make(agent, address(1), 1, 9977, 2, tag1="uptime")
    feedback_make(agent, address(2), 1, 87, tag1="starred")
    validation_make(agent, address(3), response=50, tag="zk")
    agent = Agent.objects.select_related("registration_file").get(pk=agent.pk)
    agent.detail_metadata = list(agent.metadata.order_by("key"))
    agent.detail_operators = [address(8)]
    agent.detail_reputation = reputation_report_get(agent=agent, clients=[address(1), address(1)])
    agent.detail_validation = validation_summary_get(agent=agent, tag="zk")
    context = {"directory": IdentityDirectory.load()}
    expected = generic(AgentDetailSerializer, agent, context)
    got = fast(AgentDetailSerializer, agent, context)
    assert got == expected
    assert list(got) == list(AgentDetailSerializer(context=context).fields)
