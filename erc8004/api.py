"""Shared pieces of the HTTP API: one error shape, a JSON parser with a nesting
guard, keyset and id-cursor pagination. Every app's API uses these, so a client sees
the same errors and cursors everywhere; throttling is ``erc8004.auth`` (one counter
per user / API key / anonymous IP, rates from settings).

Error shape (every 4xx the API returns; docs/api.md)::

    {"status": 400, "code": "invalid", "detail": "Invalid request parameters.",
     "errors": {"min_average": ["Enter a number."]}}

``errors`` is present for 400s only: field → messages, nested where the request is
(``{"actions": {"1": {"destination": ["no such destination"]}}}``; condition errors
name their path, ``{"conditions": ["conditions.all[0].op: …"]}``); problems not tied
to one field are under ``non_field_errors``. A 429 adds ``retry_after`` (seconds,
also sent as the ``Retry-After`` header). Services raise Django's
``ValidationError`` (they serve the admin too); the handler turns it into this 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Expression, Q, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

__all__ = (
    "Conflict",
    "ErrorSerializer",
    "IdCursorPagination",
    "JSONParser",
    "KeysetOrdering",
    "KeysetPagination",
    "PublicReadMixin",
    "SortKey",
    "api_exception_handler",
    "error_responses",
    "validation_error_detail",
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
        required=False,
        help_text="400 only: field → messages (nested like the request for nested fields)",
    )
    retry_after = serializers.IntegerField(required=False, help_text="429 only: seconds to wait")


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, list):
        return [str(m) for item in detail for m in _messages(item)]
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _messages(v)]
    return [str(detail)]


def _plain(detail: Any) -> Any:
    """DRF error detail as plain JSON: ErrorDetail → str, structure kept, and a field's
    single message wrapped in a list (a field always maps to messages or to nested
    fields)."""
    if isinstance(detail, dict):
        return {str(k): (_plain(v) if isinstance(v, dict | list) else [str(v)]) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)


def validation_error_detail(exc: DjangoValidationError) -> Any:
    """A Django ValidationError as DRF error detail (field dict, or a list)."""
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
    return {"non_field_errors": [str(m) for m in exc.messages]}


class Conflict(exceptions.APIException):
    """409: the request is understood but the object's state forbids it (in use, not dead…)."""

    status_code = 409
    default_detail = "conflict with the current state"
    default_code = "conflict"


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler (status, Retry-After and WWW-Authenticate headers, rollback),
    with the body rewritten into the one error shape."""
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES at import time,
    # which names this module's JSONParser.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=validation_error_detail(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        errors = _plain(detail) if isinstance(detail, dict) else {"non_field_errors": _messages(detail)}
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


#
# Parsing
#


class JSONParser(DRFJSONParser):
    """DRF's JSON parser with a nesting limit checked *before* decoding.

    Why: web3's dependency py_ecc raises Python's recursion limit to 100,000 when
    imported, so ``json.loads`` of ``[[[[…]]]]`` (a few hundred KB) overflows the C
    stack and kills the worker process instead of raising RecursionError. Nothing
    this API accepts nests deeper than ``MAX_DEPTH``."""

    MAX_DEPTH = 64
    _STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
    _NOT_BRACKETS = re.compile(rb"[^\[\]{}]")

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        if raw.count(b"[") + raw.count(b"{") > self.MAX_DEPTH:
            brackets = self._NOT_BRACKETS.sub(b"", self._STRINGS.sub(b"", raw))
            depth = 0
            for byte in brackets:
                depth += 1 if byte in (0x5B, 0x7B) else -1
                if depth > self.MAX_DEPTH:
                    raise exceptions.ParseError(f"JSON parse error - nested deeper than {self.MAX_DEPTH} levels")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (and break every number field downstream)."""
    raise ValueError(f"{name} is not valid JSON")


class IdCursorPagination(CursorPagination):
    """Newest first by id: unique, unchanging and indexed, as cursor paging needs
    (reference/stack.md §4.3); a page never repeats or skips a row under inserts."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the given error statuses, all with the one error shape."""
    text = {
        400: "Invalid parameters (bad filter values, bad ids, bad cursor)",
        404: "No such object",
        429: "Too many requests; see the Retry-After header",
    }
    return {status: OpenApiResponse(ErrorSerializer, description=text.get(status, "")) for status in statuses}


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
    """Policy of every public read endpoint: anonymous GETs, throttled per client (the
    API-wide throttle, erc8004.auth),
    keyset-paginated lists with a named ``ordering`` (validated by the view's
    FilterSet, applied by :class:`KeysetPagination`)."""

    permission_classes = (AllowAny,)
    pagination_class = KeysetPagination
    orderings: dict[str, KeysetOrdering] = {}
    default_ordering = ""

    def keyset_ordering(self, request: Request) -> KeysetOrdering:
        name = request.query_params.get("ordering") or self.default_ordering
        return self.orderings.get(name) or self.orderings[self.default_ordering]
