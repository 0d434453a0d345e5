"""Accounts services: users and their personal organizations, organizations and
memberships with role rules, API keys, and resolving which organization a request
acts in.

The role rules, in one place (the API and the admin call these functions):

* viewers read; members also write (triggers, destinations, deliveries);
* admins also manage members, API keys and the organization's settings (pause);
* owners also delete and transfer the organization.
* Nobody grants a role above their own, or changes/removes someone ranked above
  them; ``owner`` is given only by a transfer; an organization always keeps an
  owner; anyone may leave, except its owner (transfer first).

Everything an organization owns is reached through the organizations a user is a
member of (``organization_resolve``): anything else does not exist for them — a
404, never a 403 that would confirm it does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from .models import ROLE_RANK, ApiKey, Membership, Organization, Role

__all__ = (
    "API_KEY_PREFIX",
    "Access",
    "api_key_authenticate",
    "api_key_create",
    "api_key_parse",
    "api_key_revoke",
    "api_key_rotate",
    "membership_add",
    "membership_remove",
    "membership_role_set",
    "organization_create",
    "organization_delete",
    "organization_pause_set",
    "organization_resolve",
    "organization_transfer",
    "organization_update",
    "organizations_for_user",
    "role_at_least",
    "user_create",
)

API_KEY_PREFIX = "erc"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_PREFIX_LENGTH = 10  # 36^10 ≈ 3.7e15: collisions are retried, never guessed
_SECRET_LENGTH = 43  # 62^43 ≈ 2^256
_KEY_RE = re.compile(rf"^{API_KEY_PREFIX}_([a-z0-9]{{{_PREFIX_LENGTH}}})_([A-Za-z0-9]{{{_SECRET_LENGTH}}})$")
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")

User = get_user_model()


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


def _min_role(a: str, b: str) -> str:
    return a if ROLE_RANK[Role(a)] <= ROLE_RANK[Role(b)] else b


#
# Users and organizations
#


def _unique_slug(base: str) -> str:
    slug = slugify(base)[:40].strip("-") or "org"
    candidate, n = slug, 1
    while Organization.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


@transaction.atomic
def user_create(*, username: str, email: str = "", password: str | None, **extra: Any):
    """Create a user and their personal organization (owner; it cannot be deleted)."""
    username = (username or "").strip()
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]{3,50}", username):
        errors["username"] = ["3-50 letters, digits and @/./+/-/_"]
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["this username is taken"]
    email = (email or "").strip().lower()
    if email and User.objects.filter(email__iexact=email).exists():
        errors["email"] = ["an account with this email exists"]
    if password is not None:
        try:
            validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    user = User(username=username, email=email, **extra)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    organization = Organization.objects.create(name=username, slug=_unique_slug(username), is_personal=True)
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    return user


def _slug_clean(slug: str) -> str:
    slug = (slug or "").strip().lower()
    if not _SLUG_RE.match(slug) or slug.isdigit():
        raise ValidationError({"slug": ["1-50 of a-z, 0-9 and -, not only digits (ids are numbers)"]})
    return slug


@transaction.atomic
def organization_create(*, name: str, slug: str | None = None, created_by) -> Organization:
    """A shared organization; its creator is its owner."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise ValidationError({"name": ["1-100 characters"]})
    slug = _slug_clean(slug) if slug else _unique_slug(name)
    try:
        with transaction.atomic():
            organization = Organization.objects.create(name=name, slug=slug)
    except IntegrityError:
        raise ValidationError({"slug": ["this slug is taken"]}) from None
    Membership.objects.create(organization=organization, user=created_by, role=Role.OWNER)
    return organization


def organization_update(*, organization: Organization, name: str | None = None, slug: str | None = None):
    fields = []
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise ValidationError({"name": ["1-100 characters"]})
        organization.name = name
        fields.append("name")
    if slug is not None:
        organization.slug = _slug_clean(slug)
        fields.append("slug")
    if fields:
        try:
            with transaction.atomic():
                organization.save(update_fields=fields)
        except IntegrityError:
            raise ValidationError({"slug": ["this slug is taken"]}) from None
    return organization


def organization_delete(*, organization: Organization) -> None:
    """Delete a shared organization and everything it owns. Personal ones stay."""
    if organization.is_personal:
        raise ValidationError({"organization": ["a personal organization cannot be deleted"]})
    from django.db.models.deletion import ProtectedError

    with transaction.atomic():
        # Trigger actions and deliveries protect destinations (PROTECT, so nothing
        # deletes a destination in use by accident): remove them first, through the
        # reverse relations (this floor imports no app).
        organization.triggers.all().delete()
        organization.deliveries.all().delete()
        try:
            organization.delete()
        except ProtectedError as exc:  # pragma: no cover - a reference we do not know about
            raise ValidationError({"organization": [f"still referenced: {exc}"]}) from None


