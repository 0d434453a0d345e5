"""The permission matrix, table-driven: every endpoint by every principal.

Principals: owner, admin, member, viewer (JWT), an outsider (naming the
organization with ``X-Organization``, and again acting in their own organization),
anonymous, and API keys capped at viewer/member/admin.

Rules checked (erc8004/accounts.py, erc8004/access.py):
* anonymous → 401; an outsider → 404, never 403 (nothing confirms existence);
* a member ranked too low → 403 (they can see the organization: nothing leaks);
* API keys act with their role cap, and never manage keys, members or ownership.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from actions.models import DeliveryStatus
from actions.services import delivery_create, destination_create, payload_build
from agents.models import Agent
from erc8004.accounts import api_key_create
from erc8004.models import ROLE_RANK, Membership, Role
from tests.fixtures.accounts import api_client, make_user
from tests.fixtures.factories import IDENTITY, make_chain
from triggers.services import ActionSpec, trigger_create

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str  # formatted with the objects below
    min_role: str
    ok: int
    body: Any = None
    scoped: bool = True  # about one organization's things (an outsider gets 404)
    object_row: bool = True  # names an object (an outsider acting in their own org gets 404 too)
    no_keys: bool = False  # API keys may not do this at all


TRIGGER_BODY = {"name": "t", "actions": [{"destination": "{d}"}]}
ROWS = [
    Row("me", "get", "auth/me/", Role.VIEWER, 200, scoped=False, object_row=False),
    Row("orgs list", "get", "organizations/", Role.VIEWER, 200, scoped=False, object_row=False),
    Row("orgs create", "post", "organizations/", Role.VIEWER, 201, {"name": "New"}, False, False, True),
    Row("org get", "get", "organizations/{o}/", Role.VIEWER, 200),
    Row("org rename", "patch", "organizations/{o}/", Role.ADMIN, 200, {"name": "Renamed"}),
    Row("org pause", "post", "organizations/{o}/pause/", Role.ADMIN, 200),
    Row("org resume", "post", "organizations/{o}/resume/", Role.ADMIN, 200),
    Row("members list", "get", "organizations/{o}/members/", Role.VIEWER, 200),
    Row("member add", "post", "organizations/{o}/members/", Role.ADMIN, 201, {"username": "{new}"}, no_keys=True),
    Row(
        "member role", "patch", "organizations/{o}/members/{extra}/", Role.ADMIN, 200, {"role": "member"}, no_keys=True
    ),
    Row("member remove", "delete", "organizations/{o}/members/{extra}/", Role.ADMIN, 204, no_keys=True),
    Row("org transfer", "post", "organizations/{o}/transfer/", Role.OWNER, 200, {"user_id": "{admin}"}, no_keys=True),
    Row("org delete", "delete", "organizations/{o}/", Role.OWNER, 204, no_keys=True),
    Row("keys list", "get", "api-keys/", Role.ADMIN, 200, object_row=False, no_keys=True),
    Row("key create", "post", "api-keys/", Role.ADMIN, 201, {"name": "ci"}, object_row=False, no_keys=True),
    Row("key get", "get", "api-keys/{k}/", Role.ADMIN, 200, no_keys=True),
    Row("key revoke", "delete", "api-keys/{k}/", Role.ADMIN, 204, no_keys=True),
    Row("key rotate", "post", "api-keys/{k}/rotate/", Role.ADMIN, 201, no_keys=True),
    Row("triggers list", "get", "triggers/", Role.VIEWER, 200, object_row=False),
    Row("trigger create", "post", "triggers/", Role.MEMBER, 201, TRIGGER_BODY, object_row=False),
    Row("trigger get", "get", "triggers/{t}/", Role.VIEWER, 200),
    Row("trigger patch", "patch", "triggers/{t}/", Role.MEMBER, 200, {"description": "x"}),
    Row("trigger put", "put", "triggers/{t}/", Role.MEMBER, 200, TRIGGER_BODY),
    Row("trigger delete", "delete", "triggers/{t}/", Role.MEMBER, 204),
    Row("trigger enable", "post", "triggers/{t}/enable/", Role.MEMBER, 200),
    Row("trigger disable", "post", "triggers/{t}/disable/", Role.MEMBER, 200),
    Row("trigger dry run", "post", "triggers/{t}/dry-run/", Role.VIEWER, 200, {"last": 5}),
    Row("trigger test", "post", "triggers/{t}/test/", Role.MEMBER, 202),
    Row("trigger deliveries", "get", "triggers/{t}/deliveries/", Role.VIEWER, 200),
    Row("destinations list", "get", "destinations/", Role.VIEWER, 200, object_row=False),
    Row(
        "destination create",
        "post",
        "destinations/",
        Role.MEMBER,
        201,
        {"name": "new", "channel": "webhook", "config": {"url": "https://example.com/new"}},
        object_row=False,
    ),
    Row("destination get", "get", "destinations/{d}/", Role.VIEWER, 200),
    Row("destination patch", "patch", "destinations/{d}/", Role.MEMBER, 200, {"enabled": False}),
    Row("destination delete", "delete", "destinations/{d2}/", Role.MEMBER, 204),
    Row("breaker get", "get", "destinations/{d}/breaker/", Role.VIEWER, 200),
    Row("breaker reset", "post", "destinations/{d}/breaker/", Role.MEMBER, 200),
    Row("destination test", "post", "destinations/{d}/test/", Role.MEMBER, 202),
    Row("secret rotate", "post", "destinations/{d}/rotate-secret/", Role.MEMBER, 200),
    Row("deliveries list", "get", "deliveries/", Role.VIEWER, 200, object_row=False),
    Row("delivery get", "get", "deliveries/{dead}/", Role.VIEWER, 200),
    Row("delivery replay", "post", "deliveries/{dead}/replay/", Role.MEMBER, 200),
    Row("delivery cancel", "post", "deliveries/{pending}/cancel/", Role.MEMBER, 200),
    Row("follow list", "get", "agents/{agent}/follow/", Role.VIEWER, 200, object_row=False),
    Row(
        "follow",
        "post",
        "agents/{agent}/follow/",
        Role.MEMBER,
        201,
        {"actions": [{"destination": "{d}"}]},
        object_row=False,
    ),
    Row("unfollow", "delete", "agents/{agent}/follow/", Role.MEMBER, 204, object_row=False),
]
PRINCIPALS = [
    "owner",
    "admin",
    "member",
    "viewer",
    "outsider",
    "outsider-own",
    "anonymous",
    "key:viewer",
    "key:member",
    "key:admin",
]


def expected(row: Row, principal: str) -> int | None:
    """The status this principal gets; None when the case says nothing (an outsider
    listing or creating in their own organization is not about this one)."""
    if principal == "anonymous":
        return 401
    if principal == "outsider":
        return 404 if row.scoped else row.ok
    if principal == "outsider-own":
        return 404 if row.scoped and row.object_row else None
    role = principal
    if principal.startswith("key:"):
        if row.no_keys:
            return 403
        role = principal[4:]
    return row.ok if ROLE_RANK[Role(role)] >= ROLE_RANK[Role(row.min_role)] else 403


@pytest.fixture
def objects(world) -> dict[str, Any]:
    org = world.org
    chain = make_chain()
    Agent.objects.create(chain=chain, identity_address=IDENTITY, agent_id=42)
    hook = destination_create(organization=org, name="hook", channel="webhook", config={"url": "https://example.com/h"})
    unused = destination_create(
        organization=org, name="unused", channel="webhook", config={"url": "https://example.com/u"}
    )
    trigger = trigger_create(organization=org, name="t", actions=[ActionSpec(destination=hook)])

    def delivery(key: str):
        return delivery_create(
            destination=hook,
            payload=payload_build(destination=hook, template=None, context={}),
            idempotency_key=key,
            trigger_id=trigger.pk,
        )

    dead = delivery("dead")
    type(dead).objects.filter(pk=dead.pk).update(status=DeliveryStatus.DEAD)
    pending = delivery("pending")
    extra = make_user()
    Membership.objects.create(organization=org, user=extra, role=Role.VIEWER)
    new = make_user()
    key, _ = api_key_create(organization=org, name="k", role=Role.ADMIN, created_by=world.users["owner"])
    return {
        "o": org.pk,
        "t": trigger.pk,
        "d": hook.pk,
        "d2": unused.pk,
        "dead": dead.uuid,
        "pending": pending.uuid,
        "k": key.pk,
        "extra": extra.pk,
        "new": new.username,
        "admin": world.users["admin"].pk,
        "agent": f"{chain.chain_id}:42",
    }


def _fill(value: Any, objects: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in objects:
            return objects[value[1:-1]]  # keeps its type (ids stay numbers)
        return value.format(**objects)
    if isinstance(value, dict):
        return {k: _fill(v, objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, objects) for v in value]
    return value


def _client(world, principal: str):
    if principal == "anonymous":
        return api_client()
    if principal == "outsider":
        return api_client(world.users["outsider"], organization=world.org)
    if principal == "outsider-own":
        return api_client(world.users["outsider"])
    if principal.startswith("key:"):
        _, raw = api_key_create(
            organization=world.org, name=principal, role=principal[4:], created_by=world.users["owner"]
        )
        return api_client(api_key=raw)
    return api_client(world.users[principal], organization=world.org)


CASES = [(row, principal) for row in ROWS for principal in PRINCIPALS if expected(row, principal) is not None]


@pytest.mark.parametrize(("row", "principal"), CASES, ids=[f"{r.name}-{p}" for r, p in CASES])
def test_permission_matrix(world, objects, row: Row, principal: str):
    want = expected(row, principal)
    client = _client(world, principal)
    path = "/api/v1/" + row.path.format(**objects)
    body = _fill(row.body, objects)
    response = (
        getattr(client, row.method)(path, body, format="json")
        if body is not None
        else getattr(client, row.method)(path)
    )
    assert response.status_code == want, (row.name, principal, response.status_code, response.content[:300])
    if want == 404:  # nothing about the organization or the object leaks
        assert world.org.slug not in response.content.decode()
