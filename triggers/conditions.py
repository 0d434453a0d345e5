"""Trigger conditions: a small, pure module (no database, no Django models).

A condition is JSON, validated once when a trigger is saved (:func:`condition_parse`
raises :class:`InvalidCondition` with a path like ``conditions.all[2].value`` and a
message a person can act on) and evaluated many times (:meth:`Condition.evaluate`).

Grammar::

    node     := {"all": [node, ...]} | {"any": [node, ...]} | {"not": node} | leaf
    leaf     := {"type": <leaf type>, ...fields}

Leaf types (every seed condition, plus field comparisons and agent state):

==================  =====================================================  ========
type                fields                                                  state
==================  =====================================================  ========
agent_id            values: [id, ...]                                       -
event_type          values: [name, ...]                                     -
value_threshold     op, value   (normalised feedback value / validation     -
                    response; false for other events)
tag_equals          tag: tag1|tag2, value                                   -
field               field (dotted path), op, value                          -
address_in          role: client|validator|owner|responder, addresses,      -
                    negate?
agent_has_service   service (e.g. MCP, A2A, web)                            agent
agent_average       op, value   (the agent's average after this event)      agent
first_feedback      (true when this is the client's first feedback)         -
ema                 window (N), op, value, per: agent|trigger               yes
rate                window_seconds, op, count, reset_on_fire?, per          yes
==================  =====================================================  ========

Operators: eq, ne, lt, lte, gt, gte, in, not_in, contains, starts_with, regex.
Numbers compare as exact decimals when both sides are numeric; addresses and hex
compare case-insensitively; ``regex`` patterns are limited to 200 characters and run
with a timeout (the ``regex`` module), so a user's pattern cannot stall a worker.

Stateful leaves read and return state through an :class:`EvaluationContext`; the
caller persists it under a row lock (triggers/services), so this module stays pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

import regex

from indexing.decoding import EVENT_TYPES

__all__ = (
    "Condition",
    "EvaluationContext",
    "InvalidCondition",
    "condition_parse",
    "event_view",
)

MAX_DEPTH = 8
MAX_LEAVES = 50
MAX_REGEX_LENGTH = 200
MAX_LIST = 1000
REGEX_TIMEOUT_SECONDS = 0.05
MAX_FIELD_TEXT = 10_000

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "starts_with", "regex")
ORDERING_OPS = ("lt", "lte", "gt", "gte")
THRESHOLD_OPS = ("eq", "ne", "lt", "lte", "gt", "gte")
# Top-level fields of the event view; anything else is reached as args.<name>.
EVENT_FIELDS = (
    "chain_id",
    "block_number",
    "block_hash",
    "tx_hash",
    "log_index",
    "address",
    "registry",
    "event_type",
    "abi_version",
    "agent_id",
)
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ROLE_FIELDS = {
    "client": ("clientAddress",),
    "validator": ("validatorAddress",),
    "responder": ("responder",),
    "owner": ("owner", "to"),  # Registered.owner, Transfer.to (the new owner)
}


class InvalidCondition(ValueError):
    """A condition that cannot be saved; ``path`` says where, the message says why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class EvaluationContext:
    """What one evaluation may read besides the event.

    ``agent`` is the read-model view of the event's agent after this event (or None);
    ``state`` maps a stateful leaf's key (its path plus scope) to its saved JSON,
    and collects what the evaluation changed in ``state_updates``.
    """

    agent: dict[str, Any] | None = None
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    now_timestamp: float = 0.0  # the event's block time, seconds since epoch

    def state_get(self, key: str) -> dict[str, Any]:
        if key in self.state_updates:
            return self.state_updates[key]
        return dict(self.state.get(key) or {})

    def state_put(self, key: str, value: dict[str, Any]) -> None:
        self.state_updates[key] = value


def event_view(event: Any) -> dict[str, Any]:
    """The dict a condition sees for a ChainEvent-like object (and templates reuse)."""
    return {
        "chain_id": event.chain_id,
        "block_number": event.block_number,
        "block_hash": event.block_hash,
        "tx_hash": event.tx_hash,
        "log_index": event.log_index,
        "address": event.address,
        "registry": event.registry,
        "event_type": event.event_type,
        "abi_version": event.abi_version,
        "agent_id": None if event.agent_id is None else str(int(event.agent_id)),
        "args": event.args,
    }


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    return None