def organization_pause_set(*, organization: Organization, paused: bool) -> Organization:
    """Bulk pause: while paused, no trigger of the organization fires (events are
    still indexed; nothing is queued for them). Resuming does not replay the gap."""
    Organization.objects.filter(pk=organization.pk).update(paused=paused)
    organization.paused = paused
    return organization


@transaction.atomic
def organization_transfer(*, organization: Organization, new_owner, by) -> None:
    """The owner hands the organization to another member and becomes an admin."""
    if organization.is_personal:
        raise ValidationError({"organization": ["a personal organization cannot be transferred"]})
    memberships = {m.user_id: m for m in Membership.objects.select_for_update().filter(organization=organization)}
    current = memberships.get(by.pk)
    if current is None or current.role != Role.OWNER:
        raise PermissionDenied("only the owner transfers an organization")
    target = memberships.get(new_owner.pk)
    if target is None:
        raise ValidationError({"user_id": ["not a member of this organization; add them first"]})
    if target.pk == current.pk:
        raise ValidationError({"user_id": ["already the owner"]})
    Membership.objects.filter(pk=target.pk).update(role=Role.OWNER)
    Membership.objects.filter(pk=current.pk).update(role=Role.ADMIN)


#
# Memberships
#


def _actor_role(organization: Organization, actor) -> str | None:
    return Membership.objects.filter(organization=organization, user=actor).values_list("role", flat=True).first()


def membership_add(*, organization: Organization, user, role: str, by) -> Membership:
    """An admin or owner adds someone with a role up to their own (never owner)."""
    actor = _actor_role(organization, by)
    if not role_at_least(actor, Role.ADMIN):
        raise PermissionDenied("admins and owners manage members")
    if role not in Role.values:
        raise ValidationError({"role": [f"one of {', '.join(Role.values)}"]})
    if role == Role.OWNER:
        raise ValidationError({"role": ["ownership is given by a transfer"]})
    if not role_at_least(actor, role):
        raise ValidationError({"role": ["you cannot grant a role above your own"]})
    if organization.is_personal:
        raise ValidationError({"organization": ["a personal organization has no other members; create a shared one"]})
    try:
        with transaction.atomic():
            return Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise ValidationError({"user": ["already a member"]}) from None


def membership_role_set(*, membership: Membership, role: str, by) -> Membership:
    actor = _actor_role(membership.organization, by)
    if not role_at_least(actor, Role.ADMIN):
        raise PermissionDenied("admins and owners manage members")
    if role not in Role.values:
        raise ValidationError({"role": [f"one of {', '.join(Role.values)}"]})
    if role == Role.OWNER or membership.role == Role.OWNER:
        raise ValidationError({"role": ["ownership changes only by a transfer"]})
    if not role_at_least(actor, membership.role) or not role_at_least(actor, role):
        raise PermissionDenied("you cannot change the role of someone ranked above you, or grant more than yours")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def membership_remove(*, membership: Membership, by) -> None:
    """Admins remove members ranked up to themselves; anyone may leave; the owner
    must transfer before leaving (an organization always has an owner)."""
    if membership.role == Role.OWNER:
        raise ValidationError({"user": ["the owner cannot leave or be removed; transfer the organization first"]})
    if membership.user_id != by.pk:
        actor = _actor_role(membership.organization, by)
        if not role_at_least(actor, Role.ADMIN):
            raise PermissionDenied("admins and owners manage members")
        if not role_at_least(actor, membership.role):
            raise PermissionDenied("you cannot remove someone ranked above you")
    membership.delete()


#
# Which organization a request acts in
#


@dataclass(frozen=True)
class Access:
    """The organization a request acts in, and the role it acts with there."""

    organization: Organization
    role: str
    api_key: ApiKey | None = None

    def at_least(self, minimum: str) -> bool:
        return role_at_least(self.role, minimum)


def organizations_for_user(*, user):
    return Organization.objects.filter(memberships__user=user)


def _organization_q(ref: str, prefix: str = "") -> Q:
    """An id (digits) or a slug. Ids beyond 64 bits match nothing (rather than
    overflowing the database's bigint)."""
    ref = ref.strip()
    if ref.isdigit():
        return Q(**{f"{prefix}pk": int(ref)}) if len(ref) <= 18 else Q(pk__in=[])
    return Q(**{f"{prefix}slug": ref.lower()[:50]})


