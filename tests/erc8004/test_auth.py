"""erc8004/auth.py and the auth endpoints: JWT (expiry, tampering, refresh rotation,
logout, password change), API keys (both headers, revoke, expiry, scope), the
session, and throttling with 429 + Retry-After."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import timedelta

import jwt
import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from erc8004.accounts import api_key_create, api_key_revoke
from erc8004.models import Role
from tests.fixtures.accounts import PASSWORD, api_client, make_user

pytestmark = pytest.mark.django_db
_ip = itertools.count(1)


def fresh_client() -> APIClient:
    """A client with its own IP, so per-IP throttle buckets of other tests never count."""
    n = next(_ip)
    return APIClient(REMOTE_ADDR=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")


def bearer(token: str) -> APIClient:
    client = fresh_client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


#
# Register, login, refresh, logout, me
#


def test_register_login_refresh_logout():
    client = fresh_client()
    response = client.post(
        "/api/v1/auth/register/",
        {"username": "dora", "email": "dora@example.com", "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organization"]["is_personal"] is True
    assert body["organization"]["my_role"] == "owner"
    assert "password" not in json.dumps(body)
    me = bearer(body["access"]).get("/api/v1/auth/me/").json()
    assert me["principal"] == "user"
    assert me["user"]["username"] == "dora"
    assert [o["slug"] for o in me["organizations"]] == ["dora"]

    login = fresh_client().post("/api/v1/auth/login/", {"username": "dora", "password": PASSWORD}, format="json")
    assert login.status_code == 200
    tokens = login.json()
    wrong = fresh_client().post("/api/v1/auth/login/", {"username": "dora", "password": "nope"}, format="json")
    assert wrong.status_code == 401

    refreshed = fresh_client().post("/api/v1/auth/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh"] != tokens["refresh"]  # rotated
    again = fresh_client().post("/api/v1/auth/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert again.status_code == 401  # the old refresh token was blacklisted on rotation

    assert fresh_client().post("/api/v1/auth/logout/", {"refresh": new["refresh"]}, format="json").status_code == 200
    after = fresh_client().post("/api/v1/auth/refresh/", {"refresh": new["refresh"]}, format="json")
    assert after.status_code == 401


@override_settings(ACCOUNTS_REGISTRATION_OPEN=False)
def test_registration_can_be_closed():
    response = fresh_client().post("/api/v1/auth/register/", {"username": "eve", "password": PASSWORD}, format="json")
    assert response.status_code == 403


def test_register_errors_name_the_field():
    make_user("frank")
    response = fresh_client().post("/api/v1/auth/register/", {"username": "frank", "password": "1"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password"}


#
# JWT
#


def test_expired_access_token_is_refused():
    user = make_user()
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1))
    response = bearer(str(token)).get("/api/v1/auth/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_tokens_are_refused():
    victim, attacker = make_user(), make_user()
    header, payload, signature = str(AccessToken.for_user(attacker)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = str(victim.pk)
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert bearer(forged).get("/api/v1/auth/me/").status_code == 401
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert bearer(unsigned).get("/api/v1/auth/me/").status_code == 401
    other_key = jwt.encode(claims, "another-secret-entirely-0123456789abcdef", algorithm="HS256")
    assert bearer(other_key).get("/api/v1/auth/me/").status_code == 401
    assert bearer("garbage").get("/api/v1/auth/me/").status_code == 401


def test_a_refresh_token_is_not_an_access_token():
    login = fresh_client().post(
        "/api/v1/auth/login/", {"username": make_user().username, "password": PASSWORD}, format="json"
    )
    assert bearer(login.json()["refresh"]).get("/api/v1/auth/me/").status_code == 401


def test_changing_the_password_revokes_tokens():
    user = make_user()
    token = str(AccessToken.for_user(user))
    assert bearer(token).get("/api/v1/auth/me/").status_code == 200
    user.set_password("another-long-password-77")
    user.save()
    assert bearer(token).get("/api/v1/auth/me/").status_code == 401


def test_deactivated_users_are_refused():
    user = make_user()
    token = str(AccessToken.for_user(user))
    user.is_active = False
    user.save()
    assert bearer(token).get("/api/v1/auth/me/").status_code == 401


#
# API keys
#


@pytest.mark.parametrize("header", ["api-key", "x-api-key"])
def test_api_key_headers(world, header):
    _, raw = api_key_create(organization=world.org, name="bot", role=Role.MEMBER, created_by=world.users["owner"])
    client = api_client(api_key=raw, header=header)
    me = client.get("/api/v1/auth/me/").json()
    assert me["principal"] == "api_key"
    assert me["user"] is None
    assert [o["id"] for o in me["organizations"]] == [world.org.pk]  # not the creator's other organizations
    assert me["organizations"][0]["my_role"] == "member"
    assert client.get("/api/v1/triggers/").status_code == 200


def test_revoked_expired_and_malformed_keys_get_401(world):
    key, raw = api_key_create(organization=world.org, name="x", created_by=world.users["owner"])
    client = api_client(api_key=raw)
    assert client.get("/api/v1/triggers/").status_code == 200
    api_key_revoke(api_key=key)
    assert client.get("/api/v1/triggers/").status_code == 401
    key, raw = api_key_create(
        organization=world.org,
        name="y",
        expires_at=timezone.now() + timedelta(minutes=1),
        created_by=world.users["owner"],
    )
    type(key).objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_client(api_key=raw).get("/api/v1/triggers/").status_code == 401
    assert api_client(api_key="erc_short_x").get("/api/v1/triggers/").status_code == 401


def test_a_key_acts_only_in_its_organization(world):
    _, raw = api_key_create(organization=world.org, name="x", created_by=world.users["owner"])
    other = world.users["outsider"].organizations.get()
    assert api_client(api_key=raw, organization=other).get("/api/v1/triggers/").status_code == 404
    assert api_client(api_key=raw, organization=world.org).get("/api/v1/triggers/").status_code == 200


def test_api_key_lifecycle_through_the_api(world):
    admin = world.client("admin")
    created = admin.post("/api/v1/api-keys/", {"name": "deploy bot", "role": "viewer"}, format="json")
    assert created.status_code == 201
    raw = created.json()["key"]
    key_id = created.json()["id"]
    listed = admin.get("/api/v1/api-keys/").json()
    assert raw not in json.dumps(listed)
    assert raw.split("_")[2] not in json.dumps(admin.get(f"/api/v1/api-keys/{key_id}/").json())
    assert api_client(api_key=raw).get("/api/v1/triggers/").status_code == 200
    assert api_client(api_key=raw).post("/api/v1/triggers/", {"name": "x"}, format="json").status_code == 403
    rotated = admin.post(f"/api/v1/api-keys/{key_id}/rotate/").json()
    assert api_client(api_key=raw).get("/api/v1/triggers/").status_code == 401
    assert api_client(api_key=rotated["key"]).get("/api/v1/triggers/").status_code == 200
    assert admin.delete(f"/api/v1/api-keys/{rotated['id']}/").status_code == 204
    assert api_client(api_key=rotated["key"]).get("/api/v1/triggers/").status_code == 401
    too_high = world.client("admin").post("/api/v1/api-keys/", {"name": "x", "role": "owner"}, format="json")
    assert too_high.status_code == 400


def test_session_auth_serves_the_browsable_api(world, client):
    client.force_login(world.users["viewer"])
    response = client.get(f"/api/v1/triggers/?organization={world.org.slug}", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Trigger" in response.content


#
# Throttling
#


def test_user_throttle_answers_429_with_retry_after(world):
    rates = {"user": "3/min", "apikey": "2/min", "anon": "2/min", "login": "3/min", "test_send": "1/min"}
    user = make_user()
    with override_settings(API_THROTTLE_RATES=rates):
        client = api_client(user)
        statuses = [client.get("/api/v1/triggers/").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = client.get("/api/v1/triggers/")
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= 60
        assert api_client(make_user()).get("/api/v1/triggers/").status_code == 200  # per user

        _, raw = api_key_create(organization=world.org, name="t", created_by=world.users["owner"])
        key_client = api_client(api_key=raw)
        assert [key_client.get("/api/v1/triggers/").status_code for _ in range(3)] == [200, 200, 429]

        anon = fresh_client()
        statuses = [anon.post("/api/v1/auth/refresh/", {"refresh": "x"}, format="json").status_code for _ in range(3)]
        assert statuses == [401, 401, 429]


def test_login_attempts_are_throttled_per_ip_and_per_username():
    user = make_user()
    with override_settings(API_THROTTLE_RATES={"login": "3/min", "anon": "100/min"}):
        client = fresh_client()
        statuses = [
            client.post(
                "/api/v1/auth/login/", {"username": user.username, "password": "bad"}, format="json"
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        blocked = client.post("/api/v1/auth/login/", {"username": user.username, "password": PASSWORD}, format="json")
        assert blocked.status_code == 429  # even the right password waits
        assert "Retry-After" in blocked
        # Another IP guessing the same username is throttled too (per-username budget).
        other_ip = fresh_client().post(
            "/api/v1/auth/login/", {"username": user.username, "password": "bad"}, format="json"
        )
        assert other_ip.status_code == 429
