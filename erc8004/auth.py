"""Authentication and throttling for the API (DRF plumbing; the rules live in
``erc8004/accounts.py``).

Who can call:

* people: ``Authorization: Bearer <JWT access token>`` (simplejwt; settings
  ``SIMPLE_JWT``), or the Django session (admin, browsable API);
* programs: ``Authorization: Api-Key erc_<prefix>_<secret>`` or
  ``X-API-Key: erc_…`` — :class:`ApiKeyAuthentication`. A key acts in its own
  organization only, as :class:`ApiKeyPrincipal` (never as the person who created it,
  so a key cannot reach its creator's other organizations).

Throttling (:class:`PrincipalRateThrottle`) counts per API key, per user, or per
client IP when anonymous, with rates from ``settings.API_THROTTLE_RATES`` read on
every request (so they can change without a restart of the class cache); a 429
carries ``Retry-After``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .accounts import api_key_authenticate
from .models import ApiKey

__all__ = (
    "ApiKeyAuthentication",
    "ApiKeyPrincipal",
    "LoginIpThrottle",
    "LoginUsernameThrottle",
    "PrincipalRateThrottle",
    "TestSendThrottle",
)


class ApiKeyPrincipal(AnonymousUser):
    """``request.user`` for an API-key request: authenticated, but nobody's account."""

    def __init__(self, api_key: ApiKey) -> None:
        super().__init__()
        self.api_key = api_key
        self.username = f"api-key:{api_key.prefix}"

    @property
    def is_anonymous(self) -> bool:  # type: ignore[override]
        return False

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <key>`` or ``X-API-Key: <key>``.

    A request that presents a key must present a live one: unknown, revoked or
    expired keys get 401 (never a silent fall-back to anonymous)."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        raw = request.META.get("HTTP_X_API_KEY", "")
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not raw and header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != self.keyword.lower():
                return None
            raw = value
        if not raw:
            return None
        api_key = api_key_authenticate(raw=raw.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked API key")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the API-key scheme in the OpenAPI schema (loaded with this module)."""

    target_class = "erc8004.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key `erc_<prefix>_<secret>`; also accepted as `Authorization: Api-Key <key>`.",
        }


def _principal(request: Request) -> tuple[str, str]:
    """(throttle scope, identity) of the caller."""
    if isinstance(request.auth, ApiKey):
        return "apikey", str(request.auth.pk)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.pk is not None:
        return "user", str(user.pk)
    return "anon", ""


class _DynamicRateThrottle(SimpleRateThrottle):
    """A throttle whose scope and rate are decided per request from settings."""

    def __init__(self) -> None:  # the base class would read a rate per class; we read per request
        self.rate = None

    def _configure(self, scope: str) -> None:
        self.scope = scope
        self.rate = settings.API_THROTTLE_RATES[scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)


class PrincipalRateThrottle(_DynamicRateThrottle):
    """One budget per API key, per user, or per anonymous client IP."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope, ident = _principal(request)
        self._ident = ident or self.get_ident(request)
        self._configure(scope)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self._ident}


class LoginIpThrottle(_DynamicRateThrottle):
    """Login and registration attempts per client IP."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self._configure("login")
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": "login-ip", "ident": self.get_ident(request)}


class LoginUsernameThrottle(_DynamicRateThrottle):
    """Login attempts per username, whatever the IP (a botnet gets no more guesses)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self._configure("login")
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        data = request.data if isinstance(request.data, dict) else {}
        username = str(data.get("username") or "").strip().lower()
        if not username:
            return None
        ident = hashlib.sha256(username.encode()).hexdigest()[:32]
        return self.cache_format % {"scope": "login-user", "ident": ident}


class TestSendThrottle(_DynamicRateThrottle):
    """Endpoints that send real messages (trigger/destination tests): a tight budget."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope, ident = _principal(request)
        self._ident = f"{scope}:{ident or self.get_ident(request)}"
        self._configure("test_send")
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": "test-send", "ident": self._ident}