def organization_resolve(*, user, api_key: ApiKey | None = None, ref: str | None = None) -> Access:
    """The organization a request acts in.

    * an API key acts in its own organization only, with its role capped by its
      creator's current role there (a key dies with its creator's membership);
    * a user names one (``ref``: id or slug, from ``X-Organization`` or
      ``?organization=``) or gets their personal organization (else their oldest).

    Raises ``ObjectDoesNotExist`` for anything the caller is not a member of — the
    same answer as for an organization that does not exist."""
    if api_key is not None:
        organization = api_key.organization
        if ref and not Organization.objects.filter(_organization_q(ref), pk=organization.pk).exists():
            raise ObjectDoesNotExist("organization not found")
        role = api_key.role
        if api_key.created_by_id is not None:
            creator_role = _actor_role(organization, api_key.created_by)
            if creator_role is None:
                raise ObjectDoesNotExist("organization not found")
            role = _min_role(role, creator_role)
        return Access(organization=organization, role=role, api_key=api_key)
    memberships = Membership.objects.filter(user=user).select_related("organization")
    if ref:
        membership = memberships.filter(_organization_q(ref, "organization__")).first()
    else:
        membership = memberships.order_by("-organization__is_personal", "organization_id").first()
    if membership is None:
        raise ObjectDoesNotExist("organization not found")
    return Access(organization=membership.organization, role=membership.role)


#
# API keys
#


def _key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_parse(raw: str) -> tuple[str, str] | None:
    """``erc_<prefix>_<secret>`` → (prefix, secret), or None if it is not one."""
    match = _KEY_RE.match((raw or "").strip())
    return (match.group(1), match.group(2)) if match else None


def api_key_create(
    *,
    organization: Organization,
    name: str,
    role: str = Role.MEMBER,
    expires_at: datetime | None = None,
    created_by=None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the full key string — the only time it exists
    in clear. Its role is capped by the creator's (a member cannot mint an admin key)."""
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not 1 <= len(name) <= 100:
        errors["name"] = ["1-100 characters"]
    if role not in Role.values or role == Role.OWNER:
        errors["role"] = ["one of admin, member, viewer"]
    elif created_by is not None and not role_at_least(_actor_role(organization, created_by), role):
        errors["role"] = ["a key cannot have a role above its creator's"]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["must be in the future"]
    if errors:
        raise ValidationError(errors)
    for _ in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LENGTH))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
        raw = f"{API_KEY_PREFIX}_{prefix}_{secret}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    organization=organization,
                    name=name,
                    prefix=prefix,
                    key_hash=_key_hash(raw),
                    role=role,
                    expires_at=expires_at,
                    created_by=created_by,
                )
            return key, raw
        except IntegrityError:  # pragma: no cover - a prefix collision: draw again
            continue
    raise RuntimeError("could not draw a unique API key prefix")  # pragma: no cover


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoked keys stop working at once (the row stays, for the audit trail)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, by=None) -> tuple[ApiKey, str]:
    """Revoke a key and create its replacement (same name, role, expiry) at once."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise ValidationError({"api_key": ["this key is revoked"]})
    expires_at = api_key.expires_at if api_key.expires_at and api_key.expires_at > timezone.now() else None
    api_key_revoke(api_key=api_key)
    return api_key_create(
        organization=api_key.organization,
        name=api_key.name,
        role=api_key.role,
        expires_at=expires_at,
        created_by=by or api_key.created_by,
    )


def api_key_authenticate(*, raw: str, now: datetime | None = None) -> ApiKey | None:
    """The live key for ``raw``, or None (unknown, wrong secret, revoked, expired).

    Found by prefix, compared in constant time. ``last_used_at`` is written with a
    conditional UPDATE at most once per ``API_KEY_LAST_USED_INTERVAL_SECONDS``."""
    parsed = api_key_parse(raw)
    if parsed is None:
        return None
    now = now or timezone.now()
    key = ApiKey.objects.select_related("organization", "created_by").filter(prefix=parsed[0]).first()
    if key is None or not hmac.compare_digest(key.key_hash, _key_hash(raw.strip())):
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if key.created_by is not None and not key.created_by.is_active:
        return None
    interval = timedelta(seconds=settings.API_KEY_LAST_USED_INTERVAL_SECONDS)
    if key.last_used_at is None or key.last_used_at < now - interval:
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - interval)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key
