"""erc8004/admin.py: organizations, memberships, API keys (the key shown once, when
created; never on any page after), organization pause."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from erc8004.models import ApiKey, Organization
from tests.fixtures.accounts import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_api_key_created_in_the_admin_is_shown_once(admin_client, world):
    response = admin_client.post(
        reverse("admin:erc8004_apikey_add"),
        {"organization": world.org.pk, "name": "from admin", "role": "viewer", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from admin")
    shown = [str(m) for m in response.context["messages"]]
    raw = next(m.split(": ", 1)[1] for m in shown if "shown once" in m)
    assert raw.startswith(f"erc_{key.prefix}_")
    assert api_client(api_key=raw).get("/api/v1/triggers/").status_code == 200
    for url in (
        reverse("admin:erc8004_apikey_changelist"),
        reverse("admin:erc8004_apikey_change", args=[key.pk]),
        reverse("admin:erc8004_organization_change", args=[world.org.pk]),
    ):
        assert raw.split("_")[2] not in admin_client.get(url).content.decode()


def test_pause_and_resume_organizations(admin_client, world):
    changelist = reverse("admin:erc8004_organization_changelist")
    admin_client.post(changelist, {"action": "pause", "_selected_action": [world.org.pk]})
    assert Organization.objects.get(pk=world.org.pk).paused
    admin_client.post(changelist, {"action": "resume", "_selected_action": [world.org.pk]})
    assert not Organization.objects.get(pk=world.org.pk).paused


def test_revoke_action(admin_client, world):
    from erc8004.accounts import api_key_create

    key, raw = api_key_create(organization=world.org, name="k", created_by=world.users["owner"])
    admin_client.post(reverse("admin:erc8004_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    assert api_client(api_key=raw).get("/api/v1/triggers/").status_code == 401
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
