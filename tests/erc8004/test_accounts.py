"""erc8004/accounts.py: personal organizations, role rules, transfers, API keys."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from erc8004.accounts import (
    api_key_authenticate,
    api_key_create,
    api_key_parse,
    api_key_revoke,
    api_key_rotate,
    membership_add,
    membership_remove,
    membership_role_set,
    organization_create,
    organization_delete,
    organization_resolve,
    organization_transfer,
    user_create,
)
from erc8004.models import ApiKey, Membership, Organization, Role
from tests.fixtures.accounts import make_user

pytestmark = pytest.mark.django_db


def test_every_user_gets_a_personal_organization_they_own():
    user = user_create(username="alice", email="Alice@Example.com", password="correct-horse-battery-42")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal
    assert membership.organization.slug == "alice"
    assert user.email == "alice@example.com"
    assert organization_resolve(user=user).organization == membership.organization


def test_user_create_refuses_bad_input_with_field_errors():
    user_create(username="bob", email="bob@example.com", password="correct-horse-battery-42")
    with pytest.raises(ValidationError) as exc:
        user_create(username="BOB", email="bob@example.com", password="123")
    errors = exc.value.message_dict
    assert set(errors) == {"username", "email", "password"}
    assert Organization.objects.filter(is_personal=True).count() == 1


def test_slugs_stay_unique():
    user_create(username="carol", password=None)
    org = organization_create(name="carol", created_by=make_user())
    assert org.slug == "carol-2"
    with pytest.raises(ValidationError, match="taken"):
        organization_create(name="x", slug="carol", created_by=make_user())
    with pytest.raises(ValidationError):
        organization_create(name="x", slug="123", created_by=make_user())  # ids are numbers


def test_role_rules(world):
    owner, admin, member, viewer = (world.users[r] for r in ("owner", "admin", "member", "viewer"))
    newcomer = make_user()
    with pytest.raises(PermissionDenied):
        membership_add(organization=world.org, user=newcomer, role=Role.VIEWER, by=member)
    with pytest.raises(ValidationError, match="transfer"):
        membership_add(organization=world.org, user=newcomer, role=Role.OWNER, by=owner)
    added = membership_add(organization=world.org, user=newcomer, role=Role.ADMIN, by=admin)
    with pytest.raises(ValidationError, match="already"):
        membership_add(organization=world.org, user=newcomer, role=Role.VIEWER, by=owner)

    owner_membership = Membership.objects.get(organization=world.org, user=owner)
    with pytest.raises(ValidationError):
        membership_role_set(membership=owner_membership, role=Role.ADMIN, by=admin)
    viewer_membership = Membership.objects.get(organization=world.org, user=viewer)
    with pytest.raises(PermissionDenied):
        membership_role_set(membership=viewer_membership, role=Role.MEMBER, by=member)
    assert membership_role_set(membership=viewer_membership, role=Role.MEMBER, by=admin).role == Role.MEMBER

    with pytest.raises(ValidationError, match="owner cannot leave"):
        membership_remove(membership=owner_membership, by=owner)
    membership_remove(membership=Membership.objects.get(user=member, organization=world.org), by=member)  # leaving
    membership_remove(membership=added, by=admin)
    assert not Membership.objects.filter(organization=world.org, user__in=[member, newcomer]).exists()


def test_personal_organizations_have_no_other_members_and_stay():
    user = make_user()
    personal = Organization.objects.get(memberships__user=user)
    with pytest.raises(ValidationError):
        membership_add(organization=personal, user=make_user(), role=Role.VIEWER, by=user)
    with pytest.raises(ValidationError):
        organization_delete(organization=personal)


def test_transfer_makes_the_old_owner_an_admin(world):
    owner, admin, member = world.users["owner"], world.users["admin"], world.users["member"]
    with pytest.raises(PermissionDenied):
        organization_transfer(organization=world.org, new_owner=member, by=admin)
    with pytest.raises(ValidationError):
        organization_transfer(organization=world.org, new_owner=world.users["outsider"], by=owner)
    organization_transfer(organization=world.org, new_owner=member, by=owner)
    roles = dict(Membership.objects.filter(organization=world.org).values_list("user_id", "role"))
    assert roles[member.pk] == Role.OWNER
    assert roles[owner.pk] == Role.ADMIN
    assert list(roles.values()).count(Role.OWNER) == 1


def test_resolve_is_a_not_found_outside_ones_organizations(world):
    outsider = world.users["outsider"]
    for ref in (str(world.org.pk), world.org.slug, "999999999", "9" * 40, "no-such-org"):
        with pytest.raises(ObjectDoesNotExist):
            organization_resolve(user=outsider, ref=ref)
    access = organization_resolve(user=world.users["viewer"], ref=world.org.slug)
    assert (access.organization, access.role) == (world.org, Role.VIEWER)


#
# API keys
#


def test_api_key_is_shown_once_and_stored_hashed(world):
    key, raw = api_key_create(organization=world.org, name="ci", role=Role.MEMBER, created_by=world.users["admin"])
    prefix, secret = api_key_parse(raw)
    assert raw == f"erc_{prefix}_{secret}"
    assert key.prefix == prefix
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert secret not in str(stored)
    assert api_key_authenticate(raw=raw) == key
    assert api_key_authenticate(raw=raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert api_key_authenticate(raw="erc_nonsense") is None


def test_key_role_is_capped_by_its_creator(world):
    with pytest.raises(ValidationError, match="above its creator"):
        api_key_create(organization=world.org, name="x", role=Role.ADMIN, created_by=world.users["member"])
    with pytest.raises(ValidationError):
        api_key_create(organization=world.org, name="x", role=Role.OWNER, created_by=world.users["owner"])
    key, _ = api_key_create(organization=world.org, name="x", role=Role.ADMIN, created_by=world.users["admin"])
    assert organization_resolve(user=None, api_key=key).role == Role.ADMIN
    Membership.objects.filter(organization=world.org, user=world.users["admin"]).update(role=Role.VIEWER)
    assert organization_resolve(user=None, api_key=key).role == Role.VIEWER  # the creator was demoted
    Membership.objects.filter(organization=world.org, user=world.users["admin"]).delete()
    with pytest.raises(ObjectDoesNotExist):
        organization_resolve(user=None, api_key=key)  # the creator left: the key is dead


def test_revoked_and_expired_keys_stop_working(world):
    key, raw = api_key_create(organization=world.org, name="x", created_by=world.users["owner"])
    api_key_revoke(api_key=key)
    assert api_key_authenticate(raw=raw) is None
    soon = timezone.now() + timedelta(minutes=5)
    key, raw = api_key_create(organization=world.org, name="y", expires_at=soon, created_by=world.users["owner"])
    assert api_key_authenticate(raw=raw) == key
    assert api_key_authenticate(raw=raw, now=soon + timedelta(seconds=1)) is None
    with pytest.raises(ValidationError):
        api_key_create(organization=world.org, name="z", expires_at=timezone.now(), created_by=world.users["owner"])


def test_rotate_revokes_and_replaces_in_one_step(world):
    key, raw = api_key_create(organization=world.org, name="bot", role=Role.VIEWER, created_by=world.users["owner"])
    new, new_raw = api_key_rotate(api_key=key)
    assert (new.name, new.role, new.organization) == ("bot", Role.VIEWER, world.org)
    assert api_key_authenticate(raw=raw) is None
    assert api_key_authenticate(raw=new_raw) == new
    with pytest.raises(ValidationError):
        api_key_rotate(api_key=key)


def test_last_used_is_recorded_cheaply(world):
    key, raw = api_key_create(organization=world.org, name="x", created_by=world.users["owner"])
    now = timezone.now()
    with CaptureQueriesContext(connection) as first:
        api_key_authenticate(raw=raw, now=now)
    with CaptureQueriesContext(connection) as second:
        for i in range(10):
            api_key_authenticate(raw=raw, now=now + timedelta(seconds=i))
    assert any(q["sql"].startswith("UPDATE") for q in first.captured_queries)
    assert not any(q["sql"].startswith("UPDATE") for q in second.captured_queries)  # once a minute at most
    assert len(second.captured_queries) == 10
    key.refresh_from_db()
    assert key.last_used_at == now
    api_key_authenticate(raw=raw, now=now + timedelta(minutes=2))
    key.refresh_from_db()
    assert key.last_used_at == now + timedelta(minutes=2)
