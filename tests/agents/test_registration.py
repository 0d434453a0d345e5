"""agents/registration.py: good files of every shape parse; bad input of every class
is a ParseError with a reason (never an exception)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.registration import ParseError, Registration, registration_backlink, registration_parse

IDENTITY = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"

GOOD = {
    "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
    "name": "myAgentName",
    "description": "A natural language description of the Agent",
    "image": "https://example.com/agentimage.png",
    "services": [
        {"name": "web", "endpoint": "https://web.agentxyz.com/"},
        {"name": "A2A", "endpoint": "https://agent.example/.well-known/agent-card.json", "version": "0.3.0"},
        {"name": "MCP", "endpoint": "https://mcp.agent.eth/", "version": "2025-06-18", "mcpTools": ["get_weather"]},
        {
            "name": "OASF",
            "endpoint": "ipfs://{cid}",
            "version": "0.8",
            "skills": ["analytical_skills/data_analysis"],
            "domains": ["finance"],
        },
        {"name": "ENS", "endpoint": "vitalik.eth", "version": "v1"},
        {"name": "email", "endpoint": "mail@myagent.com"},
    ],
    "x402Support": False,
    "active": True,
    "registrations": [{"agentId": 22, "agentRegistry": f"eip155:1:{IDENTITY}"}],
    "supportedTrust": ["reputation", "crypto-economic", "tee-attestation"],
}


def parse(doc) -> Registration:
    result = registration_parse(json.dumps(doc).encode())
    assert isinstance(result, Registration), result
    return result


def error(doc_or_bytes) -> str:
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
    result = registration_parse(data)
    assert isinstance(result, ParseError), result
    return result.reason


def test_the_spec_example_parses():
    reg = parse(GOOD)
    assert reg.name == "myAgentName"
    assert reg.active is True
    assert reg.x402_support is False
    assert reg.supported_trust == ["reputation", "crypto-economic", "tee-attestation"]
    assert [s["name"] for s in reg.services] == ["web", "A2A", "MCP", "OASF", "ENS", "email"]
    assert reg.has_web
    assert reg.has_a2a
    assert reg.has_mcp
    assert reg.services_key == "services"
    mcp = reg.services[2]
    assert mcp["version"] == "2025-06-18"
    assert mcp["tools"] == ["get_weather"]
    oasf = reg.services[3]
    assert oasf["skills"] == ["analytical_skills/data_analysis"]
    assert oasf["domains"] == ["finance"]
    assert reg.registrations == [{"agentId": "22", "agentRegistry": f"eip155:1:{IDENTITY}"}]
    assert reg.warnings == []
    assert reg.as_json()["services"][0] == {
        "name": "web",
        "endpoint": "https://web.agentxyz.com/",
        "version": "",
        "skills": [],
        "domains": [],
        "tools": [],
        "prompts": [],
        "resources": [],
        "extra": {},
    }


def test_backlink_needs_this_id_and_this_registry():
    reg = parse(GOOD)
    assert registration_backlink(reg, chain_id=1, identity_address=IDENTITY, agent_id=22)
    assert registration_backlink(reg, chain_id=1, identity_address=IDENTITY.lower(), agent_id=22)
    assert not registration_backlink(reg, chain_id=1, identity_address=IDENTITY, agent_id=23)
    assert not registration_backlink(reg, chain_id=8453, identity_address=IDENTITY, agent_id=22)
    no_regs = parse({**GOOD, "registrations": []})
    assert not registration_backlink(no_regs, chain_id=1, identity_address=IDENTITY, agent_id=22)


def test_agent_id_as_string_and_large_ids():
    big = 2**200
    reg = parse({"registrations": [{"agentId": str(big), "agentRegistry": f"eip155:1:{IDENTITY}"}]})
    assert registration_backlink(reg, chain_id=1, identity_address=IDENTITY, agent_id=big)


def test_legacy_endpoints_key_and_v04_agent_wallet_entry():
    reg = parse(
        {
            "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
            "name": "legacy",
            "endpoints": [
                {"name": "A2A", "endpoint": "https://a.example/.well-known/agent-card.json", "version": "0.3.0"},
                {"name": "MCP", "endpoint": "https://mcp.example/", "version": "2025-06-18", "capabilities": {}},
                {"name": "agentWallet", "endpoint": "eip155:1:0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb7"},
            ],
            "trustModels": ["feedback"],
        }
    )
    assert reg.services_key == "endpoints"
    assert reg.has_a2a
    assert reg.has_mcp
    assert not reg.has_web
    assert reg.agent_wallet == "eip155:1:0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb7"
    assert reg.services[1]["extra"] == {"capabilities": {}}


def test_services_win_over_endpoints():
    reg = parse({"services": [{"name": "web", "endpoint": "https://new"}], "endpoints": [{"name": "MCP"}]})
    assert [s["name"] for s in reg.services] == ["web"]
    assert not reg.has_mcp


def test_agent0_spellings():
    reg = parse(
        {
            "x402support": True,
            "supportedTrusts": ["reputation", "reputation"],
            "services": [
                {
                    "name": "MCP",
                    "endpoint": "https://m",
                    "mcpTools": ["a", {"name": "b"}],
                    "mcpPrompts": ["p"],
                    "mcpResources": ["r"],
                },
                {"name": "A2A", "endpoint": "https://a", "a2aSkills": ["s1"], "skills": ["s1", "s2"]},
            ],
        }
    )
    assert reg.x402_support is True
    assert reg.supported_trust == ["reputation"]
    assert reg.services[0]["tools"] == ["a", "b"]
    assert reg.services[0]["prompts"] == ["p"]
    assert reg.services[0]["resources"] == ["r"]
    assert reg.services[1]["skills"] == ["s1", "s2"]


def test_minimal_file_is_fine():
    reg = parse({})
    assert reg == Registration()
    assert reg.active is None
    assert not reg.has_mcp


def test_numeric_version_is_text():
    assert parse({"services": [{"name": "MCP", "version": 1.5}]}).services[0]["version"] == "1.5"


def test_long_text_is_truncated_with_a_warning_and_a_huge_inline_image_dropped():
    reg = parse({"name": "n" * 600, "image": "data:image/png;base64," + "A" * 10_000})
    assert len(reg.name) == 512
    assert reg.image == ""
    assert any("name truncated" in w for w in reg.warnings)
    assert any("image" in w for w in reg.warnings)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"name": 5}, "name must be a string, not number"),
        ({"description": ["x"]}, "description must be a string, not array"),
        ({"active": "yes"}, "active must be true or false, not string"),
        ({"x402Support": 1}, "x402Support must be true or false, not number"),
        ({"supportedTrust": "reputation"}, "supportedTrust must be an array, not string"),
        ({"services": {"name": "web"}}, "services must be an array, not object"),
        ({"services": ["https://x"]}, "services[0] must be an object, not string"),
        ({"services": [{"endpoint": "https://x"}]}, "services[0].name must be a non-empty string"),
        ({"services": [{"name": "web", "endpoint": 5}]}, "services[0].endpoint must be a string"),
        ({"services": [{"name": "MCP", "version": True}]}, "services[0].version must be a string"),
        ({"services": [{"name": "MCP", "mcpTools": "a"}]}, "services[0].mcpTools must be an array"),
        ({"endpoints": [{"name": 3}]}, "endpoints[0].name must be a non-empty string"),
        ({"registrations": {"agentId": 1}}, "registrations must be an array"),
        ({"registrations": [{"agentId": 1.5}]}, "registrations[0].agentId must be an integer"),
        ({"registrations": [{"agentId": "abc"}]}, "registrations[0].agentId must be an integer"),
        ({"registrations": [{"agentId": -1}]}, "outside uint256"),
        ({"registrations": [{"agentId": 1, "agentRegistry": 1}]}, "agentRegistry must be a string"),
        ({"services": [{"name": "x"}] * 300}, "services has 300 entries; the limit is 256"),
        ({"type": 7}, "type must be a string"),
    ],
)
def test_schema_violations(doc, reason):
    assert reason in error(doc)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"name": "\xc3\x28"}', "not valid UTF-8"),
        (b"{'name': 'single quotes'}", "not valid JSON"),
        (b"[]", "top level must be a JSON object"),
        (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", "nested more than"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than"),
        (b'{"name": "' + b"x" * (1024 * 1024) + b'"}', "the limit is 1048576"),
    ],
)
def test_bad_bytes(data, reason):
    assert reason in error(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    assert isinstance(registration_parse(data), Registration | ParseError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            k: json_values
            for k in (
                "name",
                "description",
                "image",
                "active",
                "x402Support",
                "supportedTrust",
                "services",
                "endpoints",
                "registrations",
                "type",
            )
        },
    )
)
def test_arbitrary_documents_never_raise(doc):
    result = registration_parse(json.dumps(doc).encode())
    assert isinstance(result, Registration | ParseError)
    if isinstance(result, Registration):
        json.dumps(result.as_json())


def test_the_row_copy_of_services_is_bounded():
    services = [
        {"name": f"s{i}", "endpoint": "x" * 5000, "tools": [f"t{j}" for j in range(80)], "k": i} for i in range(40)
    ]
    reg = parse({"services": services})
    summary = reg.services_summary
    assert len(summary) == 32
    assert len(summary[0]["endpoint"]) == 2048
    assert len(summary[0]["tools"]) == 50
    assert "extra" not in summary[0]
    assert reg.services[0]["extra"] == {"k": 0}  # the parsed file keeps everything
