"""Message and body templates: Jinja2 in a sandbox, every value escaped for where it lands.

Rendering rules
===============

* **Engine.** Jinja2's ``SandboxedEnvironment`` (no attribute access to internals,
  no unsafe calls, ``range`` capped) with ``StrictUndefined``: a name or key that
  does not exist is an error naming it, never an empty string or a literal
  ``{{placeholder}}`` (the seed's behaviour). ``| default(...)`` opts into a
  fallback: ``{{ agent.name | default('unnamed') }}``.
* **Escaping.** Every ``{{ expression }}`` output is escaped for the destination's
  parse mode; the template's literal text is left exactly as the author wrote it,
  so the author writes the markup and the data can never break it:

  ==========  =============================================================  ===========
  mode        each interpolated value                                        literals
  ==========  =============================================================  ===========
  MarkdownV2  ``_*[]()~`>#+-=|{}.!`` and ``\\`` get a preceding ``\\``         as written
  HTML        ``& < > " '`` become entities                                  as written
  plain       unchanged                                                      as written
  ==========  =============================================================  ===========

  In MarkdownV2 the author must escape reserved characters in their own literal
  text (``Block\\.`` not ``Block.``), exactly as Telegram requires. Whitespace and
  newlines around ``{% … %}`` tags are kept as written; ``{%- … -%}`` trims them.
* **Values.** ``None`` renders as an empty string, dicts and lists as compact
  JSON, datetimes as ISO 8601; one value is cut at ``VALUE_MAX_CHARS`` (with "…")
  *before* it is escaped, so truncation never splits an escape.
* **JSON templates** (webhook bodies, MCP arguments) are JSON documents whose
  strings are templates. A string that is exactly one ``{{ expression }}`` becomes
  that value *with its JSON type* (number, object, null…); any other string is
  rendered as text. The result is serialised by ``json.dumps``, so values are
  always inserted JSON-safely — there is no way to break out of a string.
  Object keys are literal.
* **Limits.** A template source is at most ``TEMPLATE_MAX_CHARS``; a Telegram
  message at most 4096 characters after rendering (Telegram's limit); a JSON body
  at most ``JSON_MAX_BYTES``. Rendering stops as soon as output passes the limit.
* **Errors** are ``TemplateError`` — never retryable (the same template and data
  fail the same way every time), and the message says what went wrong and where,
  so it can be shown to the author and stored on the dead delivery.

Context
=======

Templates see the dict the caller passes to ``actions.services.payload_build`` — any
dict; this module does not care what is in it. The triggers layer builds it
(``triggers.services.evaluation_context_build``, documented in docs/triggers.md) with
these top-level keys, each a dict or ``None`` when not applicable (missing ones are
set to ``None`` so ``| default`` works):

* ``event``: ``id``, ``type`` (``Registered``, ``NewFeedback``…), ``registry``,
  ``chain_id``, ``block_number``, ``block_timestamp``, ``transaction_hash``,
  ``log_index``, the decoded arguments…;
* ``agent``: the agent's read-model view (``agents.selectors.agent_view``:
  ``chain_id``, ``agent_id``, ``owner``, ``name``, ``services``…);
* ``trigger``: ``id``, ``name``;
* ``chain``: ``id``, ``name``;

plus ``delivery_id`` (the uuid the delivery will carry), added by ``payload_build``.
The defaults below use ``| default(…, true)`` so they render for any of these.
Known residual risk: a template can still burn CPU in loops that print nothing
(``range`` is capped at 100,000 per loop); templates are written by organisation
members, not by the public.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

__all__ = (
    "DEFAULT_JSON_TEMPLATE",
    "DEFAULT_TEXT_TEMPLATES",
    "JSON_MAX_BYTES",
    "TELEGRAM_MAX_CHARS",
    "TEMPLATE_MAX_CHARS",
    "VALUE_MAX_CHARS",
    "PayloadError",
    "TemplateError",
    "escape_html",
    "escape_markdown_v2",
    "render_json",
    "render_text",
    "template_check",
)

TEMPLATE_MAX_CHARS = 8192
VALUE_MAX_CHARS = 1024
TELEGRAM_MAX_CHARS = 4096
JSON_MAX_BYTES = 256 * 1024

PARSE_MODES = ("MarkdownV2", "HTML", "plain")


class PayloadError(ValueError):
    """A payload cannot be built (bad template, missing endpoint…). Never retryable:
    the same inputs fail the same way every time."""

    retryable = False


class TemplateError(PayloadError):
    """The template cannot be rendered with this context."""


_MDV2_RESERVED = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")


def escape_markdown_v2(text: str) -> str:
    """Telegram MarkdownV2: every reserved character (and the backslash) escaped."""
    return _MDV2_RESERVED.sub(r"\\\1", text)


_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})


def escape_html(text: str) -> str:
    """Telegram HTML: the three structural characters, and quotes for attributes."""
    return text.translate(_HTML_ESCAPES)


def _identity(text: str) -> str:
    return text


_ESCAPERS: dict[str, Callable[[str], str]] = {
    "MarkdownV2": escape_markdown_v2,
    "HTML": escape_html,
    "plain": _identity,
}


def _to_text(value: Any) -> str:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here with the missing name
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    """Python data → JSON data, for the types event contexts carry."""
    if isinstance(value, Undefined):
        str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        text = _to_text(value)
        if len(text) > VALUE_MAX_CHARS:
            text = text[: VALUE_MAX_CHARS - 1] + "…"
        return escape(text)

    return finalize


@functools.cache
def _environment(mode: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_finalizer(_ESCAPERS[mode]),
        # Jinja's defaults: the text around tags stays exactly as written (a newline
        # after {% endif %} is kept); authors trim with {%- -%} where they want to.
        keep_trailing_newline=True,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {exc.message} (use `| default(...)` for optional values)"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"not allowed in templates: {exc}"
    return f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=512)
def _compile(source: str, mode: str) -> jinja2.Template:
    if len(source) > TEMPLATE_MAX_CHARS:
        raise TemplateError(f"template is {len(source)} characters; the limit is {TEMPLATE_MAX_CHARS}")
    try:
        return _environment(mode).from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(_describe(exc)) from None


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Any:
    try:
        return _environment("plain").compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateError as exc:
        raise TemplateError(_describe(exc)) from None


def template_check(source: str, *, mode: str = "plain") -> None:
    """Syntax check for an author saving a template (no data needed)."""
    _compile(source, _mode(mode))


def _mode(mode: str | None) -> str:
    mode = mode or "plain"
    if mode not in _ESCAPERS:
        raise TemplateError(f"unknown parse mode {mode!r}; use one of {', '.join(PARSE_MODES)}")
    return mode


def render_text(source: str, context: Mapping[str, Any], *, mode: str = "plain", max_chars: int) -> str:
    """Render a text template, escaping every value for ``mode``."""
    template = _compile(source, _mode(mode))
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**context):
            out.append(chunk)
            size += len(chunk)
            if size > max_chars:
                raise TemplateError(f"rendered text is longer than {max_chars} characters")
    except TemplateError:
        raise
    except Exception as exc:  # anything the template's expressions raise
        raise TemplateError(_describe(exc)) from None
    return "".join(out)


_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%).)+)\}\}\s*$", re.DOTALL)


def render_json(template: Any, context: Mapping[str, Any], *, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Render a JSON template (a JSON string, or already-parsed JSON data) to JSON data."""
    if isinstance(template, str):
        if len(template) > TEMPLATE_MAX_CHARS * 4:
            raise TemplateError(f"JSON template is longer than {TEMPLATE_MAX_CHARS * 4} characters")
        try:
            template = json.loads(template)
        except ValueError as exc:
            raise TemplateError(f"JSON template is not valid JSON: {exc}") from None
    result = _render_node(template, context, path="$")
    size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise TemplateError(f"rendered JSON is {size} bytes; the limit is {max_bytes}")
    return result


