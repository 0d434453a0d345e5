"""Shared pieces of the public HTTP API: one error shape, keyset (cursor) pagination,
throttles whose rates come from settings. Every app's API uses these, so a client
sees the same errors, cursors and limits everywhere.

Error shape (every 4xx the API returns; docs/api.md)::

    {"status": 400, "code": "invalid", "detail": "Invalid request parameters.",
     "errors": {"min_average": ["Enter a number."]}}

``errors`` is present for 400s only (field → messages; problems not tied to one
parameter are under ``non_field_errors``); a 429 adds ``retry_after`` (seconds, also
sent as the ``Retry-After`` header).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Expression, Q, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler

__all__ = (
    "ErrorSerializer",
    "KeysetOrdering",
    "KeysetPagination",
    "PublicReadAnonThrottle",
    "PublicReadMixin",
    "PublicReadUserThrottle",
    "SortKey",
    "api_exception_handler",
    "error_responses",
)


#
# Errors
#


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API (documented in the OpenAPI schema)."""

    status = serializers.IntegerField(help_text="The HTTP status, repeated")
    code = serializers.CharField(help_text="Stable machine-readable code: invalid, not_found, throttled, ...")
    detail = serializers.CharField(help_text="Human-readable summary")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="400 only: parameter name → messages",
    )
    retry_after = serializers.IntegerField(required=False, help_text="429 only: seconds to wait")


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, list):
        return [str(m) for item in detail for m in _messages(item)]
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _messages(v)]
    return [str(detail)]


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler (status, Retry-After and WWW-Authenticate headers, rollback),
    with the body rewritten into the one error shape."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        errors = (
            {str(k): _messages(v) for k, v in detail.items()}
            if isinstance(detail, dict)
            else {"non_field_errors": _messages(detail)}
        )
        response.data = {
            "status": response.status_code,
            "code": "invalid",
            "detail": "Invalid request parameters.",
            "errors": errors,
        }
        return response
    api_exc = exc if isinstance(exc, exceptions.APIException) else None
    code = api_exc.get_codes() if api_exc else "error"
    data = response.data if isinstance(response.data, dict) else {}
    body: dict[str, Any] = {
        "status": response.status_code,
        "code": code if isinstance(code, str) else "error",
        "detail": str(data.get("detail", "")) or _messages(response.data)[0],
    }
    if isinstance(exc, exceptions.NotFound):
        body["code"] = "not_found"
    if isinstance(exc, exceptions.Throttled):
        body["retry_after"] = exc.wait
    response.data = body
    return response


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the given error statuses, all with the one error shape."""
    text = {
        400: "Invalid parameters (bad filter values, bad ids, bad cursor)",
        404: "No such object",
        429: "Too many requests; see the Retry-After header",
    }
    return {status: OpenApiResponse(ErrorSerializer, description=text.get(status, "")) for status in statuses}


#
# Throttling
#


class _SettingsRate:
    """Rates from the settings at request time (DRF captures ``DEFAULT_THROTTLE_RATES``
    once at import, so ``override_settings`` would not apply), counted in fixed windows.

    Why not DRF's sliding log: it stores every request time of the window in one cache
    value and reads, filters and rewrites the whole list on every request — O(rate) per
    request, tens of KB per call at a few thousand per minute. A window counter is one
    atomic ``INCR`` on the shared Redis cache whatever the rate; the price is that a
    client may burst up to twice the rate across a window boundary. ``Retry-After`` is
    the time left in the window. A rate of ``None`` (empty setting) disables the throttle.
    """

    scope: str
    cache: Any
    rate: str | None
    num_requests: int | None
    duration: int | None
    timer: Any

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or None

    def allow_request(self, request: Request, view: Any) -> bool:
        self._wait = 0.0
        if self.rate is None or not self.num_requests or not self.duration:
            return True
        key = self.get_cache_key(request, view)  # type: ignore[attr-defined]
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        slot = f"{key}:{window}"
        self.cache.add(slot, 0, self.duration + 5)
        try:
            count = self.cache.incr(slot)
        except ValueError:  # expired between add and incr
            self.cache.add(slot, 1, self.duration + 5)
            count = 1
        if count > self.num_requests:
            self._wait = (window + 1) * self.duration - now
            return False
        return True

    def wait(self) -> float:
        return max(self._wait, 1.0)


class PublicReadAnonThrottle(_SettingsRate, AnonRateThrottle):
    """Anonymous reads, per client IP (``REST_FRAMEWORK["NUM_PROXIES"]`` behind proxies)."""

    scope = "public_read_anon"


class PublicReadUserThrottle(_SettingsRate, UserRateThrottle):
    """Signed-in reads, per user (anonymous requests fall back to the IP)."""

    scope = "public_read_user"

    def allow_request(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            self._wait = 0.0
            return True  # the anonymous throttle covers these
        return super().allow_request(request, view)


#
# Keyset pagination
#


@dataclass(frozen=True)
class SortKey:
    """One column of a keyset ordering. ``expression`` (e.g. a COALESCE that the index
    was built on) is annotated under ``name``; otherwise ``name`` is a model field.
    ``kind`` says how the cursor encodes the value: int, decimal or datetime."""

    name: str
    kind: str = "int"
    descending: bool = True
    expression: Expression | None = None


@dataclass(frozen=True)
class KeysetOrdering:
    """A named, unique ordering (the last key must be unique, e.g. the primary key).

    Keys are never NULL: nullable columns sort through a COALESCE expression, because
    a row comparison cannot step over NULLs with an index range.
    """

    name: str
    keys: tuple[SortKey, ...]
    description: str = ""


def _encode_value(key: SortKey, value: Any) -> Any:
    if key.kind == "datetime":
        return value.isoformat()
    if key.kind == "decimal":
        return str(value)
    return int(value)


def _decode_value(key: SortKey, raw: Any) -> Any:
    if key.kind == "datetime":
        value = parse_datetime(raw) if isinstance(raw, str) else None
        if value is None:
            raise ValueError("bad datetime")
        return value
    if key.kind == "decimal":
        if not isinstance(raw, str):
            raise ValueError("bad decimal")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ValueError("bad decimal") from None
        if not value.is_finite():
            raise ValueError("bad decimal")
        return value
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("bad integer")
    return raw


def _beyond(keys: Sequence[SortKey], values: Sequence[Any], *, forward: bool) -> Q:
    """Rows strictly after (``forward``) or before the position ``values`` in key order:
    ``(k1 > v1) OR (k1 = v1 AND (k2 > v2 OR ...))``, with a redundant bound
    ``k1 >= v1`` first so PostgreSQL can start an index range scan at the cursor
    instead of filtering from the top of the index."""
    key, value = keys[0], values[0]
    after_op = "lt" if key.descending == forward else "gt"
    strictly = Q(**{f"{key.name}__{after_op}": value})
    if len(keys) == 1:
        return strictly
    rest = _beyond(keys[1:], values[1:], forward=forward)
    bound = Q(**{f"{key.name}__{after_op}e": value})
    return bound & (strictly | (Q(**{key.name: value}) & rest))


class KeysetPagination(BasePagination):
    """Cursor pagination over a unique, indexed key (DRF's ``CursorPagination`` keys on
    the first column only and pages through ties by OFFSET; this one compares the whole
    key, so every page costs one index range scan however deep it is and however many
    rows share a value).

    The view provides ``keyset_ordering(request) -> KeysetOrdering``. The cursor is
    opaque (base64 JSON of the ordering name, a direction and the boundary row's key
    values); a tampered or stale cursor is a 400 on ``cursor``.
    """

    cursor_query_param = "cursor"
    page_size_query_param = "limit"
    default_page_size = 50
    max_page_size = 200

    def __init__(self) -> None:
        self.base_url = ""
        self.next_cursor: str | None = None
        self.previous_cursor: str | None = None

    def _limit(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.default_page_size
        try:
            limit = int(raw)
        except ValueError:
            raise exceptions.ValidationError({self.page_size_query_param: ["A whole number is required."]}) from None
        if not 1 <= limit <= self.max_page_size:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"Must be between 1 and {self.max_page_size}."]}
            )
        return limit

    def _decode(self, raw: str, ordering: KeysetOrdering) -> tuple[bool, list[Any]]:
        bad = exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        try:
            payload = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4)))
        except (ValueError, UnicodeEncodeError, binascii.Error):
            raise bad from None
        if not isinstance(payload, dict) or payload.get("o") != ordering.name or payload.get("d") not in ("n", "p"):
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Invalid cursor (it belongs to another ordering or is damaged)."]}
            )
        values = payload.get("v")
        if not isinstance(values, list) or len(values) != len(ordering.keys):
            raise bad
        try:
            decoded = [_decode_value(k, v) for k, v in zip(ordering.keys, values, strict=True)]
        except ValueError:
            raise bad from None
        return payload["d"] == "n", decoded

    def _encode(self, ordering: KeysetOrdering, row: Any, *, forward: bool) -> str:
        values = [_encode_value(k, getattr(row, k.name)) for k in ordering.keys]
        payload = json.dumps({"o": ordering.name, "d": "n" if forward else "p", "v": values}, separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list[Any]:
        ordering: KeysetOrdering = view.keyset_ordering(request)
        limit = self._limit(request)
        raw_cursor = request.query_params.get(self.cursor_query_param)
        forward, position = True, None
        if raw_cursor:
            forward, position = self._decode(raw_cursor, ordering)
        annotations = {k.name: k.expression for k in ordering.keys if k.expression is not None}
        if annotations:
            queryset = queryset.annotate(**annotations)
        if position is not None:
            queryset = queryset.filter(_beyond(ordering.keys, position, forward=forward))
        order = [f"{'-' if k.descending == forward else ''}{k.name}" for k in ordering.keys]
        rows = list(queryset.order_by(*order)[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        if not forward:
            rows.reverse()
        self.base_url = request.build_absolute_uri()
        self.next_cursor = self.previous_cursor = None
        if rows:
            if has_more if forward else position is not None:
                self.next_cursor = self._encode(ordering, rows[-1], forward=True)
            if position is not None if forward else has_more:
                self.previous_cursor = self._encode(ordering, rows[0], forward=False)
        return rows

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        return replace_query_param(self.base_url, self.cursor_query_param, cursor)

    def get_paginated_response(self, data: list[Any]) -> Response:
        links = {"next": self._link(self.next_cursor), "previous": self._link(self.previous_cursor)}
        return Response({**links, "results": data})

    def get_first_page_link(self) -> str:
        return remove_query_param(self.base_url, self.cursor_query_param)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri", "description": "The next page"},
                "previous": {"type": "string", "nullable": True, "format": "uri", "description": "The previous page"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position from a previous page's next/previous link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Page size, 1-{self.max_page_size} (default {self.default_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]


class PublicReadMixin:
    """Policy of every public read endpoint: anonymous GETs, throttled per client,
    keyset-paginated lists with a named ``ordering`` (validated by the view's
    FilterSet, applied by :class:`KeysetPagination`)."""

    permission_classes = (AllowAny,)
    throttle_classes = (PublicReadAnonThrottle, PublicReadUserThrottle)
    pagination_class = KeysetPagination
    orderings: dict[str, KeysetOrdering] = {}
    default_ordering = ""

    def keyset_ordering(self, request: Request) -> KeysetOrdering:
        name = request.query_params.get("ordering") or self.default_ordering
        return self.orderings.get(name) or self.orderings[self.default_ordering]
