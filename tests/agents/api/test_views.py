"""agents/api/views.py through HTTP: filters, orderings, keyset pagination, ids,
detail summaries, errors, and query counts that do not grow with the page size."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, AgentMetadata, FeedbackFile, FileStatus, OperatorApproval, RegistrationFile
from agents.projections import agent_aggregates_refresh
from indexing.models import ContractDeployment

from ..factories import (
    CHAIN_ID,
    IDENTITY,
    OTHER_IDENTITY,
    T0,
    address,
    agent_make,
    chain_make,
    event_make,
    feedback_make,
    response_make,
    validation_make,
)

pytestmark = pytest.mark.django_db

ALICE, BOB, CAROL = address(1), address(2), address(3)
VALIDATOR = address(10)


@pytest.fixture
def world():
    """Five agents on the primary registry, one on a second identity registry."""
    chain = chain_make()
    ContractDeployment.objects.create(
        chain=chain, registry="identity", address=OTHER_IDENTITY, abi_version="v0.4", enabled=True
    )
    mcp = {"name": "MCP", "endpoint": "https://mcp.example"}
    a0 = agent_make(
        chain,
        0,
        name="Weather Oracle",
        description="forecasts",
        services=[mcp],
        has_mcp=True,
        active=True,
        x402_support=True,
        supported_trust=["reputation", "crypto-economic"],
        agent_wallet=ALICE,
        registrations_backlink=True,
    )
    a1 = agent_make(chain, 1, name="Trading Bot", has_a2a=True, active=False, supported_trust=["tee-attestation"])
    a2 = agent_make(chain, 2, name="Web Thing", description="a weather web app", has_web=True)
    a3 = agent_make(chain, 3, name="Silent", registered_at=None, registration_seen=False, last_activity_at=None)
    a4 = agent_make(chain, 4, name="Newest", owner=BOB)
    other = agent_make(chain, 0, identity=OTHER_IDENTITY, name="Legacy Zero")
    # Feedback: a0 avg 80 (3), a1 avg 95 (1), a2 avg 50 (2, one revoked), a4 none.
    feedback_make(a0, ALICE, 1, 87, tag1="starred")
    feedback_make(a0, BOB, 1, 9977, 2, tag1="uptime", tag2="day")
    feedback_make(a0, CAROL, 1, 53, tag1="starred")
    feedback_make(a1, ALICE, 1, 95, tag1="starred")
    feedback_make(a2, ALICE, 1, 50, tag1="starred")
    feedback_make(a2, BOB, 1, 10, tag1="starred", revoked=True)
    validation_make(a0, VALIDATOR, response=100, tag="zk")
    validation_make(a0, VALIDATOR, response=81, tag="tee")
    validation_make(a1, VALIDATOR)
    Agent.objects.filter(pk=a1.pk).update(last_activity_at=T0 + timedelta(days=3))
    agent_aggregates_refresh(agent_pks=[a.pk for a in (a0, a1, a2, a3, a4, other)])
    return {"chain": chain, "agents": [a0, a1, a2, a3, a4], "other": other}


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(client, url: str) -> list[str]:
    """Every id, following next links."""
    seen: list[str] = []
    while url:
        response = client.get(url)
        seen += ids(response)
        url = response.json()["next"]
    return seen


#
# Agents list
#


def test_default_ordering_is_newest_with_unregistered_last(client, world):
    # The legacy-registry agent 0 registered in the same minute as 31337:0: the id breaks the tie.
    assert ids(client.get("/api/v1/agents/")) == [
        "31337:4",
        "31337:2",
        "31337:1",
        f"{CHAIN_ID}:{OTHER_IDENTITY}:0",
        "31337:0",
        "31337:3",
    ]


def test_orderings(client, world):
    best = ids(client.get("/api/v1/agents/?ordering=best_average&chain=31337&identity=" + IDENTITY))
    assert best == ["31337:1", "31337:0", "31337:2", "31337:4", "31337:3"]  # no feedback: last, by id desc
    most = ids(client.get("/api/v1/agents/?ordering=most_feedback&identity=" + IDENTITY))
    assert most[:3] == ["31337:0", "31337:2", "31337:1"]
    assert ids(client.get("/api/v1/agents/?ordering=recently_active"))[0] == "31337:1"
    assert ids(client.get("/api/v1/agents/?ordering=recently_active"))[-1] == "31337:3"


@pytest.mark.parametrize("ordering", ["newest", "most_feedback", "best_average", "recently_active"])
def test_keyset_pages_cover_everything_once_in_order(client, world, ordering):
    everything = ids(client.get(f"/api/v1/agents/?ordering={ordering}&limit=200"))
    assert walk(client, f"/api/v1/agents/?ordering={ordering}&limit=2") == everything
    # Previous links walk back over the same pages.
    first = client.get(f"/api/v1/agents/?ordering={ordering}&limit=2").json()
    second = client.get(first["next"]).json()
    back = client.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    assert back["previous"] is None
    assert first["previous"] is None


def test_keyset_pagination_is_stable_under_inserts(client, world):
    first = client.get("/api/v1/agents/?ordering=newest&limit=3").json()
    agent_make(world["chain"], 99, name="Inserted meanwhile")  # newer than every row: lands before page 1
    rest = walk(client, first["next"])
    assert set(rest).isdisjoint({r["id"] for r in first["results"]})
    assert len(rest) == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("chain=31337&identity=" + IDENTITY, ["31337:4", "31337:2", "31337:1", "31337:0", "31337:3"]),
        ("chain=1,8453", []),
        (f"owner={BOB.lower()}", ["31337:4"]),
        (f"wallet={ALICE}", ["31337:0"]),
        ("has_mcp=true", ["31337:0"]),
        ("has_a2a=1", ["31337:1"]),
        ("has_web=yes", ["31337:2"]),
        ("active=false", ["31337:1"]),
        ("x402_support=true", ["31337:0"]),
        ("backlink=true", ["31337:0"]),
        ("supported_trust=crypto-economic", ["31337:0"]),
        ("supported_trust=reputation", ["31337:0"]),
        ("supported_trust=crypto", []),  # whole values only
        ("q=weather", ["31337:2", "31337:0"]),  # name or description, any case
        ("q=ORACLE", ["31337:0"]),
        ("min_feedback=3", ["31337:0"]),
        ("min_average=79.9", ["31337:1", "31337:0"]),  # 31337:0 averages 79.92
        ("min_average=79.9&max_average=90", ["31337:0"]),
        ("registered_after=2026-02-01T00:02:00Z", ["31337:4", "31337:2"]),
        ("registered_before=2026-02-01T00:01:00Z", [f"{CHAIN_ID}:{OTHER_IDENTITY}:0", "31337:0"]),
    ],
)
def test_agent_filters(client, world, query, expected):
    assert ids(client.get(f"/api/v1/agents/?{query}")) == expected


def test_operator_filter(client, world):
    a0 = world["agents"][0]
    operator = address(77)
    OperatorApproval.objects.create(
        chain=world["chain"],
        identity_address=IDENTITY,
        owner=a0.owner,
        operator=operator,
        approved=True,
        updated_block=1,
    )
    Agent.objects.filter(pk=world["agents"][2].pk).update(approved=operator)
    assert ids(client.get(f"/api/v1/agents/?operator={operator}")) == ["31337:2", "31337:0"]


def test_file_status_filter(client, world):
    a0 = world["agents"][0]
    RegistrationFile.objects.create(agent=a0, uri=a0.agent_uri, status=FileStatus.ERROR, error="HTTP 404")
    results = client.get("/api/v1/agents/?file_status=error").json()["results"]
    assert [r["id"] for r in results] == ["31337:0"]
    assert results[0]["file"]["error"] == "HTTP 404"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("has_mcp=maybe", "has_mcp"),
        ("owner=0x123", "owner"),
        ("min_average=abc", "min_average"),
        ("min_feedback=1.5", "min_feedback"),
        ("ordering=random", "ordering"),
        ("chain=x", "chain"),
        ("registered_after=yesterday", "registered_after"),
        ("file_status=great", "file_status"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        # A "%" quoted back in the message was a 500 (django-filter formats messages
        # with %); found by tests/faults/test_bad_input_api.py.
        ("identity=%25", "identity"),
        ("owner=%25s%25d", "owner"),
        ("wallet=%25(x)s", "wallet"),
    ],
)
def test_bad_parameters_are_400_with_field_errors(client, world, query, field):
    response = client.get(f"/api/v1/agents/?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["code"] == "invalid"
    assert field in body["errors"]
    assert isinstance(body["errors"][field], list)


def test_a_cursor_from_another_ordering_is_refused(client, world):
    page = client.get("/api/v1/agents/?ordering=newest&limit=1").json()
    cursor = page["next"].split("cursor=")[1].split("&")[0]
    response = client.get(f"/api/v1/agents/?ordering=best_average&cursor={cursor}")
    assert response.status_code == 400
    assert "another ordering" in response.json()["errors"]["cursor"][0]


#
# Agent detail
#


def test_detail_by_short_and_long_id(client, world):
    body = client.get("/api/v1/agents/31337:0/").json()
    assert body["id"] == "31337:0"
    assert body["name"] == "Weather Oracle"
    assert client.get(f"/api/v1/agents/31337:{IDENTITY}:0/").json()["id"] == "31337:0"
    legacy = client.get(f"/api/v1/agents/31337:{OTHER_IDENTITY.lower()}:0/").json()
    assert legacy["name"] == "Legacy Zero"
    assert legacy["id"] == f"31337:{OTHER_IDENTITY}:0"


def test_detail_errors(client, world):
    missing = client.get("/api/v1/agents/31337:12345/")
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "code": "not_found", "detail": "No agent 31337:12345."}
    assert client.get("/api/v1/agents/1:0/").status_code == 404  # chain without that agent
    bad = client.get("/api/v1/agents/not-an-id/")
    assert bad.status_code == 400
    assert "agent_ref" in bad.json()["errors"]
    assert client.get("/api/v1/agents/31337:0/?clients=0xnope").status_code == 400


def test_detail_reputation_overall_per_tag_and_clients(client, world):
    rep = client.get("/api/v1/agents/31337:0/").json()["reputation"]
    # 87 (0 dp), 99.77 (2 dp), 53 (0 dp): wad mean 79.923333..., expressed in 0 dp.
    assert rep["count"] == 3
    assert rep["average"] == "79.923333333333333333"
    assert rep["summary_value"] == "79"
    assert rep["summary_value_decimals"] == 0
    assert rep["clients"] is None
    starred = next(t for t in rep["by_tag1"] if t["tag1"] == "starred")
    assert (starred["count"], starred["average"], starred["summary_value"]) == (2, "70.000000000000000000", "70")
    only = client.get(f"/api/v1/agents/31337:0/?clients={BOB},{CAROL.lower()}").json()["reputation"]
    assert only["clients"] == [BOB, CAROL]
    assert only["count"] == 2
    # 99.77 (2 dp) and 53 (0 dp): a tie between decimals goes to the smaller, and the
    # mean 76.385 truncates to 76 there, exactly as getSummary.
    assert (only["summary_value"], only["summary_value_decimals"]) == ("76", 0)
    assert only["average"] == "76.385000000000000000"
    tagged = client.get("/api/v1/agents/31337:0/?tag1=uptime&tag2=day").json()["reputation"]
    assert (tagged["count"], tagged["summary_value"], tagged["summary_value_decimals"]) == (1, "9977", 2)


def test_detail_validation_summary(client, world):
    validation = client.get("/api/v1/agents/31337:0/").json()["validation"]
    assert validation["count"] == 2
    assert validation["average_response"] == 90  # (100 + 81) // 2
    assert validation["average"] == "90.500000000000000000"
    tagged = client.get(f"/api/v1/agents/31337:0/?tag=zk&validators={VALIDATOR}").json()["validation"]
    assert (tagged["count"], tagged["average_response"]) == (1, 100)
    assert client.get(f"/api/v1/agents/31337:0/?validators={address(11)}").json()["validation"]["count"] == 0


def test_detail_metadata_text_and_hex_operators_and_file(client, world):
    a0 = world["agents"][0]
    AgentMetadata.objects.create(
        agent=a0, key="agentName", key_hash="a", value="0x" + "héllo".encode().hex(), updated_block=1, updated_at=T0
    )
    AgentMetadata.objects.create(agent=a0, key="blob", key_hash="b", value="0xff00fe", updated_block=1, updated_at=T0)
    OperatorApproval.objects.create(
        chain=world["chain"], identity_address=IDENTITY, owner=a0.owner, operator=CAROL, approved=True, updated_block=1
    )
    RegistrationFile.objects.create(
        agent=a0, uri=a0.agent_uri, status=FileStatus.OK, raw='{"name": "Weather Oracle"}', parsed={"name": "x"}
    )
    body = client.get("/api/v1/agents/31337:0/").json()
    text, blob = body["metadata"]
    assert (text["key"], text["value"], text["encoding"], text["value_text"]) == (
        "agentName",
        "héllo",
        "utf-8",
        "héllo",
    )
    assert text["value_hex"] == "0x" + "héllo".encode().hex()
    assert (blob["value"], blob["encoding"], blob["value_text"]) == ("0xff00fe", "hex", None)
    assert body["operators"] == [CAROL]
    assert body["file"]["raw"] == '{"name": "Weather Oracle"}'
    assert body["file"]["parsed"] == {"name": "x"}
    assert body["services"] == [{"name": "MCP", "endpoint": "https://mcp.example"}]
    assert body["agent_wallet"] == ALICE


#
# Feedback, responses, validations, events
#


def fb_ids(response) -> list[tuple[str, int]]:
    assert response.status_code == 200, response.content
    return [(r["client_address"], r["value_normalized"]) for r in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("", 6),
        ("agent=31337:0", 3),
        (f"agent=31337:{OTHER_IDENTITY}:0", 0),
        ("agent=31337:999", 0),
        (f"client={ALICE}", 3),
        (f"client={ALICE},{BOB}", 5),
        ("tag1=starred", 5),
        ("tag2=day", 1),
        ("tag=day", 1),
        ("revoked=true", 1),
        ("revoked=false", 5),
        ("value_min=53&value_max=90", 2),
        ("value_min=90", 2),
        ("chain=31337", 6),
        ("created_after=2030-01-01T00:00:00Z", 0),
    ],
)
def test_feedback_filters(client, world, query, count):
    response = client.get(f"/api/v1/feedback/?{query}")
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == count


def test_feedback_has_response_file_and_detail(client, world):
    a0 = world["agents"][0]
    target = a0.feedback.get(client_address=ALICE)
    response_make(target, CAROL, "ipfs://r1")
    response_make(target, CAROL, "ipfs://r2")
    FeedbackFile.objects.create(
        feedback=target, uri="ipfs://f", status=FileStatus.OK, hash_status="mismatch", text="nice", raw="{}"
    )
    listed = client.get("/api/v1/feedback/?has_response=true").json()["results"]
    assert [(r["id"], r["response_count"]) for r in listed] == [(f"31337:0:{ALICE}:1", 2)]
    assert listed[0]["file"]["hash_status"] == "mismatch"
    assert "raw" not in listed[0]["file"]
    assert len(client.get("/api/v1/feedback/?has_response=false").json()["results"]) == 5
    assert len(client.get("/api/v1/feedback/?hash_status=mismatch").json()["results"]) == 1
    detail = client.get(f"/api/v1/feedback/31337:0:{ALICE.lower()}:1/").json()
    assert detail["file"]["text"] == "nice"
    assert detail["file"]["raw"] == "{}"
    assert detail["value"] == "87"
    assert detail["tag1"] == "starred"
    responses = client.get(f"/api/v1/feedback/31337:0:{ALICE}:1/responses/").json()["results"]
    assert [r["response_uri"] for r in responses] == ["ipfs://r1", "ipfs://r2"]
    assert client.get(f"/api/v1/feedback/31337:0:{ALICE}:9/").status_code == 404
    assert client.get("/api/v1/feedback/31337:0:nope:1/").status_code == 400


def test_agent_feedback_list_and_orderings(client, world):
    newest = fb_ids(client.get("/api/v1/agents/31337:0/feedback/"))
    oldest = fb_ids(client.get("/api/v1/agents/31337:0/feedback/?ordering=oldest"))
    assert newest == list(reversed(oldest))
    assert [c for c, _ in oldest] == [ALICE, BOB, CAROL]
    assert walk(client, "/api/v1/agents/31337:0/feedback/?limit=1") == [
        r["id"] for r in client.get("/api/v1/agents/31337:0/feedback/").json()["results"]
    ]
    assert client.get("/api/v1/agents/31337:777/feedback/").status_code == 404
    assert client.get("/api/v1/agents/31337:0/feedback/?tag1=uptime").json()["results"][0]["value_decimals"] == 2


def test_validations(client, world):
    all_rows = client.get("/api/v1/validations/").json()["results"]
    assert len(all_rows) == 3
    assert all_rows[0]["status"] == "pending"  # newest first
    assert len(client.get("/api/v1/validations/?status=responded").json()["results"]) == 2
    assert len(client.get("/api/v1/validations/?tag=zk").json()["results"]) == 1
    assert len(client.get(f"/api/v1/validations/?validator={VALIDATOR}&agent=31337:0").json()["results"]) == 2
    assert len(client.get("/api/v1/agents/31337:1/validations/").json()["results"]) == 1
    one = all_rows[-1]
    assert client.get(f"/api/v1/validations/{one['id']}/").json()["request_hash"] == one["request_hash"]
    assert client.get("/api/v1/validations/31337:0x" + "00" * 32 + "/").status_code == 404
    assert client.get("/api/v1/validations/nope/").status_code == 400


def test_events(client, world):
    chain = world["chain"]
    event_make(chain, "Registered", agent_id=0, block=10)
    event_make(chain, "Transfer", agent_id=0, block=11)
    event_make(chain, "Registered", agent_id=0, block=12, address_=OTHER_IDENTITY)
    event_make(chain, "NewFeedback", agent_id=1, block=13, registry="reputation", address_=address(500))
    event_make(chain, "URIUpdated", agent_id=0, block=14, removed=True)
    assert len(client.get("/api/v1/events/?chain=31337").json()["results"]) == 4
    assert len(client.get("/api/v1/events/?include_removed=true").json()["results"]) == 5
    rows = client.get("/api/v1/events/?agent=31337:0").json()["results"]
    assert [r["block_number"] for r in rows] == [11, 10]
    assert {r["agent"] for r in rows} == {"31337:0"}
    legacy = client.get(f"/api/v1/events/?agent=31337:{OTHER_IDENTITY}:0").json()["results"]
    assert [(r["block_number"], r["agent"]) for r in legacy] == [(12, f"31337:{OTHER_IDENTITY}:0")]
    assert len(client.get("/api/v1/events/?event_type=Registered&event_type=Transfer").json()["results"]) == 3
    assert len(client.get("/api/v1/events/?registry=reputation").json()["results"]) == 1
    assert len(client.get("/api/v1/events/?block_from=11&block_to=12").json()["results"]) == 2
    assert next(r["block_number"] for r in client.get("/api/v1/events/?ordering=oldest").json()["results"]) == 10
    assert client.get("/api/v1/events/?event_type=Nope").status_code == 400
    assert client.get("/api/v1/events/?block_from=x").status_code == 400


#
# Query counts
#


@pytest.fixture
def many(world):
    chain = world["chain"]
    agents = [agent_make(chain, 100 + i, name=f"bulk {i}") for i in range(30)]
    for i, agent in enumerate(agents):
        f = feedback_make(agent, ALICE, 1, i, tag1="starred", feedback_uri="ipfs://x")
        FeedbackFile.objects.create(feedback=f, uri="ipfs://x", status=FileStatus.OK)
        response_make(f, BOB)
        validation_make(agent, VALIDATOR, response=i)
        RegistrationFile.objects.create(agent=agent, uri=agent.agent_uri, status=FileStatus.OK)
        event_make(chain, "Registered", agent_id=100 + i, block=100 + i)
    agent_aggregates_refresh(agent_pks=[a.pk for a in agents])
    return agents


def query_count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/agents/?ordering=best_average",
        "/api/v1/agents/?has_mcp=false&ordering=most_feedback",
        "/api/v1/feedback/?tag1=starred",
        "/api/v1/agents/31337:100/feedback/",
        "/api/v1/validations/",
        "/api/v1/events/?agent=31337:100",
        "/api/v1/events/",
    ],
)
def test_query_count_does_not_grow_with_page_size(client, many, url, django_assert_max_num_queries):
    sep = "&" if "?" in url else "?"
    small = query_count(client, f"{url}{sep}limit=2")
    with django_assert_max_num_queries(small):
        client.get(f"{url}{sep}limit=40")


def test_detail_query_count_is_fixed(client, many, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        assert client.get("/api/v1/agents/31337:100/?clients=" + ALICE).status_code == 200


#
# Throttling
#


def test_throttled_requests_get_429_with_retry_after(client, world, settings):
    """The API-wide throttle (erc8004/auth.py) on the public read API: per anonymous IP."""
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "anon": "3/min"}
    ip = "10.20.30.40"  # a client of its own: the suite's other requests do not count
    statuses = [client.get("/api/v1/agents/", REMOTE_ADDR=ip).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = client.get("/api/v1/agents/31337:0/", REMOTE_ADDR=ip)
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= 60  # the rest of the one-minute window
    body = throttled.json()
    assert body["code"] == "throttled"
    assert body["retry_after"] == retry_after
    assert client.get("/api/v1/agents/", REMOTE_ADDR="10.20.30.41").status_code == 200


def test_browsable_api_renders_html(client, world):
    for url in ("/api/v1/agents/?has_mcp=true", "/api/v1/agents/31337:0/", "/api/v1/feedback/", "/api/v1/events/"):
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b"<html" in response.content
