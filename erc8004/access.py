"""Organization scoping for API views: which organization a request acts in, with
which role, and what it may do there.

Every view of something an organization owns (triggers, destinations, deliveries,
API keys) builds its queryset from ``request_access(request).organization`` — so an
object of another organization is simply not found (404). Object-level permissions
are never relied on (DRF does not apply them to lists or creates).

Selecting the organization (documented in docs/api.md and the OpenAPI schema):

* ``X-Organization: <id or slug>`` header, or ``?organization=<id or slug>``;
* default: the user's personal organization;
* an API key always acts in its own organization (naming another one is a 404).

A member whose role is too low for an action gets 403 — they can see the
organization, so that answer gives nothing away.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, permissions
from rest_framework.request import Request

from .accounts import Access, organization_resolve
from .models import ApiKey, Role

__all__ = (
    "ORGANIZATION_PARAMETERS",
    "OrganizationRolePermission",
    "OrganizationScopedMixin",
    "request_access",
)

ORGANIZATION_HEADER = "X-Organization"

ORGANIZATION_PARAMETERS = [
    OpenApiParameter(
        name=ORGANIZATION_HEADER,
        type=OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        required=False,
        description="The organization to act in (id or slug). Default: your personal organization. "
        "API keys always act in their own organization. Also accepted as `?organization=`.",
    ),
]


def request_access(request: Request) -> Access:
    """Resolve (once per request) the organization and role; 404 if not a member."""
    cached = getattr(request, "_erc8004_access", None)
    if cached is not None:
        return cached
    ref = request.headers.get(ORGANIZATION_HEADER) or request.query_params.get("organization") or None
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    try:
        access = organization_resolve(user=request.user, api_key=api_key, ref=ref)
    except ObjectDoesNotExist:
        raise exceptions.NotFound("organization not found") from None
    request._erc8004_access = access
    return access


class OrganizationRolePermission(permissions.BasePermission):
    """Authenticated, a member of the selected organization, and ranked high enough
    for the view's action (``view.required_role()``)."""

    message = "your role in this organization does not allow this"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        access = request_access(request)
        required = view.required_role()
        if not access.at_least(required):
            self.message = f"this needs the {required} role or higher; you are {access.role} in this organization"
            return False
        return True


class OrganizationScopedMixin:
    """For viewsets of things an organization owns.

    ``read_role`` for safe methods, ``write_role`` for the rest, ``action_roles`` to
    override per action (e.g. ``{"dry_run": Role.VIEWER}``)."""

    permission_classes = [permissions.IsAuthenticated, OrganizationRolePermission]
    read_role: str = Role.VIEWER
    write_role: str = Role.MEMBER
    action_roles: dict[str, str] = {}

    def required_role(self) -> str:
        action = getattr(self, "action", None)
        if action in self.action_roles:
            return self.action_roles[action]
        return self.read_role if self.request.method in permissions.SAFE_METHODS else self.write_role

    @property
    def access(self) -> Access:
        return request_access(self.request)

    @property
    def organization(self):
        return self.access.organization

    def acting_user(self):
        """The person behind the request (None for an API key)."""
        user = self.request.user
        return None if isinstance(self.request.auth, ApiKey) or not user.is_authenticated else user