def _norm_text(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text[:MAX_FIELD_TEXT]
    if _ADDRESS_RE.match(text) or (text.startswith("0x") and len(text) == 66):
        return text.lower()
    return text


_NUMERIC_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def _compare(op: str, actual: Any, expected: Any, compiled: Any = None) -> bool:
    """Compare an event value with a condition value; never raises."""
    if actual is None:
        return op in ("ne", "not_in")
    if op in ("in", "not_in"):
        members = expected
        hit = any(_compare("eq", actual, member) for member in members)
        return hit if op == "in" else not hit
    if op == "regex":
        try:
            return compiled.search(_norm_text(actual), timeout=REGEX_TIMEOUT_SECONDS) is not None
        except TimeoutError:
            return False
    if op in ("contains", "starts_with"):
        haystack, needle = _norm_text(actual), _norm_text(expected)
        if isinstance(actual, list):
            return any(_norm_text(item) == needle for item in actual)
        return needle in haystack if op == "contains" else haystack.startswith(needle)
    a, b = _decimal(actual), _decimal(expected)
    if a is not None and b is not None:
        return {
            "eq": a == b,
            "ne": a != b,
            "lt": a < b,
            "lte": a <= b,
            "gt": a > b,
            "gte": a >= b,
        }[op]
    if op in ORDERING_OPS:
        return False
    equal = _norm_text(actual) == _norm_text(expected)
    if isinstance(actual, bool) or isinstance(expected, bool):
        equal = str(actual).lower() == str(expected).lower()
    return equal if op == "eq" else not equal


def _lookup(view: dict[str, Any], path: str) -> Any:
    current: Any = view
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


#
# Nodes
#


@dataclass(frozen=True)
class Condition:
    """A parsed, validated condition tree."""

    kind: str  # all | any | not | <leaf type>
    path: str
    children: tuple[Condition, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    evaluator: Callable[[Condition, dict[str, Any], EvaluationContext], bool] | None = None
    compiled: Any = None

    @cached_property
    def stateful(self) -> bool:
        return self.kind in ("ema", "rate") or any(c.stateful for c in self.children)

    @cached_property
    def needs_agent(self) -> bool:
        return self.kind in ("agent_has_service", "agent_average") or any(c.needs_agent for c in self.children)

    def leaves(self) -> Iterable[Condition]:
        if self.children or self.kind in ("all", "any", "not"):
            for child in self.children:
                yield from child.leaves()
        else:
            yield self

    def evaluate(self, view: dict[str, Any], ctx: EvaluationContext) -> bool:
        """True when the event matches. Stateful leaves are always evaluated (never
        short-circuited away), so their state sees every candidate event."""
        if self.kind == "all":
            results = [c.evaluate(view, ctx) for c in self.children]
            return all(results)
        if self.kind == "any":
            results = [c.evaluate(view, ctx) for c in self.children]
            return any(results)
        if self.kind == "not":
            return not self.children[0].evaluate(view, ctx)
        assert self.evaluator is not None
        return self.evaluator(self, view, ctx)

    def fired(self, view: dict[str, Any], ctx: EvaluationContext) -> None:
        """Tell stateful leaves the trigger fired (``rate`` with ``reset_on_fire``)."""
        for leaf in self.leaves():
            if leaf.kind == "rate" and leaf.spec.get("reset_on_fire"):
                key = _state_key(leaf, view)
                ctx.state_put(key, {"timestamps": []})

    def state_keys(self, view: dict[str, Any]) -> list[str]:
        return [_state_key(leaf, view) for leaf in self.leaves() if leaf.kind in ("ema", "rate")]


def _state_key(leaf: Condition, view: dict[str, Any]) -> str:
    """Stateful leaves keep one state per trigger, or one per agent (the default:
    "the average of agent 42" should not mix in agent 7's feedback)."""
    if leaf.spec.get("per", "agent") == "trigger":
        return f"{leaf.path}|trigger"
    return f"{leaf.path}|agent:{view.get('chain_id')}:{view.get('agent_id')}"


#
# Leaf evaluators
#


def _eval_agent_id(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    return view.get("agent_id") is not None and view["agent_id"] in node.spec["values"]


def _eval_event_type(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    return view.get("event_type") in node.spec["values"]


def _event_number(view: dict[str, Any]) -> Decimal | None:
    args = view.get("args") or {}
    if view.get("event_type") == "NewFeedback":
        return _decimal(args.get("valueNormalized"))
    if view.get("event_type") == "ValidationResponse":
        return _decimal(args.get("response"))
    return None


def _eval_value_threshold(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    number = _event_number(view)
    return number is not None and _NUMERIC_OPS[node.spec["op"]](number, node.spec["number"])


def _eval_tag_equals(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    args = view.get("args") or {}
    tag = node.spec["tag"]
    return tag in args and args.get(tag) == node.spec["value"]


def _eval_field(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    return _compare(node.spec["op"], _lookup(view, node.spec["field"]), node.spec["value"], node.compiled)


def _eval_address_in(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    args = view.get("args") or {}
    fields = _ROLE_FIELDS[node.spec["role"]]
    actual = next((args[f] for f in fields if args.get(f)), None)
    if actual is None and node.spec["role"] == "owner" and ctx.agent:
        actual = ctx.agent.get("owner")
    hit = actual is not None and actual.lower() in node.spec["addresses"]
    return (not hit) if node.spec.get("negate") else hit


def _eval_agent_has_service(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    services = (ctx.agent or {}).get("services") or []
    wanted = node.spec["service"].lower()
    return any(str(s.get("name", "")).lower() == wanted for s in services if isinstance(s, dict))


def _eval_agent_average(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    average = (ctx.agent or {}).get("feedback_average")
    return average is not None and _compare(node.spec["op"], average, node.spec["value"])


def _eval_first_feedback(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    if view.get("event_type") != "NewFeedback":
        return False
    index = (view.get("args") or {}).get("feedbackIndex")
    if index is None:  # v0.4 logs carry no index; the agent view supplies it
        index = (ctx.agent or {}).get("event_feedback_index")
    return index == 1


def _eval_ema(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    """Exponential moving average of the event's value, alpha = 2 / (N + 1), seeded by
    the first value (the seed's semantics). Events without a value leave it unchanged
    and do not match — they never raise, unlike the seed's engine."""
    number = _event_number(view)
    if number is None:
        return False
    key = _state_key(node, view)
    state = ctx.state_get(key)
    alpha = Decimal(2) / Decimal(node.spec["window"] + 1)
    previous = _decimal(state.get("ema"))
    ema = number if previous is None else alpha * number + (1 - alpha) * previous
    ctx.state_put(key, {"ema": str(ema.quantize(Decimal("1e-18"))), "count": int(state.get("count", 0)) + 1})
    return _compare(node.spec["op"], ema, node.spec["value"])


def _eval_rate(node: Condition, view: dict[str, Any], ctx: EvaluationContext) -> bool:
    """Count of candidate events in a sliding window of *block time* (the seed pruned
    by wall clock but stored block time; here both are block time)."""
    key = _state_key(node, view)
    state = ctx.state_get(key)
    window = node.spec["window_seconds"]
    now = ctx.now_timestamp
    timestamps = [t for t in state.get("timestamps", []) if t > now - window]
    timestamps.append(now)
    timestamps = timestamps[-10_000:]
    ctx.state_put(key, {"timestamps": timestamps})
    return _compare(node.spec["op"], len(timestamps), node.spec["count"])


_LEAVES: dict[str, Callable[[Condition, dict[str, Any], EvaluationContext], bool]] = {
    "agent_id": _eval_agent_id,
    "event_type": _eval_event_type,
    "value_threshold": _eval_value_threshold,
    "tag_equals": _eval_tag_equals,
    "field": _eval_field,
    "address_in": _eval_address_in,
    "agent_has_service": _eval_agent_has_service,
    "agent_average": _eval_agent_average,
    "first_feedback": _eval_first_feedback,
    "ema": _eval_ema,
    "rate": _eval_rate,
}


#
# Parsing and validation
#


def _require(spec: dict[str, Any], key: str, path: str) -> Any:
    if key not in spec or spec[key] in (None, ""):
        raise InvalidCondition(f"{path}.{key}", "this field is required")
    return spec[key]


def _op(spec: dict[str, Any], path: str, allowed: tuple[str, ...] = OPERATORS) -> str:
    op = _require(spec, "op", path)
    if op not in allowed:
        raise InvalidCondition(f"{path}.op", f"unknown operator {op!r}; use one of {', '.join(allowed)}")
    return op


def _number(spec: dict[str, Any], key: str, path: str) -> str:
    value = _require(spec, key, path)
    if _decimal(value) is None:
        raise InvalidCondition(f"{path}.{key}", f"must be a number, got {value!r}")
    return str(_decimal(value))


def _positive_int(spec: dict[str, Any], key: str, path: str, maximum: int) -> int:
    value = _require(spec, key, path)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise InvalidCondition(f"{path}.{key}", f"must be a whole number from 1 to {maximum}")
    return value


def _string_list(spec: dict[str, Any], key: str, path: str) -> list[str]:
    values = _require(spec, key, path)
    if isinstance(values, str | int):
        values = [values]
    if not isinstance(values, list) or not values or len(values) > MAX_LIST:
        raise InvalidCondition(f"{path}.{key}", f"must be a non-empty list of at most {MAX_LIST} items")
    return [str(v) for v in values]


def _parse_leaf(spec: dict[str, Any], path: str) -> Condition:
    kind = spec.get("type")
    if kind not in _LEAVES:
        raise InvalidCondition(
            f"{path}.type", f"unknown condition type {kind!r}; use one of {', '.join(sorted(_LEAVES))}"
        )
    clean: dict[str, Any] = {}
    compiled = None
    if kind == "agent_id":
        values = _string_list(spec, "values" if "values" in spec else "value", path)
        for v in values:
            if not v.isdigit():
                raise InvalidCondition(f"{path}.values", f"agent ids are whole numbers, got {v!r}")
        clean["values"] = [str(int(v)) for v in values]
    elif kind == "event_type":
        values = _string_list(spec, "values" if "values" in spec else "value", path)
        unknown = [v for v in values if v not in EVENT_TYPES]
        if unknown:
            raise InvalidCondition(f"{path}.values", f"unknown event type {unknown[0]!r}")
        clean["values"] = values
    elif kind in ("value_threshold", "agent_average"):
        clean["op"] = _op(spec, path, THRESHOLD_OPS)
        clean["value"] = _number(spec, "value", path)
        clean["number"] = Decimal(clean["value"])  # parsed once, compared many times
    elif kind == "tag_equals":
        tag = spec.get("tag", "tag1")
        if tag not in ("tag1", "tag2"):
            raise InvalidCondition(f"{path}.tag", "must be tag1 or tag2")
        value = spec.get("value")
        if not isinstance(value, str):
            raise InvalidCondition(f"{path}.value", "must be a string")
        clean.update(tag=tag, value=value)
    elif kind == "field":
        name = _require(spec, "field", path)
        if not isinstance(name, str) or not (name in EVENT_FIELDS or re.fullmatch(r"args\.[A-Za-z0-9_.]{1,64}", name)):
            raise InvalidCondition(
                f"{path}.field", f"unknown field {name!r}; use one of {', '.join(EVENT_FIELDS)} or args.<name>"
            )
        op = _op(spec, path)
        value = spec.get("value")
        if op in ("in", "not_in"):
            value = _string_list(spec, "value", path)
        elif value is None:
            raise InvalidCondition(f"{path}.value", "this field is required")
        elif op in ORDERING_OPS and _decimal(value) is None:
            raise InvalidCondition(f"{path}.value", f"{op} compares numbers; {value!r} is not a number")
        elif op == "regex":
            if not isinstance(value, str) or len(value) > MAX_REGEX_LENGTH:
                raise InvalidCondition(f"{path}.value", f"a regex is a string of at most {MAX_REGEX_LENGTH} characters")
            try:
                compiled = regex.compile(value)
            except regex.error as exc:
                raise InvalidCondition(f"{path}.value", f"invalid regex: {exc}") from exc
        clean.update(field=name, op=op, value=value)
    elif kind == "address_in":
        role = spec.get("role")
        if role not in _ROLE_FIELDS:
            raise InvalidCondition(f"{path}.role", f"must be one of {', '.join(_ROLE_FIELDS)}")
        addresses = _string_list(spec, "addresses", path)
        bad = [a for a in addresses if not _ADDRESS_RE.match(a)]
        if bad:
            raise InvalidCondition(f"{path}.addresses", f"{bad[0]!r} is not a 0x address")
        clean.update(role=role, addresses=[a.lower() for a in addresses], negate=bool(spec.get("negate", False)))
    elif kind == "agent_has_service":
        service = _require(spec, "service", path)
        if not isinstance(service, str) or len(service) > 50:
            raise InvalidCondition(f"{path}.service", "must be a service name such as MCP, A2A or web")
        clean["service"] = service
    elif kind == "first_feedback":
        pass
    elif kind == "ema":
        clean["window"] = _positive_int(spec, "window", path, 10_000)
        clean["op"] = _op(spec, path, THRESHOLD_OPS)
        clean["value"] = _number(spec, "value", path)
        clean["per"] = _per(spec, path)
    elif kind == "rate":
        clean["window_seconds"] = _positive_int(spec, "window_seconds", path, 30 * 86400)
        clean["op"] = _op(spec, path, THRESHOLD_OPS)
        count = spec.get("count", spec.get("value"))
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidCondition(f"{path}.count", "must be a whole number of events")
        clean["count"] = count
        clean["reset_on_fire"] = bool(spec.get("reset_on_fire", False))
        clean["per"] = _per(spec, path)
    extra = set(spec) - {
        "type",
        "value",
        "values",
        "op",
        "field",
        "tag",
        "role",
        "addresses",
        "negate",
        "service",
        "window",
        "window_seconds",
        "count",
        "reset_on_fire",
        "per",
    }
    if extra:
        raise InvalidCondition(f"{path}.{sorted(extra)[0]}", "unknown key")
    return Condition(kind=kind, path=path, spec=clean, evaluator=_LEAVES[kind], compiled=compiled)


def _per(spec: dict[str, Any], path: str) -> str:
    per = spec.get("per", "agent")
    if per not in ("agent", "trigger"):
        raise InvalidCondition(f"{path}.per", "must be agent or trigger")
    return per


def _parse(node: Any, path: str, depth: int, counter: list[int]) -> Condition:
    if depth > MAX_DEPTH:
        raise InvalidCondition(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise InvalidCondition(path, "must be an object")
    groups = [k for k in ("all", "any", "not") if k in node]
    if groups:
        if len(node) != 1:
            raise InvalidCondition(path, "a group has exactly one key: all, any or not")
        key = groups[0]
        if key == "not":
            return Condition(kind="not", path=path, children=(_parse(node["not"], f"{path}.not", depth + 1, counter),))
        items = node[key]
        if not isinstance(items, list) or not items:
            raise InvalidCondition(f"{path}.{key}", "must be a non-empty list")
        children = tuple(_parse(item, f"{path}.{key}[{i}]", depth + 1, counter) for i, item in enumerate(items))
        return Condition(kind=key, path=path, children=children)
    counter[0] += 1
    if counter[0] > MAX_LEAVES:
        raise InvalidCondition(path, f"a trigger has at most {MAX_LEAVES} conditions")
    return _parse_leaf(node, path)


def condition_parse(data: Any, *, path: str = "conditions") -> Condition:
    """Validate and parse a condition tree. ``None`` or ``{}`` means "match every event"."""
    if data in (None, {}, []):
        return Condition(kind="all", path=path, children=())
    if isinstance(data, list):
        data = {"all": data}
    return _parse(data, path, 0, [0])
