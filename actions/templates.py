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
Work limits
===========

Templates are written by organisation members, but a template must never take a
worker down, so every render runs under a budget (``_Budget``) and breaking it is a
``TemplateError`` like any other:

* **loop iterations**: at most ``RENDER_MAX_ITERATIONS`` over *all* ``{% for %}``
  loops of one render (every loop's iterable is wrapped at parse time), so nested
  loops that print nothing cannot spin for hours (``range`` alone is capped per
  loop, not per render);
* **call depth**: macros, ``caller()`` and recursive ``loop()`` nest at most
  ``RENDER_MAX_CALL_DEPTH`` deep. Unbounded macro recursion otherwise overflows the
  C stack and kills the process with a segfault, because py_ecc (imported with
  web3) raises Python's recursion limit to 100,000;
* **time**: ``RENDER_MAX_SECONDS`` per render, checked at every call and every
  1,024 loop iterations;
* **giant values**: ``*`` on strings and lists, ``**``, ``%``-formatting widths,
  string padding methods and the ``center``/``indent`` filters may not produce
  more than ``VALUE_MAX_BUILD`` items (``'a' * 10**10`` would otherwise allocate
  10 GB before any output cap is reached, and ``9**9**9`` would compute for hours).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import decimal
import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import StrictUndefined, Undefined, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_indent
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
# Work limits of one render (see "Work limits" above).
RENDER_MAX_ITERATIONS = 200_000
RENDER_MAX_CALL_DEPTH = 32
RENDER_MAX_SECONDS = 2.0
VALUE_MAX_BUILD = 1_000_000  # characters or items one operation may build
POWER_MAX_BITS = 4096  # the result of ``**`` on integers

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


class _Budget:
    """The work one render may still do (module docstring, "Work limits")."""

    __slots__ = ("deadline", "depth", "iterations")

    def __init__(self) -> None:
        self.iterations = 0
        self.depth = 0
        self.deadline = time.monotonic() + RENDER_MAX_SECONDS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {RENDER_MAX_SECONDS:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


@contextlib.contextmanager
def _budgeted() -> Any:
    """One budget per render; a render inside a render (a JSON template's strings)
    shares the outer one."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget()


_LOOP_FILTER = "_erc8004_counted"


@pass_context  # never constant-folded at compile time
def _counted(context: Any, iterable: Any) -> Any:
    """Every ``{% for %}`` iterates through this (added at parse time)."""
    budget = _budget()
    for item in iterable:
        budget.iterations += 1
        if budget.iterations > RENDER_MAX_ITERATIONS:
            raise SecurityError(f"loops ran more than {RENDER_MAX_ITERATIONS} iterations in one render")
        if not budget.iterations & 1023:
            budget.check_time()
        yield item


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would build more than {VALUE_MAX_BUILD} characters or items")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _bounded_center(value: Any, width: int = 80) -> str:
    if _is_int(width) and width > VALUE_MAX_BUILD:
        raise _too_big("center")
    return do_center(value, width)


def _bounded_indent(s: str, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    size = width if _is_int(width) else len(str(width))
    if size * (str(s).count("\n") + 1) > VALUE_MAX_BUILD:
        raise _too_big("indent")
    return do_indent(s, width, first, blank)


class _GuardedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox plus the work limits: every loop counted, calls nested at most
    so deep, and no operation building a giant value."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters[_LOOP_FILTER] = _counted
        self.filters["center"] = _bounded_center
        self.filters["indent"] = _bounded_indent

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and _is_int(times) and len(seq) * times > VALUE_MAX_BUILD:
                    raise _too_big("'*'")
        elif operator == "**":
            if _is_int(left) and _is_int(right) and abs(left) > 1 and right * abs(left).bit_length() > POWER_MAX_BITS:
                raise SecurityError(f"'**' would build an integer of more than {POWER_MAX_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            for width, precision in _PRINTF_WIDTH.findall(left):
                for number in (width, precision):
                    if number == "*" or (number and int(number) > VALUE_MAX_BUILD):
                        raise _too_big("'%' formatting")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.check_time()
        name = getattr(__obj, "__name__", "")
        padding = isinstance(getattr(__obj, "__self__", None), str) and name in _PADDING_METHODS
        if padding and any(_is_int(a) and a > VALUE_MAX_BUILD for a in (*args, *kwargs.values())):
            raise _too_big(f"str.{name}")
        budget.depth += 1
        try:
            if budget.depth > RENDER_MAX_CALL_DEPTH:
                raise SecurityError(f"calls nested more than {RENDER_MAX_CALL_DEPTH} deep (recursion?)")
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


@functools.cache
def _environment(mode: str) -> SandboxedEnvironment:
    return _GuardedEnvironment(
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
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        # The parser and the constant folder evaluate literals: an integer of
        # 5,000 digits is a ValueError, not a TemplateSyntaxError.
        raise TemplateError(_describe(exc)) from None


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Any:
    try:
        return _environment("plain").compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateError as exc:
        raise TemplateError(_describe(exc)) from None
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
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
        with _budgeted():
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
    with _budgeted():
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
