"""agents/jsondoc.py: every class of hostile bytes becomes a DocumentError with a reason."""

from __future__ import annotations

import json
import sys

import pytest

from agents.jsondoc import DocumentError, json_document_load, text_clean


def test_a_plain_object_loads():
    assert json_document_load(b'{"name": "x", "n": [1, 2.5, true, null]}') == {"name": "x", "n": [1, 2.5, True, None]}


def test_a_utf8_bom_is_ignored():
    assert json_document_load(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"name": "\xff\xfe"}', "not valid UTF-8"),
        (b"{name: 1}", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b"[1, 2]", "top level must be a JSON object, not an array"),
        (b'"just a string"', "top level must be a JSON object, not a string"),
        (b"null", "top level must be a JSON object, not null"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"<html><body>hello</body></html>", "not valid JSON"),
    ],
)
def test_bad_input_is_refused_with_a_reason(data, reason):
    with pytest.raises(DocumentError) as caught:
        json_document_load(data)
    assert reason in str(caught.value)


def test_deep_nesting_within_the_parser_is_refused_by_the_depth_limit():
    data = ('{"a": ' + "[" * 40 + "]" * 40 + "}").encode()
    with pytest.raises(DocumentError, match="nested more than 32 levels"):
        json_document_load(data)


def test_nesting_that_would_overflow_the_c_stack_is_refused_before_parsing():
    # py_ecc (imported with web3) raises the recursion limit to 100,000 in every process
    # that loads it; json's C parser would then recurse until the C stack overflows.
    data = ('{"a": ' + "[" * 500_000 + "]" * 500_000 + "}").encode()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100_000))
    try:
        with pytest.raises(DocumentError, match="nested more than 32 levels"):
            json_document_load(data, max_bytes=10**7)
    finally:
        sys.setrecursionlimit(limit)


def test_brackets_inside_strings_do_not_count_as_nesting():
    doc = json_document_load(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"}')
    assert doc["a"].startswith("[[[[")


def test_oversized_input_is_refused_before_parsing():
    data = b'{"a": "' + b"x" * 2000 + b'"}'
    with pytest.raises(DocumentError, match="2009 bytes; the limit is 1000"):
        json_document_load(data, max_bytes=1000)


def test_nul_and_lone_surrogates_are_replaced_in_values_and_keys():
    doc = json_document_load(json.dumps({"na\u0000me": "a\u0000b", "s": "\ud800x", "l": ["\u0000"]}).encode())
    assert doc == {"na\ufffdme": "a\ufffdb", "s": "\ufffdx", "l": ["\ufffd"]}
    # and the result encodes (what PostgreSQL needs)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")


def test_text_clean_leaves_good_text_alone():
    assert text_clean("héllo ✓") == "héllo ✓"
