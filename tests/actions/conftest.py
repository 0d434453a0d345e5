"""Fixtures for the actions tests: an organization, destinations wired to the real
loopback receivers (tests/fixtures/receivers.py), a fast retry ladder, a clean
rate-limit state, and helpers that play beat (dispatcher + sweeper) or a worker
process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

BOT_TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"


@pytest.fixture(autouse=True)
def _clean_rate_limits() -> None:
    """Rate-limit buckets live in Redis across tests; start each test with none."""
    from erc8004.queues import redis_client

    client = redis_client()
    for key in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "rl:*", count=1000):
        client.delete(key)


@pytest.fixture
def fast_ladder() -> Iterator[list[float]]:
    """Retries after ~0.2 s, ~0.4 s, ~0.6 s instead of seconds to hours."""
    ladder = [0.2, 0.4, 0.6]
    with override_settings(ACTIONS_RETRY_LADDER=ladder):
        yield ladder


@pytest.fixture
def unconsumed_queue() -> Iterator[str]:
    """Publish sends to a queue no worker reads, so only the test's own senders send
    (the session worker thread, once started, consumes the real actions queue)."""
    queue = f"actions-unconsumed-{os.getpid()}-{time.monotonic_ns()}"
    with override_settings(ACTIONS_QUEUE=queue):
        yield queue


@pytest.fixture
def org():
    from erc8004.models import Organization

    return Organization.objects.create(name="Acme", slug=f"acme-{time.monotonic_ns()}")


@pytest.fixture
def webhook_destination(org, webhook_receiver):
    from actions.services import destination_create

    destination = destination_create(
        organization=org, name="hook", channel="webhook", config={"url": webhook_receiver.url, "timeout": 3}
    )
    webhook_receiver.secrets = [destination.secret.reveal()]
    return destination


@pytest.fixture
def telegram_destination(org, telegram_api):
    from actions.services import destination_create

    telegram_api.tokens.add(BOT_TOKEN)
    return destination_create(
        organization=org,
        name="chat",
        channel="telegram",
        config={"chat_id": "424242", "api_base_url": telegram_api.base_url, "timeout": 3},
        secret=BOT_TOKEN,
    )


@pytest.fixture
def mcp_destination(org, mcp_server):
    from actions.services import destination_create

    return destination_create(
        organization=org,
        name="agent",
        channel="mcp",
        config={"url": mcp_server.url, "tool_name": "notify", "timeout": 5},
    )


SAMPLE_CONTEXT: dict[str, Any] = {
    "event": {
        "id": 7,
        "type": "NewFeedback",
        "registry": "reputation",
        "chain_id": 31337,
        "block_number": 12,
        "block_hash": "0x" + "ab" * 32,
        "block_timestamp": "2026-01-01T00:00:00+00:00",
        "transaction_hash": "0x" + "cd" * 32,
        "log_index": 3,
        "args": {"agentId": 5, "score": 97, "tag1": "fast-and_cheap!"},
    },
    "agent": {"chain_id": 31337, "agent_id": 5, "name": "Agent (v1.2) [beta] *star*", "owner": "0x" + "11" * 20},
    "trigger": {"id": 3, "name": "High score"},
    "chain": {"chain_id": 31337, "name": "devnet"},
}


def make_delivery(destination, *, key: str | None = None, template: Any = None, context: dict | None = None, **kw):
    from actions.services import delivery_create, payload_build

    payload = payload_build(destination=destination, template=template, context=context or SAMPLE_CONTEXT)
    return delivery_create(
        destination=destination, payload=payload, idempotency_key=key or f"match:{time.monotonic_ns()}", **kw
    )


def send_due(limit: int = 100) -> list[str]:
    """Play the worker synchronously: attempt every due waiting row once."""
    from django.utils import timezone

    from actions.models import Delivery
    from actions.services import delivery_send

    ids = list(
        Delivery.objects.filter(status__in=("pending", "retrying"), next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    return [delivery_send(delivery_id=i) for i in ids]


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 15.0, beat: bool = True, interval: float = 0.05
) -> bool:
    """Poll ``predicate``; meanwhile play beat (dispatcher + sweeper) if asked."""
    from actions.services import deliveries_dispatch_due, deliveries_sweep

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if beat:
            deliveries_dispatch_due()
            deliveries_sweep()
        time.sleep(interval)
    return predicate()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that shares this test session's database and Redis prefix."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(settings.BASE_DIR),
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
    )
    env.update(extra)
    return env


def start_worker_process(*, queue: str, concurrency: int = 4, **env: str) -> subprocess.Popen:
    """A real ``celery worker`` process (threads pool) on ``queue``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "erc8004",
            "worker",
            "-Q",
            queue,
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        cwd=settings.BASE_DIR,
        env=subprocess_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
