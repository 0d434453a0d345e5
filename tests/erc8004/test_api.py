"""erc8004/api.py: the one error shape, keyset cursor handling, and the OpenAPI schema
of the whole API validating with no warnings (the CI gate in reference/stack.md §4.7)."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.management import call_command
from rest_framework import exceptions

from erc8004.api import KeysetOrdering, SortKey, _beyond, api_exception_handler


def test_validation_errors_are_reshaped():
    response = api_exception_handler(exceptions.ValidationError({"limit": ["Too big."], "x": "bad"}), {})
    assert response.status_code == 400
    assert response.data == {
        "status": 400,
        "code": "invalid",
        "detail": "Invalid request parameters.",
        "errors": {"limit": ["Too big."], "x": ["bad"]},
    }
    flat = api_exception_handler(exceptions.ValidationError(["oops"]), {})
    assert flat.data["errors"] == {"non_field_errors": ["oops"]}


def test_other_errors_share_the_shape():
    assert api_exception_handler(exceptions.NotFound("No agent 1:2."), {}).data == {
        "status": 404,
        "code": "not_found",
        "detail": "No agent 1:2.",
    }
    throttled = api_exception_handler(exceptions.Throttled(wait=12.2), {})
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "13"
    assert throttled.data["retry_after"] == 13
    assert throttled.data["code"] == "throttled"
    assert api_exception_handler(ValueError("not an API error"), {}) is None


def test_keyset_condition_has_an_index_friendly_bound():
    keys = (SortKey("score", "decimal"), SortKey("id"))
    q = str(_beyond(keys, [5, 10], forward=True))
    assert "score__lte" in q  # the redundant bound that lets PostgreSQL start a range scan
    assert "score__lt" in q
    assert "id__lt" in q
    q_back = str(_beyond(keys, [5, 10], forward=False))
    assert "score__gte" in q_back


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        {"o": "newest", "d": "n", "v": ["2026-01-01T00:00:00+00:00"]},  # wrong arity
        {"o": "newest", "d": "x", "v": ["2026-01-01T00:00:00+00:00", 1]},
        {"o": "newest", "d": "n", "v": ["not a date", 1]},
        {"o": "newest", "d": "n", "v": ["2026-01-01T00:00:00+00:00", "1"]},
        {"o": "newest", "d": "n", "v": ["2026-01-01T00:00:00+00:00", True]},
        ["not", "an", "object"],
    ],
)
def test_tampered_cursors_are_400(client, payload):
    cursor = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    response = client.get(f"/api/v1/agents/?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.json()["errors"]


def test_ordering_dataclass_is_hashable():
    assert KeysetOrdering("x", (SortKey("id"),)).keys[0].descending


def test_openapi_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/agents/", "/api/v1/agents/{agent_ref}/", "/api/v1/feedback/", "/api/v1/chains/"):
        assert f"{path}:" in text
    assert "Error:" in text  # the one error shape is a documented component
