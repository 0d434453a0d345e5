"""Accounts shared by every room: organizations own triggers, destinations,
deliveries and API keys; users reach them through memberships.

They live on floor 1 (this package) because both ``actions`` and ``triggers`` point
at them and neither may import the other.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ("Membership", "Organization", "Role")


class Role(models.TextChoices):
    """Viewers read; members write; admins also manage members; owners also delete."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


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