def _render_node(node: Any, context: Mapping[str, Any], *, path: str) -> Any:
    if isinstance(node, dict):
        return {str(k): _render_node(v, context, path=f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_render_node(v, context, path=f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or ("{{" not in node and "{%" not in node):
        return node
    match = _SINGLE_EXPRESSION.match(node)
    try:
        if match:
            if len(node) > TEMPLATE_MAX_CHARS:
                raise TemplateError(f"template is longer than {TEMPLATE_MAX_CHARS} characters")
            return _jsonable(_compile_expression(match["expr"].strip())(**context))
        return render_text(node, context, mode="plain", max_chars=JSON_MAX_BYTES)
    except TemplateError as exc:
        raise TemplateError(f"at {path}: {exc}") from None
    except Exception as exc:
        raise TemplateError(f"at {path}: {_describe(exc)}") from None


#
# Defaults, used when a trigger's link to a destination has no template of its own.
# Written against the context documented above; optional parts use `| default`.
#

DEFAULT_TEXT_TEMPLATES: dict[str, str] = {
    "MarkdownV2": (
        "*{{ trigger.name | default('Trigger', true) }}*: {{ event.type | default('event', true) }}\n"
        "Agent {{ agent.agent_id | default('?', true) }}"
        "{% if agent.name is defined and agent.name %} — {{ agent.name }}{% endif %}\n"
        "Chain {{ chain.name | default(chain.id | default(event.chain_id | default('?', true), true), true) }}, "
        "block {{ event.block_number | default('?', true) }}\n"
        "Tx `{{ event.transaction_hash | default('?', true) }}`"
    ),
    "HTML": (
        "<b>{{ trigger.name | default('Trigger', true) }}</b>: {{ event.type | default('event', true) }}\n"
        "Agent {{ agent.agent_id | default('?', true) }}"
        "{% if agent.name is defined and agent.name %} — {{ agent.name }}{% endif %}\n"
        "Chain {{ chain.name | default(chain.id | default(event.chain_id | default('?', true), true), true) }}, "
        "block {{ event.block_number | default('?', true) }}\n"
        "Tx <code>{{ event.transaction_hash | default('?', true) }}</code>"
    ),
    "plain": (
        "{{ trigger.name | default('Trigger', true) }}: {{ event.type | default('event', true) }}\n"
        "Agent {{ agent.agent_id | default('?', true) }}"
        "{% if agent.name is defined and agent.name %} — {{ agent.name }}{% endif %}\n"
        "Chain {{ chain.name | default(chain.id | default(event.chain_id | default('?', true), true), true) }}, "
        "block {{ event.block_number | default('?', true) }}\n"
        "Tx {{ event.transaction_hash | default('?', true) }}"
    ),
}

# Webhook body and MCP arguments when no template is given.
DEFAULT_JSON_TEMPLATE: dict[str, Any] = {
    "type": "event.matched",
    "delivery_id": "{{ delivery_id }}",
    "trigger": "{{ trigger | default(none) }}",
    "event": "{{ event | default(none) }}",
    "agent": "{{ agent | default(none) }}",
    "chain": "{{ chain | default(none) }}",
}
