"""actions/tasks.py end to end: the real Celery worker on the real Redis broker, real
worker processes where a process boundary is the point (crash, backpressure drain,
rate limits shared between processes), the tests playing beat."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from actions.models import Delivery
from actions.services import deliveries_dispatch_due, deliveries_sweep
from erc8004.queues import queue_depth
from tests.actions.conftest import make_delivery, start_worker_process, subprocess_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def _all(status: str, n: int) -> bool:
    return Delivery.objects.filter(status=status).count() == n


def test_outbox_rows_are_sent_by_the_worker_after_commit(celery_worker, webhook_destination, webhook_receiver):
    with transaction.atomic():
        deliveries = [make_delivery(webhook_destination, key=f"match:{i}:dest:1") for i in range(5)]
        time.sleep(0.3)
        assert webhook_receiver.requests == []  # nothing leaves before the commit
    assert wait_until(lambda: _all("succeeded", 5), beat=False)
    assert sorted(webhook_receiver.accepted.values()) == [1] * 5
    assert set(webhook_receiver.accepted) == {str(d.uuid) for d in deliveries}


def test_a_rolled_back_transaction_sends_nothing(celery_worker, webhook_destination, webhook_receiver):
    def record_match_then_fail() -> None:
        with transaction.atomic():
            make_delivery(webhook_destination)
            raise RuntimeError("the match was not recorded")

    with pytest.raises(RuntimeError):
        record_match_then_fail()
    time.sleep(0.5)
    assert Delivery.objects.count() == 0
    assert webhook_receiver.requests == []


def test_retries_through_worker_and_beat(celery_worker, webhook_destination, webhook_receiver, fast_ladder):
    webhook_receiver.fail_next(2, 500)
    delivery = make_delivery(webhook_destination)
    assert wait_until(lambda: _all("succeeded", 1))
    assert [r.status for r in webhook_receiver.requests] == [500, 500, 200]
    assert {r.webhook_id for r in webhook_receiver.requests} == {str(delivery.uuid)}


def test_all_three_channels_through_the_worker(
    celery_worker,
    webhook_destination,
    telegram_destination,
    mcp_destination,
    webhook_receiver,
    telegram_api,
    mcp_server,
):
    for destination in (webhook_destination, telegram_destination, mcp_destination):
        make_delivery(destination)
    assert wait_until(lambda: _all("succeeded", 3))
    assert len(webhook_receiver.requests) == len(telegram_api.messages) == len(mcp_server.calls) == 1


def test_rerunning_the_task_does_not_send_twice(celery_worker, webhook_destination, webhook_receiver):
    from actions.tasks import send_delivery

    delivery = make_delivery(webhook_destination)
    assert wait_until(lambda: _all("succeeded", 1), beat=False)
    for _ in range(3):
        send_delivery.delay(delivery.pk)  # duplicate messages, as after a redelivery
    assert send_delivery.apply(args=(delivery.pk,)).get() == "skipped-succeeded"
    time.sleep(0.5)
    assert webhook_receiver.arrivals[str(delivery.uuid)] == 1


def test_backpressure_keeps_rows_in_the_database_and_loses_nothing(webhook_destination, webhook_receiver):
    """The actions queue is capped; everything beyond waits as rows and is sent as it drains."""
    queue = f"actions-bp-{os.getpid()}-{time.monotonic_ns()}"
    limit = 3
    with override_settings(ACTIONS_QUEUE=queue, ACTIONS_QUEUE_LIMIT=limit):
        with transaction.atomic():
            deliveries = [make_delivery(webhook_destination) for _ in range(12)]
        assert queue_depth(queue) == limit  # the fast path stopped at the cap
        assert Delivery.objects.filter(status="pending", dispatched_at__isnull=True).count() == 12 - limit
        assert deliveries_dispatch_due() == 0  # full: nothing more is published…
        assert Delivery.objects.filter(status="pending").count() == 12  # …and nothing is dropped
        worker = start_worker_process(queue=queue, concurrency=2, ACTIONS_QUEUE=queue, ACTIONS_QUEUE_LIMIT=str(limit))
        try:
            peak = 0

            def drained() -> bool:
                nonlocal peak
                peak = max(peak, queue_depth(queue))
                return _all("succeeded", 12)

            assert wait_until(drained, timeout=60), worker.stderr.read1().decode() if worker.poll() else ""
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert peak <= limit
    assert set(webhook_receiver.accepted) == {str(d.uuid) for d in deliveries}
    assert set(webhook_receiver.accepted.values()) == {1}


def test_crashed_sender_is_recovered_with_the_same_idempotency_key(
    webhook_destination, webhook_receiver, unconsumed_queue
):
    """A sender process is killed mid-request; its lease expires; the sweeper retries;
    the receiver sees the same webhook-id / Idempotency-Key both times."""
    delivery = make_delivery(webhook_destination, key="match:77:dest:1")
    webhook_receiver.slow(3)
    sender = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from actions.services import delivery_send; "
            f"delivery_send(delivery_id={delivery.pk})",
        ],
        env=subprocess_env(),
        cwd=settings.BASE_DIR,
    )
    try:
        assert webhook_receiver.wait_for(lambda r: r.arrivals[str(delivery.uuid)] == 1, timeout=30)
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait()
    delivery.refresh_from_db()
    assert delivery.status == "sending"
    assert deliveries_sweep() == 0  # the lease has not run out yet
    webhook_receiver.slow(0)
    Delivery.objects.filter(pk=delivery.pk).update(locked_until=timezone.now() - timedelta(seconds=1))  # time passes
    assert deliveries_sweep() == 1
    from actions.services import delivery_send

    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert webhook_receiver.arrivals[str(delivery.uuid)] == 2
    keys = {(r.webhook_id, r.headers["idempotency-key"]) for r in webhook_receiver.requests}
    assert keys == {(str(delivery.uuid), "match:77:dest:1")}
    assert [a.error[:13] for a in delivery.attempts.order_by("number")] == ["lease expired", ""]


_SENDER = """
import sys, time
import django
django.setup()
from actions.services import delivery_send
pending = [int(x) for x in sys.argv[1:]]
deadline = time.monotonic() + 40
while pending and time.monotonic() < deadline:
    for delivery_id in list(pending):
        if delivery_send(delivery_id=delivery_id) == "succeeded":
            pending.remove(delivery_id)
    time.sleep(0.05)
sys.exit(1 if pending else 0)
"""


def test_telegram_pacing_is_shared_by_two_processes(telegram_destination, telegram_api, unconsumed_queue):
    """Two sender processes, one chat: Redis paces them to one message per second together."""
    ids = [make_delivery(telegram_destination).pk for _ in range(4)]
    senders = [
        subprocess.Popen(
            [sys.executable, "-c", _SENDER, *map(str, part)],
            env=subprocess_env(),
            cwd=settings.BASE_DIR,
        )
        for part in (ids[:2], ids[2:])
    ]
    assert [s.wait(timeout=60) for s in senders] == [0, 0]
    times = sorted(m.at for m in telegram_api.chat(424242))
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Slots are one second apart in Redis time; arrival adds jitter (a process's first
    # request also sets up its HTTP client; the machine may be busy). Without shared
    # pacing each process would pace only itself: pairs ~0 s apart, all within ~1 s.
    assert min(gaps) >= 0.5, gaps
    assert times[-1] - times[0] >= 2.7, gaps
    assert telegram_api.refused == []
    assert Delivery.objects.filter(status="succeeded", attempt_count=1).count() == 4  # pacing spent no attempts
