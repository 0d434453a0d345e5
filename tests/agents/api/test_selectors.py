"""agents/api/selectors.py: public ids parse strictly and resolve to the right
identity registry."""

from __future__ import annotations

import pytest

from agents.api.selectors import AgentRef, IdentityDirectory, agent_ref_parse, feedback_ref_parse
from indexing.models import ContractDeployment

from ..factories import CHAIN_ID, IDENTITY, OTHER_IDENTITY, address, chain_make


def test_agent_ref_forms():
    assert agent_ref_parse("8453:22") == AgentRef(chain_id=8453, agent_id=22)
    assert agent_ref_parse(f"8453:{IDENTITY.lower()}:0") == AgentRef(8453, 0, IDENTITY)
    assert agent_ref_parse(f"eip155:1:{IDENTITY}:7") == AgentRef(1, 7, IDENTITY)
    big = 2**256 - 1
    assert agent_ref_parse(f"1:{big}").agent_id == big


@pytest.mark.parametrize(
    "value", ["", "22", "a:b", "1:-1", "1:1.5", "1:2:3:4", f"1:{2**256}", "1:0xnothex:1", "99999999999999999999:1"]
)
def test_bad_agent_refs(value):
    with pytest.raises(ValueError, match=r"."):
        agent_ref_parse(value)


def test_feedback_ref():
    client = address(1)
    ref = feedback_ref_parse(f"8453:22:{client.lower()}:3")
    assert ref.agent == AgentRef(8453, 22)
    assert ref.client_address == client
    assert ref.feedback_index == 3
    assert feedback_ref_parse(f"8453:{IDENTITY}:22:{client}:1").agent.identity_address == IDENTITY
    with pytest.raises(ValueError, match="feedback id"):
        feedback_ref_parse("8453:22")


@pytest.mark.django_db
def test_directory_prefers_the_enabled_v1_identity_registry():
    chain = chain_make()
    ContractDeployment.objects.create(
        chain=chain, registry="identity", address=OTHER_IDENTITY, abi_version="v0.4", enabled=True
    )
    directory = IdentityDirectory.load()
    assert directory.primary[CHAIN_ID] == IDENTITY
    assert directory.agent_public_id(CHAIN_ID, IDENTITY, 5) == f"{CHAIN_ID}:5"
    assert directory.agent_public_id(CHAIN_ID, OTHER_IDENTITY, 5) == f"{CHAIN_ID}:{OTHER_IDENTITY}:5"
    assert set(directory.registries_of(CHAIN_ID, IDENTITY)) >= {IDENTITY}
    assert directory.registries_of(CHAIN_ID, OTHER_IDENTITY) == [OTHER_IDENTITY]
