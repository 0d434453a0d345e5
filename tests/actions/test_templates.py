"""actions/templates.py: sandboxed rendering, per-mode escaping, JSON templates.

The escaping property is checked against the Telegram stand-in's own parser
(tests/fixtures/receivers.py), written from the Bot API rules, not from our escaper.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actions.templates import (
    DEFAULT_JSON_TEMPLATE,
    DEFAULT_TEXT_TEMPLATES,
    TemplateError,
    escape_html,
    escape_markdown_v2,
    render_json,
    render_text,
    template_check,
)
from tests.actions.conftest import SAMPLE_CONTEXT
from tests.fixtures.receivers import EntityError, parse_html, parse_markdown_v2

# Text that stresses every parse mode: all MarkdownV2 reserved characters, HTML
# specials, backslashes, newlines, non-ASCII and emoji.
hostile_text = st.text(
    alphabet=st.sampled_from(list("_*[]()~`>#+-=|{}.!\\<>&\"' \nab1é€😀")) | st.characters(codec="utf-8"),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(value=hostile_text, other=hostile_text)
def test_markdown_v2_values_are_always_accepted(value, other):
    template = "*Agent* {{ name }} _said_ {{ quote }}\n`{{ name }}` [link]({{ quote | urlencode }})"
    text = render_text(template, {"name": value, "quote": other}, mode="MarkdownV2", max_chars=100_000)
    plain = parse_markdown_v2(text)  # raises EntityError if Telegram would refuse it
    assert value[:100] in plain or len(value) > 1000


@settings(max_examples=300, deadline=None)
@given(value=hostile_text)
def test_html_values_are_always_accepted(value):
    template = '<b>{{ name }}</b> <a href="https://x.test/?q={{ name }}">{{ name }}</a> <code>{{ name }}</code>'
    text = render_text(template, {"name": value}, mode="HTML", max_chars=100_000)
    plain = parse_html(text)
    assert plain.count(value) >= 2 if value else True


@settings(max_examples=200, deadline=None)
@given(value=hostile_text)
def test_escapers_round_trip_through_the_parsers(value):
    assert parse_markdown_v2(escape_markdown_v2(value)) == value
    assert parse_html(escape_html(value)) == value


def test_unescaped_markdown_is_what_telegram_refuses():
    """The seed's bug: values interpolated raw into MarkdownV2."""
    with pytest.raises(EntityError, match="reserved"):
        parse_markdown_v2("Agent v1.2 registered")
    assert parse_markdown_v2(render_text("Agent {{ v }} registered", {"v": "v1.2"}, mode="MarkdownV2", max_chars=99))


def test_template_literals_stay_as_written():
    text = render_text("*bold* {{ x }} _it_", {"x": "*not bold*"}, mode="MarkdownV2", max_chars=999)
    assert text == "*bold* \\*not bold\\* _it_"
    assert (
        render_text("<b>{{ x }}</b>", {"x": "<i>&</i>"}, mode="HTML", max_chars=999)
        == "<b>&lt;i&gt;&amp;&lt;/i&gt;</b>"
    )
    assert render_text("*{{ x }}*", {"x": "a_b"}, mode="plain", max_chars=999) == "*a_b*"


def test_filters_output_is_escaped_too():
    assert render_text("{{ x | upper }}", {"x": "a.b"}, mode="MarkdownV2", max_chars=99) == "A\\.B"


def test_undefined_values_are_clear_errors():
    with pytest.raises(TemplateError, match=r"undefined value.*nope"):
        render_text("{{ event.nope }}", {"event": {"id": 1}}, mode="plain", max_chars=99)
    with pytest.raises(TemplateError, match="undefined"):
        render_text("{{ missing }}", {}, mode="plain", max_chars=99)
    assert render_text("{{ missing | default('-') }}", {}, mode="plain", max_chars=99) == "-"


def test_syntax_errors_name_the_line():
    with pytest.raises(TemplateError, match="line 2"):
        template_check("ok\n{{ broken ")


def test_the_sandbox_refuses_internals():
    with pytest.raises(TemplateError, match=r"not allowed|undefined"):
        render_text("{{ x.__class__.__mro__ }}", {"x": "a"}, mode="plain", max_chars=999)
    with pytest.raises(TemplateError):
        render_text("{{ ''.__class__.__subclasses__() }}", {}, mode="plain", max_chars=999)


def test_length_caps():
    with pytest.raises(TemplateError, match="longer than 4096"):
        render_text("{% for i in range(5000) %}x{% endfor %}", {}, mode="plain", max_chars=4096)
    with pytest.raises(TemplateError, match="limit is"):
        template_check("x" * 10_000)
    long_value = render_text("{{ v }}", {"v": "y" * 5000}, mode="plain", max_chars=99_999)
    assert len(long_value) == 1024
    assert long_value.endswith("…")
    # Cut before escaping: an escape is never split.
    cut = render_text("{{ v }}", {"v": "." * 5000}, mode="MarkdownV2", max_chars=99_999)
    parse_markdown_v2(cut)


def test_values_render_sensibly():
    context = {"none": None, "obj": {"a": [1, 2]}, "flag": True}
    assert (
        render_text("[{{ none }}] {{ obj }} {{ flag }}", context, mode="plain", max_chars=99) == '[] {"a":[1,2]} True'
    )


