"""triggers/conditions.py: validation messages name the place and the reason; every
leaf type and operator evaluates as documented; stateful leaves keep their state in
the context only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from triggers.conditions import EvaluationContext, InvalidCondition, condition_parse, event_view

CLIENT = "0x70997970C51812dc3A010C7d01b50e20d4dc79C8"


def feedback(value="87", decimals=0, tag1="starred", agent_id=42, index=1, client=CLIENT):
    from decimal import Decimal

    normalized = format(Decimal(f"{value}e-{decimals}"), "f")
    return event_view(
        SimpleNamespace(
            chain_id=31337,
            block_number=10,
            block_hash="0x" + "ab" * 32,
            tx_hash="0x" + "cd" * 32,
            log_index=0,
            address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
            registry="reputation",
            event_type="NewFeedback",
            abi_version="v1",
            agent_id=agent_id,
            args={
                "agentId": str(agent_id),
                "clientAddress": client,
                "feedbackIndex": index,
                "value": value,
                "valueDecimals": decimals,
                "valueNormalized": normalized,
                "tag1": tag1,
                "tag2": "",
                "endpoint": "https://agent.example/mcp",
                "feedbackURI": "",
                "feedbackHash": "0x" + "00" * 32,
            },
        )
    )


def matches(spec, view, ctx=None):
    return condition_parse(spec).evaluate(view, ctx or EvaluationContext())


#
# Validation
#


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"type": "nope"}, "conditions.type", "unknown condition type 'nope'"),
        ({"all": [{"type": "field", "field": "args.value", "op": "lt"}]}, "conditions.all[0].value", "required"),
        ({"type": "field", "field": "args.value", "op": "lt", "value": "abc"}, "conditions.value", "not a number"),
        ({"type": "field", "field": "secret", "op": "eq", "value": 1}, "conditions.field", "unknown field"),
        ({"type": "field", "field": "args.x", "op": "regex", "value": "("}, "conditions.value", "invalid regex"),
        ({"type": "field", "field": "args.x", "op": "regex", "value": "a" * 201}, "conditions.value", "at most 200"),
        ({"type": "agent_id", "values": ["x1"]}, "conditions.values", "whole numbers"),
        ({"type": "event_type", "values": ["Nope"]}, "conditions.values", "unknown event type"),
        ({"type": "address_in", "role": "client", "addresses": ["0x12"]}, "conditions.addresses", "not a 0x address"),
        ({"type": "ema", "window": 0, "op": "lt", "value": 1}, "conditions.window", "whole number"),
        ({"any": []}, "conditions.any", "non-empty list"),
        ({"all": [{"type": "event_type", "values": ["Registered"]}], "any": []}, "conditions", "exactly one key"),
        ({"type": "value_threshold", "op": "regex", "value": 1}, "conditions.op", "unknown operator"),
        ({"type": "tag_equals", "tag": "tag3", "value": "x"}, "conditions.tag", "tag1 or tag2"),
        ({"type": "first_feedback", "extra": 1}, "conditions.extra", "unknown key"),
    ],
)
def test_invalid_conditions_name_the_place_and_reason(spec, path, message):
    with pytest.raises(InvalidCondition) as info:
        condition_parse(spec)
    assert info.value.path == path
    assert message in info.value.message


def test_depth_and_size_limits():
    node = {"type": "first_feedback"}
    for _ in range(10):
        node = {"not": node}
    with pytest.raises(InvalidCondition, match="deeper than"):
        condition_parse(node)
    with pytest.raises(InvalidCondition, match="at most 50"):
        condition_parse({"all": [{"type": "first_feedback"}] * 51})


def test_empty_conditions_match_everything():
    assert matches(None, feedback())
    assert matches({}, feedback())


#
# Leaves
#


def test_seed_conditions():
    view = feedback(value="45", tag1="starred", agent_id=42)
    assert matches({"type": "agent_id", "values": [42]}, view)
    assert not matches({"type": "agent_id", "values": ["7"]}, view)
    assert matches({"type": "event_type", "values": ["NewFeedback"]}, view)
    assert matches({"type": "value_threshold", "op": "lt", "value": 50}, view)
    assert not matches({"type": "value_threshold", "op": "gte", "value": "50"}, view)
    assert matches({"type": "tag_equals", "tag": "tag1", "value": "starred"}, view)
    assert not matches({"type": "tag_equals", "tag": "tag2", "value": "starred"}, view)


def test_threshold_uses_the_normalised_value():
    view = feedback(value="9977", decimals=2)  # 99.77
    assert matches({"type": "value_threshold", "op": "gt", "value": "99.7"}, view)
    assert not matches({"type": "value_threshold", "op": "gt", "value": "100"}, view)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "starred", True),
        ("ne", "starred", False),
        ("in", ["uptime", "starred"], True),
        ("not_in", ["uptime"], True),
        ("contains", "tar", True),
        ("starts_with", "sta", True),
        ("regex", "^st.r+ed$", True),
        ("regex", "^x", False),
    ],
)
def test_field_operators_on_text(op, value, expected):
    assert matches({"type": "field", "field": "args.tag1", "op": op, "value": value}, feedback()) is expected


@pytest.mark.parametrize(("op", "expected"), [("lt", False), ("lte", True), ("gt", False), ("gte", True)])
def test_field_ordering_on_numbers(op, expected):
    spec = {"type": "field", "field": "args.valueNormalized", "op": op, "value": "87"}
    assert matches(spec, feedback(value="87")) is expected


def test_addresses_compare_without_case():
    view = feedback()
    spec = {"type": "field", "field": "args.clientAddress", "op": "eq", "value": CLIENT.lower()}
    assert matches(spec, view)
    assert matches({"type": "address_in", "role": "client", "addresses": [CLIENT.upper().replace("0X", "0x")]}, view)
    assert not matches({"type": "address_in", "role": "client", "addresses": [CLIENT], "negate": True}, view)
    assert not matches({"type": "address_in", "role": "validator", "addresses": [CLIENT]}, view)


def test_missing_fields_never_raise():
    view = feedback()
    assert not matches({"type": "field", "field": "args.nothing", "op": "gt", "value": 1}, view)
    assert matches({"type": "field", "field": "args.nothing", "op": "ne", "value": 1}, view)


def test_catastrophic_regex_times_out_as_no_match():
    view = feedback(tag1="a" * 5000 + "!")
    assert not matches({"type": "field", "field": "args.tag1", "op": "regex", "value": "^(a+)+$"}, view)


def test_nesting_all_any_not():
    spec = {
        "all": [
            {"type": "event_type", "values": ["NewFeedback"]},
            {
                "any": [
                    {"type": "agent_id", "values": [1]},
                    {"not": {"type": "value_threshold", "op": "gt", "value": 90}},
                ]
            },
        ]
    }
    assert matches(spec, feedback(value="87", agent_id=42))
    assert not matches(spec, feedback(value="95", agent_id=42))
    assert matches(spec, feedback(value="95", agent_id=1))


def test_agent_state_conditions_read_the_context():
    view = feedback()
    ctx = EvaluationContext(agent={"feedback_average": "42.5", "services": [{"name": "MCP"}]})
    assert matches({"type": "agent_average", "op": "lt", "value": 50}, view, ctx)
    assert matches({"type": "agent_has_service", "service": "mcp"}, view, ctx)
    assert not matches({"type": "agent_has_service", "service": "A2A"}, view, ctx)
    assert not matches({"type": "agent_average", "op": "lt", "value": 50}, view, EvaluationContext())


def test_first_feedback_is_index_one():
    assert matches({"type": "first_feedback"}, feedback(index=1))
    assert not matches({"type": "first_feedback"}, feedback(index=2))


#
# Stateful leaves
#


def test_ema_matches_on_the_running_average_and_saves_state():
    condition = condition_parse({"type": "ema", "window": 3, "op": "lt", "value": 50})
    ctx = EvaluationContext()
    results = [condition.evaluate(feedback(value=v), ctx) for v in ("80", "20", "20", "20")]
    # alpha = 0.5: 80, 50, 35, 27.5
    assert results == [False, False, True, True]
    (key,) = ctx.state_updates
    assert key.endswith("|agent:31337:42")
    assert ctx.state_updates[key]["count"] == 4
    assert ctx.state_updates[key]["ema"].startswith("27.5")


def test_ema_ignores_events_without_a_value():
    condition = condition_parse({"type": "ema", "window": 3, "op": "lt", "value": 50})
    revoked = dict(feedback(), event_type="FeedbackRevoked")
    ctx = EvaluationContext()
    assert condition.evaluate(revoked, ctx) is False
    assert ctx.state_updates == {}


def test_rate_counts_in_a_block_time_window_and_resets_on_fire():
    condition = condition_parse({"type": "rate", "window_seconds": 60, "op": "gte", "count": 3, "reset_on_fire": True})
    ctx = EvaluationContext()
    fired = []
    for second in (0, 10, 20, 100, 110, 120):
        ctx.now_timestamp = 1_000 + second
        view = feedback()
        hit = condition.evaluate(view, ctx)
        if hit:
            condition.fired(view, ctx)
        fired.append(hit)
    assert fired == [False, False, True, False, False, True]


def test_state_is_per_agent_by_default_and_per_trigger_on_request():
    per_agent = condition_parse({"type": "rate", "window_seconds": 60, "op": "gte", "count": 2})
    per_trigger = condition_parse({"type": "rate", "window_seconds": 60, "op": "gte", "count": 2, "per": "trigger"})
    for condition, expected in ((per_agent, False), (per_trigger, True)):
        ctx = EvaluationContext(now_timestamp=1)
        condition.evaluate(feedback(agent_id=1), ctx)
        assert condition.evaluate(feedback(agent_id=2), ctx) is expected
