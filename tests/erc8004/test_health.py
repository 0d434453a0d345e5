"""``GET /api/v1/health`` and ``manage.py healthcheck``: real database, real broker,
heartbeats stamped by a real worker, a chain polled (or not) by the real poller.
A failing part is named and turns the answer into 503 / exit status 1."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import call_command
from django.test import override_settings

from erc8004.health import heartbeat_read
from erc8004.tasks import heartbeat
from indexing.devnet.contracts import devnet_register_chain
from indexing.poller import chain_poll
from tests.fixtures.pipeline import poll_until_caught_up
from tests.fixtures.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = ("indexing", "files", "triggers", "actions")


def beat_once(worker_app) -> None:
    """What beat does every HEALTH_HEARTBEAT_INTERVAL: one heartbeat per queue."""
    sent = time.time()
    for queue in QUEUES:
        heartbeat.apply_async((queue,), queue=queue)
    wait_for(
        lambda: all((stamp := heartbeat_read(q)) and stamp["at"] >= sent for q in QUEUES),
        30,
        what="a worker to stamp every queue",
    )


def get_health(client, query: str = ""):
    response = client.get("/api/v1/health" + query)
    return response.status_code, json.loads(response.content)


@pytest.mark.integration
def test_healthy_when_every_part_works_and_names_what_fails(client, devnet_factory, celery_worker):
    devnet = devnet_factory()
    chain = devnet_register_chain(
        rpc_url=devnet.anvil.rpc_url, chain_id=devnet.w3.eth.chain_id, deployment=devnet.deployment
    )

    # A chain never polled, no heartbeat yet: 503 naming both.
    status, report = get_health(client)
    assert status == 503
    assert report["status"] == "unhealthy"
    assert f"chain:{chain.chain_id}" in report["failing"]
    assert report["database"] == "connected"
    assert report["redis"] == "connected"

    # The poller follows the chain and every queue has a live consumer: 200.
    poll_until_caught_up(chain.chain_id)
    beat_once(celery_worker)
    status, report = get_health(client)
    assert status == 200, report["failing"]
    assert report["status"] == "healthy"
    for queue in QUEUES:
        assert report["checks"][f"worker:{queue}"]["status"] == "ok"
        assert report["checks"][f"queue:{queue}"]["status"] == "ok"
    assert report["checks"][f"chain:{chain.chain_id}"]["data"]["lag_blocks"] == 0
    assert report["checks"]["evaluation"]["status"] == "ok"
    assert report["checks"]["deliveries"]["status"] == "ok"

    # A heartbeat older than the limit means no live consumer.
    with override_settings(HEALTH_HEARTBEAT_MAX_AGE=0.0):
        time.sleep(0.05)
        status, report = get_health(client)
    assert status == 503
    assert {"worker:indexing", "worker:triggers", "worker:actions"} <= set(report["failing"])
    assert "no live consumer" in report["checks"]["worker:actions"]["detail"]

    # The chain's only RPC endpoint stops answering: a warning at once (the poll
    # failed), a failure once the head has not been read for the allowed lag.
    devnet.anvil.stop()
    assert chain_poll(chain_id=chain.chain_id).outcome == "error"
    status, report = get_health(client, "?only=chains")
    assert status == 200
    assert report["warnings"] == [f"chain:{chain.chain_id}"]
    assert "recent error" in report["checks"][f"chain:{chain.chain_id}"]["detail"]
    with override_settings(HEALTH_CHAIN_MAX_LAG_SECONDS=0.0):
        time.sleep(0.05)
        status, report = get_health(client, "?only=chains")
    assert status == 503
    assert report["failing"] == [f"chain:{chain.chain_id}"]
    assert "head not read" in report["checks"][f"chain:{chain.chain_id}"]["detail"]


def test_only_selects_check_groups_for_cheap_probes(client):
    status, report = get_health(client, "?only=database,broker")
    assert status == 200
    assert set(report["checks"]) == {"database", "broker"}
    assert "unapplied_migrations" not in report["checks"]["database"]["data"]
    status, report = get_health(client, "?only=database&deep=1")
    assert report["checks"]["database"]["data"]["unapplied_migrations"] == []
    assert report["checks"]["database"]["data"]["max_connections"] > 0


def test_the_health_endpoint_is_anonymous_and_not_cached(client):
    response = client.get("/api/v1/health/?only=database")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["X-Request-ID"]


def test_healthcheck_command_exit_status_and_json(capsys):
    call_command("healthcheck", "--json", "--only", "database,broker,queues")
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "healthy"
    assert report["checks"]["database"]["data"]["unapplied_migrations"] == []

    # No heartbeats under this session's prefix without a worker: exit 1, named.
    with override_settings(REDIS_KEY_PREFIX="erc8004-health-test-none:"), pytest.raises(SystemExit) as exit_info:
        call_command("healthcheck", "--only", "workers")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL  worker:actions" in out
    assert "unhealthy: failing worker:indexing, worker:files, worker:triggers, worker:actions" in out

    # --strict turns warnings (a queue filling up) into exit 2.
    with override_settings(HEALTH_QUEUE_WARN_DEPTH=0), pytest.raises(SystemExit) as exit_info:
        call_command("healthcheck", "--only", "queues", "--strict")
    assert exit_info.value.code == 2
