"""Accounts shared by every room: organizations own triggers, destinations,
deliveries and API keys; users reach them through memberships.

They live on floor 1 (this package) because both ``actions`` and ``triggers`` point
at them and neither may import the other.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ("GRANTABLE_ROLE_CHOICES", "ROLE_RANK", "ApiKey", "Membership", "Organization", "Role")


class Role(models.TextChoices):
    """Viewers read; members write; admins also manage members; owners also delete."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
# Roles that can be granted directly (ownership moves only by a transfer).
GRANTABLE_ROLE_CHOICES = [(r.value, r.label) for r in (Role.ADMIN, Role.MEMBER, Role.VIEWER)]


class Organization(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    is_personal = models.BooleanField(default=False, help_text="Created with a user; cannot be deleted")
    paused = models.BooleanField(default=False, help_text="Bulk pause: no trigger of this organization fires")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="organizations")

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("organization_id", "user_id")
        constraints = [models.UniqueConstraint(fields=("organization", "user"), name="membership_unique_org_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class ApiKey(models.Model):
    """A key for programs: scoped to one organization, with a role cap, expiring,
    revocable. Shown once as ``erc_<prefix>_<secret>``; only its SHA-256 is stored.

    Why SHA-256 and not a password hash (Argon2, PBKDF2): the secret part is 256
    random bits, so there is nothing to brute-force and no dictionary to slow down —
    the slowness of a password hash buys no safety here, but would cost every API
    request tens of milliseconds (and hand attackers a cheap CPU-exhaustion lever).
    A fast, deterministic digest also lets the key be found by an indexed lookup.
    The visible ``prefix`` finds the row; the digest is compared in constant time.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible part of the key (erc_<prefix>_…)")
    key_hash = models.CharField(max_length=64, help_text="SHA-256 of the whole key, hex")
    role = models.CharField(
        max_length=10, choices=Role.choices, default=Role.MEMBER, help_text="The most this key may do"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty = never")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Recorded at most once a minute per key (erc8004/accounts.py), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (erc_{self.prefix}_…)"