def test_json_templates_insert_values_with_their_json_type():
    template = {
        "id": "{{ event.id }}",
        "args": "{{ event.args }}",
        "missing": "{{ agent.nothing | default(none) }}",
        "text": "Agent {{ agent.name }} scored {{ event.args.score }}",
        "literal": 5,
        "list": ["{{ chain.chain_id }}", "x"],
    }
    result = render_json(template, SAMPLE_CONTEXT)
    assert result == {
        "id": 7,
        "args": {"agentId": 5, "score": 97, "tag1": "fast-and_cheap!"},
        "missing": None,
        "text": "Agent Agent (v1.2) [beta] *star* scored 97",
        "literal": 5,
        "list": [31337, "x"],
    }


def test_json_templates_cannot_be_broken_out_of():
    evil = '", "admin": true, "x": "'
    result = render_json('{"name": "{{ v }}", "say": "hi {{ v }}"}', {"v": evil})
    assert result == {"name": evil, "say": "hi " + evil}
    assert json.loads(json.dumps(result)) == result


def test_json_template_errors():
    with pytest.raises(TemplateError, match="not valid JSON"):
        render_json("{nope", {})
    with pytest.raises(TemplateError, match=r"at \$.a"):
        render_json({"a": "{{ nothing }}"}, {})
    with pytest.raises(TemplateError, match="limit"):
        render_json({"a": "{{ big }}"}, {"big": "z" * 300_000})


@pytest.mark.parametrize("mode", ["MarkdownV2", "HTML", "plain"])
def test_default_templates_render_for_full_and_empty_contexts(mode):
    parse = {"MarkdownV2": parse_markdown_v2, "HTML": parse_html, "plain": str}[mode]
    full = render_text(DEFAULT_TEXT_TEMPLATES[mode], SAMPLE_CONTEXT, mode=mode, max_chars=4096)
    assert "High score" in parse(full)
    assert "Agent (v1.2) [beta] *star*" in parse(full)
    empty_context = {"event": None, "agent": None, "trigger": None, "chain": None}
    parse(render_text(DEFAULT_TEXT_TEMPLATES[mode], empty_context, mode=mode, max_chars=4096))


def test_default_json_template():
    body = render_json(DEFAULT_JSON_TEMPLATE, {**SAMPLE_CONTEXT, "delivery_id": "d-1"})
    assert body["type"] == "event.matched"
    assert body["delivery_id"] == "d-1"
    assert body["event"]["args"]["score"] == 97
    assert set(body) == {"type", "delivery_id", "trigger", "event", "agent", "chain"}


def test_default_templates_with_the_triggers_context_shape():
    """chain is {id, name} there, names may be empty and agent ids are strings."""
    context = {
        "event": {"id": 1, "type": "Registered", "block_number": 9, "transaction_hash": "0xab"},
        "agent": {"agent_id": "12", "name": ""},
        "trigger": {"id": 2, "name": ""},
        "chain": {"id": 8453, "name": ""},
    }
    text = parse_markdown_v2(
        render_text(DEFAULT_TEXT_TEMPLATES["MarkdownV2"], context, mode="MarkdownV2", max_chars=4096)
    )
    assert text.startswith("Trigger: Registered")
    assert "Agent 12\n" in text
    assert "Chain 8453, block 9" in text


@pytest.mark.parametrize(
    ("source", "words"),
    [
        # Unbounded macro recursion: a segfault (C stack overflow) before the depth limit,
        # because py_ecc raises Python's recursion limit to 100,000.
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested more than"),
        ("{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}", "nested more than"),
        # Nested loops that print nothing: 10^10 iterations, hours of one worker thread.
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "iterations"),
        # Giant values, built before any output cap could apply.
        ("{{ 'a' * 10000000000 }}", "would build"),
        ("{{ [0] * 3000000000 }}", "would build"),
        ("{{ 2 ** 100000000 }}", "bits"),
        ("{{ 'x' | center(3000000000) }}", "would build"),
        ("{{ 'x' | indent(3000000000) }}", "would build"),
        ("{{ 'x'.ljust(3000000000) }}", "would build"),
        ("{{ '%999999999s' % 'x' }}", "would build"),
        ("{{ '%(a)*s' % {'a': 1} }}", "would build"),
    ],
)
def test_hostile_templates_fail_as_template_errors_quickly(source, words):
    """Each of these once crashed or hung the process that rendered it; now each is a
    TemplateError (recorded on the match or the dead delivery) within the budget."""
    import time

    started = time.monotonic()
    with pytest.raises(TemplateError, match=words):
        render_text(source, SAMPLE_CONTEXT, max_chars=4096)
    with pytest.raises(TemplateError, match=words):
        render_json({"x": f"prefix {source}"}, SAMPLE_CONTEXT)
    assert time.monotonic() - started < 10  # bounded; the budget itself is 2 s per render


def test_a_huge_integer_literal_is_a_template_error_not_a_value_error():
    """The parser evaluates literals; a 5,000-digit integer raised ValueError out of
    template_check, which the trigger API did not expect (a 500)."""
    source = "{{ " + "9" * 5000 + " }}"
    with pytest.raises(TemplateError):
        template_check(source)
    with pytest.raises(TemplateError):
        render_json({"x": source}, SAMPLE_CONTEXT)


def test_ordinary_loops_and_macros_are_unaffected():
    source = (
        "{% macro row(s) %}{{ s.name }};{% endmacro %}"
        "{% for s in services %}{{ loop.index }}/{{ loop.length }}={{ row(s) }}{% endfor %}"
        "{% for i in range(50000) %}{% endfor %}{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ '%05d' % 42 }}"
    )
    out = render_text(source, {"services": [{"name": "mcp"}, {"name": "a2a"}]}, max_chars=4096)
    assert out == "1/2=mcp;2/2=a2a;ababab102400042"
