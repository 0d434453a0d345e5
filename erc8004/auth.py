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
every request; a 429 carries ``Retry-After`` (seconds until the window ends).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from .accounts import api_key_authenticate
from .models import ApiKey
from .queues import redis_client

logger = logging.getLogger("erc8004.auth")

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


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_parse(rate: str) -> tuple[int, int]:
    """``"600/min"`` → (600, 60). The period is read from its first letter (s, m, h, d)."""
    number, _, period = rate.partition("/")
    return int(number), _PERIODS[period.strip()[0].lower()]


class _CounterThrottle(BaseThrottle):
    """A counter per (scope, identity) in Redis, in windows that start at the first
    request: ``SET NX EX`` + ``INCR`` + ``TTL`` in one round trip.

    Why not DRF's ``SimpleRateThrottle``: it keeps every request's timestamp in one
    cache value and rewrites it on each request (600 floats pickled both ways per
    call at 600/min, and lost updates under concurrency). A counter is O(1) and
    atomic. The cost: a window, not a sliding log — a client can spend one budget
    at the end of a window and the next at the start of the following one. If Redis
    is down the API stays up (fails open) and says so in the log.
    """

    def _allow(self, scope: str, ident: str) -> bool:
        limit, duration = rate_parse(settings.API_THROTTLE_RATES[scope])
        key = f"{settings.REDIS_KEY_PREFIX}throttle:{scope}:{ident}"
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.set(key, 0, ex=duration, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = pipe.execute()
        except RedisError:
            logger.warning("throttle %s unavailable (Redis); request allowed", scope, exc_info=True)
            return True
        if count > limit:
            self._wait = float(ttl if ttl and ttl > 0 else duration)
            return False
        return True

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


class PrincipalRateThrottle(_CounterThrottle):
    """One budget per API key, per user, or per anonymous client IP."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope, ident = _principal(request)
        return self._allow(scope, ident or self.get_ident(request))


class LoginIpThrottle(_CounterThrottle):
    """Login and registration attempts per client IP."""

    def allow_request(self, request: Request, view: Any) -> bool:
        return self._allow("login", f"ip:{self.get_ident(request)}")


class LoginUsernameThrottle(_CounterThrottle):
    """Login attempts per username, whatever the IP (a botnet gets no more guesses)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        data = request.data if isinstance(request.data, dict) else {}
        username = str(data.get("username") or "").strip().lower()
        if not username:
            return True
        return self._allow("login", "user:" + hashlib.sha256(username.encode()).hexdigest()[:32])


class TestSendThrottle(_CounterThrottle):
    """Endpoints that send real messages (trigger/destination tests): a tight budget."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope, ident = _principal(request)
        return self._allow("test_send", f"{scope}:{ident or self.get_ident(request)}")
