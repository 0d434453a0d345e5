"""Bounded, hostile-input-safe loading of off-chain JSON documents (registration and
feedback files). Pure: bytes in, a plain JSON object or a human reason out.

Why a module of its own: anyone can point an agent URI at anything, so every way a
document can hurt us is handled once, here —

* too many bytes (checked before decoding);
* invalid UTF-8, or not JSON, or a top level that is not an object;
* nesting deep enough to exhaust the parser's recursion — checked *before* parsing,
  because the C parser only stops at the interpreter's recursion limit, and a library
  in this process (py_ecc, imported with web3) raises that limit to 100,000: a deep
  enough file would then overflow the C stack and kill the worker with a segfault;
* an integer literal beyond Python's digit limit (``ValueError``);
* strings PostgreSQL cannot store: NUL characters (not allowed in ``text`` nor in
  ``jsonb``) and lone UTF-16 surrogates (``"\\ud800"`` parses, but cannot be encoded).

Callers get :class:`DocumentError` with a reason a person can act on, nothing else.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ("MAX_DEPTH", "MAX_DOCUMENT_BYTES", "DocumentError", "json_document_load", "text_clean")

# The outbound fetch limit (1 MiB) is the ceiling; data: URIs are held to it too.
MAX_DOCUMENT_BYTES = 1024 * 1024
# Real registration files nest 4-6 levels (file > services > service > extra > ...);
# 32 leaves room for extensions and stops pathological nesting long before it costs.
MAX_DEPTH = 32

_UTF8_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


class DocumentError(ValueError):
    """The bytes are not a usable JSON object; ``str(error)`` says why."""


def text_clean(value: str) -> str:
    """A string PostgreSQL can store: NULs and lone surrogates become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def _depth_check(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without parsing: strings are blanked
    out (their brackets do not nest), then brackets are counted, stopping at the first
    level too deep — a few dozen steps for a hostile ``[[[[...`` file."""
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise DocumentError(f"nested more than {max_depth} levels deep")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise DocumentError(f"not valid JSON: {name} is not a JSON number")


def _clean_tree(document: Any, *, max_depth: int) -> Any:
    """Check depth and clean every string (keys included), without recursion."""
    root: list[Any] = [document]
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, document, 1)]  # (parent, key, value, depth)
    while stack:
        parent, key, value, depth = stack.pop()
        if depth > max_depth:
            raise DocumentError(f"nested more than {max_depth} levels deep")
        if isinstance(value, str):
            parent[key] = text_clean(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise DocumentError("not valid JSON: a number is out of range")
        elif isinstance(value, dict):
            cleaned = {text_clean(k): v for k, v in value.items()}
            parent[key] = cleaned
            stack.extend((cleaned, k, v, depth + 1) for k, v in cleaned.items())
        elif isinstance(value, list):
            stack.extend((value, i, v, depth + 1) for i, v in enumerate(value))
    return root[0]


def json_document_load(
    data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """Parse ``data`` as one JSON object, or raise :class:`DocumentError`."""
    if len(data) > max_bytes:
        raise DocumentError(f"file is {len(data)} bytes; the limit is {max_bytes}")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if not text.strip():
        raise DocumentError("file is empty")
    _depth_check(text, max_depth)
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise DocumentError(f"nested more than {max_depth} levels deep") from None
    except DocumentError:
        raise
    except ValueError as exc:  # e.g. an integer literal with more than 4300 digits
        raise DocumentError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DocumentError(f"top level must be a JSON object, not {_json_type(document)}")
    return _clean_tree(document, max_depth=max_depth)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
