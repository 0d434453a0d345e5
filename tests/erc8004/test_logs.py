"""Structured logs: the JSON rendering, ids bound where the code knows them (a
request, a poll, a delivery), and the request id on every response."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from django.test import override_settings

from actions.services import delivery_create, delivery_send
from erc8004.logs import log_context, logging_config
from tests.fixtures.factories import make_feedback_event
from tests.fixtures.pipeline import pipeline_build, poll_until_caught_up
from triggers.services import events_evaluate


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record of the ``erc8004`` and request loggers, rendered exactly as
    ``LOG_FORMAT=json`` renders it in production."""
    formatter_config = dict(logging_config(fmt="json", level="DEBUG")["formatters"]["structured"])
    formatter = formatter_config.pop("()")(**formatter_config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    loggers = [logging.getLogger(name) for name in ("erc8004", "django_structlog.middlewares")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield stream
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_level_logger_time_and_bound_ids(json_lines):
    with log_context(chain_id=31337, event_id=None):
        logging.getLogger("erc8004.indexing.poller").warning("poll failed: %s", "timeout")
    structlog.get_logger("erc8004.test").info("structured", trigger_id=4)
    first, second = records(json_lines)
    assert first["event"] == "poll failed: timeout"
    assert first["level"] == "warning"
    assert first["logger"] == "erc8004.indexing.poller"
    assert first["chain_id"] == 31337
    assert "event_id" not in first  # None values are not bound
    assert first["timestamp"].endswith("Z")
    assert second["trigger_id"] == 4
    assert "chain_id" not in second  # the context ended with the block


def test_plain_format_is_for_people():
    config = logging_config(fmt="plain", level="INFO")["formatters"]["structured"]
    assert config["processors"][-1].__class__.__name__ == "ConsoleRenderer"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(fmt="xml", level="INFO")


@pytest.mark.django_db
def test_every_response_has_a_request_id_also_in_its_log_line(client, json_lines):
    response = client.get("/api/v1/health?only=database")
    generated = response["X-Request-ID"]
    assert len(generated) == 36  # a UUID
    finished = [r for r in records(json_lines) if r["event"] == "request_finished"]
    assert finished[-1]["request_id"] == generated
    assert finished[-1]["code"] == 200

    # A sane incoming id is kept (one id across a load balancer and us) ...
    response = client.get("/api/v1/status/", HTTP_X_REQUEST_ID="lb-7f3a9c2e.42")
    assert response["X-Request-ID"] == "lb-7f3a9c2e.42"
    # ... anything that could forge log lines or headers is replaced.
    for bad in ("a\nforged line", "x" * 200, "", "<script>"):
        response = client.get("/api/v1/status/", HTTP_X_REQUEST_ID=bad)
        assert response["X-Request-ID"] != bad
        assert len(response["X-Request-ID"]) == 36


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_poll_and_delivery_lines_carry_their_ids(devnet_factory, webhook_receiver, json_lines):
    pipeline = pipeline_build(devnet_factory(), webhook_receiver, seed=2)
    # Off while indexing: a session worker thread (if running) must not deliver to
    # this receiver (the failure staged below is for our own send).
    pipeline.trigger.enabled = False
    pipeline.trigger.save(update_fields=["enabled", "updated_at"])
    pipeline.workload.run(20)
    poll_until_caught_up(pipeline.chain.chain_id)
    indexed = [r for r in records(json_lines) if r["event"].startswith("indexed ")]
    assert indexed
    assert all(r["chain_id"] == pipeline.chain.chain_id for r in indexed)

    # Evaluation, in this process, of an event no message announced (a session worker
    # thread may be evaluating the indexed ones concurrently).
    event = make_feedback_event(chain=pipeline.chain, value=10, index=999, block_number=10**6)
    pipeline.trigger.conditions, pipeline.trigger.enabled = {}, True
    pipeline.trigger.save(update_fields=["conditions", "enabled", "updated_at"])
    with override_settings(ACTIONS_QUEUE="logs-test-unconsumed"):
        assert events_evaluate(event_ids=[event.pk]).matches == 1
    # Ours, by its event id: the session worker may log matches of the indexed events
    # after it (the trigger is enabled again above).
    matched = [
        r for r in records(json_lines) if r["event"].startswith("trigger matched") and r.get("event_id") == event.pk
    ]
    assert len(matched) == 1
    assert matched[0]["trigger_id"] == pipeline.trigger.pk
    assert matched[0]["chain_id"] == pipeline.chain.chain_id

    webhook_receiver.fail_next(1)
    with override_settings(ACTIONS_QUEUE="logs-test-unconsumed"):
        delivery = delivery_create(
            destination=pipeline.destination,
            payload={"type": "test"},
            idempotency_key="logs-test",
            trigger_id=pipeline.trigger.pk,
            event_id=123,
        )
    assert delivery_send(delivery_id=delivery.pk) == "retrying"
    failure = [r for r in records(json_lines) if r.get("delivery") == str(delivery.uuid)]
    assert failure, records(json_lines)[-3:]
    assert failure[-1]["level"] == "warning"
    assert failure[-1]["trigger_id"] == pipeline.trigger.pk
    assert failure[-1]["event_id"] == 123
    assert failure[-1]["destination_id"] == pipeline.destination.pk
    assert failure[-1]["channel"] == "webhook"


def test_process_role_names_each_kind_of_process():
    from erc8004.logs import process_role

    assert process_role(["/venv/bin/gunicorn", "erc8004.wsgi"]) == "erc8004-web"
    assert process_role(["/venv/bin/celery", "-A", "erc8004", "worker", "-Q", "actions"]) == "erc8004-worker-actions"
    assert process_role(["/venv/bin/celery", "-A", "erc8004", "beat"]) == "erc8004-beat"
    assert process_role(["/venv/bin/celery", "-A", "erc8004", "flower"]) == "erc8004-flower"
    assert process_role(["manage.py", "migrate"]) == "erc8004-migrate"


@pytest.mark.django_db
def test_database_connections_carry_the_process_role():
    """What the runbook's connection query (incident 3) groups by."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == "erc8004-pytest"
