"""Shared API plumbing: the exception handler and pagination.

Error shape (accounts / trigger management API, issue 5): DRF's own —

* 400: the field errors, ``{"<field>": ["message", ...]}``; nested items are keyed
  by their index, ``{"actions": {"1": {"destination": ["no such destination"]}}}``,
  and condition errors name their path, ``{"conditions": ["conditions.all[0].op: …"]}``;
* everything else: ``{"detail": "…"}`` with the status code (401, 403, 404, 409, 429
  with ``Retry-After``).

Services raise Django's ``ValidationError`` (they serve the admin too); this
handler turns it into the 400 above, so views stay thin. (Another branch defines a
shared error envelope here as well; the two are reconciled on merge.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

__all__ = ("Conflict", "IdCursorPagination", "JSONParser", "exception_handler", "validation_error_detail")


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


class Conflict(exceptions.APIException):
    """409: the request is understood but the object's state forbids it (in use, not dead…)."""

    status_code = 409
    default_detail = "conflict with the current state"
    default_code = "conflict"


def validation_error_detail(exc: DjangoValidationError) -> Any:
    """A Django ValidationError as DRF error detail (field dict, or a list)."""
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
    return {"non_field_errors": [str(m) for m in exc.messages]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=validation_error_detail(exc))
    return drf_exception_handler(exc, context)


class IdCursorPagination(CursorPagination):
    """Newest first by id: unique, unchanging and indexed, as cursor paging needs
    (reference/stack.md §4.3); a page never repeats or skips a row under inserts."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
