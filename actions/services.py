"""The delivery engine: destinations, payloads, the outbox and everything around an attempt.

Life of a delivery (docs/actions.md has the diagram)::

    delivery_create ──► pending ──claim──► sending ──► succeeded
                          ▲  ▲               │  └────► retrying ──(due)──► sending …
                          │  └─ not an attempt: rate limit / breaker open / waiting on
                          │     the original of a retraction (row released, rescheduled)
                          │                  └───────► dead ──delivery_replay──► pending
                          └─ delivery_cancel / delivery_retract ──► cancelled

Rules that make it safe:

* **Outbox first.** ``delivery_create`` writes the row in the caller's transaction;
  the Redis message is published only after commit, and only if the ``actions``
  queue has room (``ACTIONS_QUEUE_LIMIT``). Otherwise the row simply waits: the
  dispatcher (beat, every second) publishes due rows up to the queue's free
  capacity — backpressure, never loss — and republishes a row whose message was
  lost after ``ACTIONS_DISPATCH_GRACE_SECONDS``.
* **One sender at a time.** ``delivery_send`` claims the row with a conditional
  UPDATE (waiting, due, same attempt count → sending + lease). Duplicate messages,
  re-run tasks and a racing dispatcher all lose the claim and do nothing. A row
  that already succeeded is never claimed again.
* **Fenced results.** The attempt number is the fencing token: a sender whose lease
  expired (and whose row the sweeper handed to someone else) cannot overwrite the
  newer state; a late *success* still counts if nobody re-claimed the row.
* **Long waits live in rows.** Retry delays (up to hours) are ``next_attempt_at``
  values; no Celery countdown ever outlives the broker's visibility timeout.
* **The breaker sees delivery failures** (not trigger evaluation, unlike the seed):
  consecutive failures open it, the cooldown lets one probe through (half-open), the
  probe's outcome closes or re-opens it. While it is open, rows wait.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from erc8004 import metrics
from erc8004.logs import log_context
from erc8004.models import Organization
from erc8004.queues import queue_depth

from .channels import ChannelResult, channel_module
from .models import (
    SUCCESS_STAMP_SECONDS,
    WAITING_STATUSES,
    Attempt,
    AttemptOutcome,
    BreakerState,
    Channel,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Destination,
)
from .ratelimit import Bucket, bucket_key, rate_reserve

__all__ = (
    "DeliverySpec",
    "RetractOutcome",
    "breaker_reset",
    "deliveries_create",
    "deliveries_dispatch_due",
    "deliveries_send",
    "deliveries_sweep",
    "delivery_cancel",
    "delivery_create",
    "delivery_replay",
    "delivery_retract",
    "delivery_send",
    "destination_create",
    "destination_secret_rotate",
    "destination_secret_set",
    "destination_test",
    "destination_update",
    "payload_build",
    "send_threads_shutdown",
)

logger = logging.getLogger("erc8004.actions.services")

SEND_TASK = "actions.tasks.send_deliveries"

_UNSET: Any = object()


#
# Destinations
#


def destination_create(
    *,
    organization: Organization,
    name: str,
    channel: str,
    config: dict[str, Any],
    secret: str | None = None,
    enabled: bool = True,
    rate_limit_per_minute: int | None = None,
    failure_threshold: int = 5,
    cooldown_seconds: int = 60,
) -> Destination:
    """Validate ``config`` for ``channel`` and create the destination.

    Webhook destinations without a ``secret`` get a generated ``whsec_…`` signing
    secret: read it once from ``destination.secret.reveal()`` to show the user."""
    if channel not in Channel.values:
        raise ValidationError({"channel": f"one of {', '.join(Channel.values)}"})
    module = channel_module(channel)
    if channel == Channel.WEBHOOK and not secret:
        secret = module.webhook_secret_generate()
    clean = module.config_clean(config, secret=secret or None)
    _validate_limits(
        rate_limit_per_minute=rate_limit_per_minute,
        failure_threshold=failure_threshold,
        cooldown_seconds=cooldown_seconds,
    )
    destination = Destination(
        organization=organization,
        name=name.strip(),
        channel=channel,
        config=clean,
        secret=secret or None,
        enabled=enabled,
        rate_limit_per_minute=rate_limit_per_minute,
        failure_threshold=failure_threshold,
        cooldown_seconds=cooldown_seconds,
    )
    if not destination.name:
        raise ValidationError({"name": "required"})
    try:
        with transaction.atomic():
            destination.save()
    except IntegrityError:
        raise ValidationError({"name": "this organization already has a destination with this name"}) from None
    return destination


def destination_update(
    *,
    destination: Destination,
    name: str = _UNSET,
    config: dict[str, Any] = _UNSET,
    enabled: bool = _UNSET,
    rate_limit_per_minute: int | None = _UNSET,
    failure_threshold: int = _UNSET,
    cooldown_seconds: int = _UNSET,
) -> Destination:
    """Change what was given; the channel is fixed (create another destination).
    Already-created deliveries keep their frozen payloads."""
    fields: list[str] = []
    if config is not _UNSET:
        secret = destination.secret.reveal() if destination.secret else None
        destination.config = channel_module(destination.channel).config_clean(config, secret=secret)
        fields.append("config")
    if name is not _UNSET:
        if not name.strip():
            raise ValidationError({"name": "required"})
        destination.name = name.strip()
        fields.append("name")
    if enabled is not _UNSET:
        destination.enabled = bool(enabled)
        fields.append("enabled")
    for field, value in (
        ("rate_limit_per_minute", rate_limit_per_minute),
        ("failure_threshold", failure_threshold),
        ("cooldown_seconds", cooldown_seconds),
    ):
        if value is not _UNSET:
            setattr(destination, field, value)
            fields.append(field)
    _validate_limits(
        rate_limit_per_minute=destination.rate_limit_per_minute,
        failure_threshold=destination.failure_threshold,
        cooldown_seconds=destination.cooldown_seconds,
    )
    if fields:
        try:
            with transaction.atomic():
                destination.save(update_fields=[*fields, "updated_at"])
        except IntegrityError:
            raise ValidationError({"name": "this organization already has a destination with this name"}) from None
    return destination


def _validate_limits(*, rate_limit_per_minute: int | None, failure_threshold: int, cooldown_seconds: int) -> None:
    errors = {}
    if rate_limit_per_minute is not None and not 1 <= rate_limit_per_minute <= 60_000:
        errors["rate_limit_per_minute"] = "between 1 and 60000, or empty for no limit"
    if not 1 <= failure_threshold <= 1000:
        errors["failure_threshold"] = "between 1 and 1000"
    if not 1 <= cooldown_seconds <= 86400:
        errors["cooldown_seconds"] = "between 1 and 86400"
    if errors:
        raise ValidationError(errors)


def destination_secret_set(
    *, destination: Destination, secret: str | None, keep_previous_seconds: int | None = None
) -> Destination:
    """The write path for secrets (they are never read back through the API).

    For webhooks the outgoing key keeps signing, as a second signature, for
    ``keep_previous_seconds`` (default ``ACTIONS_WEBHOOK_SECRET_OVERLAP_SECONDS``) so
    receivers can switch keys without rejecting anything."""
    module = channel_module(destination.channel)
    if destination.channel == Channel.WEBHOOK and not secret:
        raise ValidationError({"secret": "webhook destinations always have a signing secret"})
    module.config_clean(destination.config, secret=secret or None)
    if destination.channel == Channel.WEBHOOK and destination.secret:
        overlap = (
            settings.ACTIONS_WEBHOOK_SECRET_OVERLAP_SECONDS if keep_previous_seconds is None else keep_previous_seconds
        )
        destination.previous_secret = destination.secret if overlap > 0 else None
        destination.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap) if overlap > 0 else None
    destination.secret = secret or None
    destination.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return destination


def destination_secret_rotate(*, destination: Destination, keep_previous_seconds: int | None = None) -> str:
    """Webhooks: generate a new signing secret (returned once, to show the user)."""
    if destination.channel != Channel.WEBHOOK:
        raise ValidationError({"secret": "only webhook secrets are generated; set others with destination_secret_set"})
    from .channels.webhook import webhook_secret_generate

    secret = webhook_secret_generate()
    destination_secret_set(destination=destination, secret=secret, keep_previous_seconds=keep_previous_seconds)
    return secret


def breaker_reset(*, destination_id: int) -> None:
    """Operator override: close the breaker; waiting rows are dispatched on the next tick."""
    updated = Destination.objects.filter(pk=destination_id).exclude(breaker_state=BreakerState.CLOSED)
    channel = Destination.objects.filter(pk=destination_id).values_list("channel", flat=True).first()
    if updated.update(
        breaker_state=BreakerState.CLOSED,
        consecutive_failures=0,
        breaker_opened_at=None,
        breaker_retry_at=None,
        updated_at=timezone.now(),
    ):
        metrics.BREAKER_TRANSITIONS.labels(channel or "?", BreakerState.CLOSED).inc()
    else:
        Destination.objects.filter(pk=destination_id).update(consecutive_failures=0)


#
# Payloads
#


def payload_build(*, destination: Destination, template: Any, context: dict[str, Any]) -> dict[str, Any]:
    """Render what a delivery to ``destination`` will send, and freeze it.

    ``template``: a text template (Telegram) or a JSON template (webhook body, MCP
    arguments; a JSON string or parsed JSON), or empty for the channel's default.
    ``context``: the variables documented in ``actions/templates.py`` — ``event``,
    ``agent``, ``trigger``, ``chain`` (missing ones become ``None``).

    The payload carries ``delivery_id``, the uuid ``delivery_create`` gives the row
    (the webhook-id), so a body can name its own delivery. Build one payload per
    delivery. Raises ``PayloadError`` (``TemplateError``): never retryable.
    """
    delivery_id = str(uuid.uuid4())
    full_context = {"event": None, "agent": None, "trigger": None, "chain": None, **context}
    full_context["delivery_id"] = delivery_id
    return channel_module(destination.channel).payload_build(
        destination=destination, template=template, context=full_context, delivery_id=delivery_id
    )


#
# Deliveries: creation and operator actions
#


def delivery_create(
    *,
    destination: Destination,
    kind: str = DeliveryKind.NOTIFICATION,
    payload: dict[str, Any],
    idempotency_key: str,
    trigger_id: int | None = None,
    match_id: int | None = None,
    event_id: int | None = None,
    event_block_timestamp: datetime | None = None,
    retracts: Delivery | None = None,
) -> Delivery:
    """Create the outbox row (idempotent on ``idempotency_key``) and publish it after commit.

    Safe inside the caller's transaction (e.g. with the ``Match`` row): the insert is
    ``ON CONFLICT DO NOTHING``, so a second call with the same key returns the existing
    row — the first one's payload wins — without aborting the transaction. The send
    is queued only when the outermost transaction commits, and only if the actions
    queue has room; otherwise the dispatcher sends it as the queue drains. For one
    event fanning out to many destinations use ``deliveries_create``.
    """
    spec = DeliverySpec(
        destination=destination,
        kind=kind,
        payload=payload,
        idempotency_key=idempotency_key,
        trigger_id=trigger_id,
        match_id=match_id,
        event_id=event_id,
        event_block_timestamp=event_block_timestamp,
        retracts=retracts,
    )
    return deliveries_create(specs=[spec])[0]


@dataclass(frozen=True)
class DeliverySpec:
    """One delivery to create: the arguments of ``delivery_create``."""

    destination: Destination
    payload: dict[str, Any]
    idempotency_key: str
    kind: str = DeliveryKind.NOTIFICATION
    trigger_id: int | None = None
    match_id: int | None = None
    event_id: int | None = None
    event_block_timestamp: datetime | None = None
    retracts: Delivery | None = None


def deliveries_create(*, specs: Sequence[DeliverySpec]) -> list[Delivery]:
    """``delivery_create`` for many rows at once — one event matching many triggers
    and destinations: one ``INSERT … ON CONFLICT DO NOTHING`` and one ``SELECT`` for
    all of them, and one batch of messages after commit. Returns the rows in the
    order of ``specs`` (the existing row where a key already had one)."""
    now = timezone.now()
    rows: list[Delivery] = []
    for spec in specs:
        _validate_spec(spec)
        rows.append(
            Delivery(
                uuid=_payload_uuid(spec.payload),
                organization_id=spec.destination.organization_id,
                destination=spec.destination,
                kind=spec.kind,
                status=DeliveryStatus.PENDING,
                idempotency_key=spec.idempotency_key,
                payload=spec.payload,
                retracts=spec.retracts,
                trigger_id=spec.trigger_id,
                match_id=spec.match_id,
                event_id=spec.event_id,
                event_block_timestamp=spec.event_block_timestamp,
                next_attempt_at=now,
                dispatched_at=now,  # the fast path below; the dispatcher steps in if it fails
            )
        )
    if not rows:
        return []
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    keys = [row.idempotency_key for row in rows]
    stored: dict[str, Delivery] = {}
    for i in range(0, len(keys), 1000):
        stored.update(
            (d.idempotency_key, d)
            for d in Delivery.objects.select_related("destination").filter(idempotency_key__in=keys[i : i + 1000])
        )
    result: list[Delivery] = []
    created: list[int] = []
    for row in rows:
        existing = stored.get(row.idempotency_key)
        if existing is None:
            raise ValueError(
                f"payload delivery_id {row.uuid} is already used by another delivery; build one payload per delivery"
            )
        if existing.uuid == row.uuid and existing.pk not in created:
            created.append(existing.pk)
            metrics.DELIVERIES.labels(row.destination.channel, "created").inc()
        result.append(existing)
    if created:
        transaction.on_commit(lambda: _publish_after_commit(created))
    return result


def _validate_spec(spec: DeliverySpec) -> None:
    if spec.kind not in DeliveryKind.values:
        raise ValueError(f"unknown delivery kind {spec.kind!r}")
    key = spec.idempotency_key
    if not key or len(key) > 200 or not key.isprintable() or not key.isascii():
        raise ValueError("idempotency_key: 1-200 printable ASCII characters (it is sent as an HTTP header)")
    if not isinstance(spec.payload, dict):
        raise ValueError("payload must be a dict from payload_build")


def _payload_uuid(payload: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(payload.get("delivery_id")))
    except ValueError:
        return uuid.uuid4()


def _batch_size() -> int:
    return max(1, settings.ACTIONS_SEND_BATCH)


def _messages_for(rows: int) -> int:
    return -(-rows // _batch_size())


def _publish(delivery_ids: Sequence[int]) -> None:
    """One message per ACTIONS_SEND_BATCH deliveries, through one producer (one
    connection checkout)."""
    if not delivery_ids:
        return
    size = _batch_size()
    with current_app.producer_or_acquire() as producer:
        for start in range(0, len(delivery_ids), size):
            chunk = list(delivery_ids[start : start + size])
            current_app.send_task(SEND_TASK, args=(chunk,), queue=settings.ACTIONS_QUEUE, producer=producer)


def _publish_after_commit(delivery_ids: list[int]) -> None:
    """The fast path: publish what fits in the queue now; the rest is left to the
    dispatcher (``dispatched_at`` cleared), which publishes as the queue drains."""
    held: list[int]
    try:
        free = max(0, settings.ACTIONS_QUEUE_LIMIT - queue_depth(settings.ACTIONS_QUEUE)) * _batch_size()
        _publish(delivery_ids[:free])
        held = delivery_ids[free:]
    except Exception:
        logger.exception("publishing %s deliveries failed; the dispatcher will pick them up", len(delivery_ids))
        held = delivery_ids
    if held:
        metrics.DELIVERY_BACKPRESSURE.inc()
        Delivery.objects.filter(pk__in=held, status=DeliveryStatus.PENDING).update(dispatched_at=None)


def delivery_cancel(*, delivery_id: int, reason: str = "cancelled") -> bool:
    """Waiting (pending/retrying) → cancelled. False if it is being sent or finished."""
    channel = Delivery.objects.filter(pk=delivery_id).values_list("destination__channel", flat=True).first()
    done = Delivery.objects.filter(pk=delivery_id, status__in=WAITING_STATUSES).update(
        status=DeliveryStatus.CANCELLED, last_error=reason, next_attempt_at=None, updated_at=timezone.now()
    )
    if done:
        metrics.DELIVERIES.labels(channel or "?", "cancelled").inc()
    return bool(done)


def delivery_replay(*, delivery_id: int) -> bool:
    """Dead → pending, with a fresh retry ladder (attempt numbers keep counting)."""
    now = timezone.now()
    channel = Delivery.objects.filter(pk=delivery_id).values_list("destination__channel", flat=True).first()
    done = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.DEAD).update(
        status=DeliveryStatus.PENDING,
        ladder_start=F("attempt_count"),
        next_attempt_at=now,
        dispatched_at=now,
        updated_at=now,
    )
    if done:
        metrics.DELIVERIES.labels(channel or "?", "replayed").inc()
        transaction.on_commit(lambda: _publish_after_commit([delivery_id]))
    return bool(done)


@dataclass(frozen=True)
class RetractOutcome:
    """``cancelled``: the original had never been attempted and will not be sent.
    ``retraction``: a retraction delivery exists (``retraction``) and will be sent once
    the original's outcome is known. ``nothing``: nothing to retract (already cancelled)."""

    outcome: str
    retraction: Delivery | None = None


def delivery_retract(*, delivery_id: int, reason: str = "chain reorganisation") -> RetractOutcome:
    """Take back a notification whose event was removed (reorg).

    * never attempted (pending, attempt 0) → cancelled, nothing is sent;
    * attempted, sending or succeeded → a ``retraction`` delivery to the same
      destination (idempotency key ``retract:<original key>``): webhook body
      ``event.retracted`` naming the original's uuid, a Telegram reply to the
      original message, an MCP call with the retraction arguments. It waits while
      the original is in flight; an original still waiting for a retry is cancelled
      at that point (an earlier attempt may have reached the receiver, so the
      retraction is still sent — except on Telegram, where a message that was
      never accepted has nothing to reply to).

    Idempotent: retracting twice returns the same retraction."""
    with transaction.atomic():
        original = Delivery.objects.select_for_update(of=("self",)).select_related("destination").get(pk=delivery_id)
        if original.kind == DeliveryKind.RETRACTION:
            raise ValueError("a retraction cannot be retracted")
        if original.status == DeliveryStatus.CANCELLED and original.attempt_count == 0:
            return RetractOutcome("nothing")
        if original.status in WAITING_STATUSES and original.attempt_count == 0:
            original.status = DeliveryStatus.CANCELLED
            original.last_error = f"retracted before sending: {reason}"
            original.next_attempt_at = None
            original.save(update_fields=["status", "last_error", "next_attempt_at", "updated_at"])
            metrics.DELIVERIES.labels(original.destination.channel, "cancelled").inc()
            return RetractOutcome("cancelled")
        destination = original.destination
        payload_uuid = str(uuid.uuid4())
        payload = channel_module(destination.channel).retraction_payload(
            destination=destination, original=original, reason=reason, delivery_id=payload_uuid
        )
        retraction = delivery_create(
            destination=destination,
            kind=DeliveryKind.RETRACTION,
            payload=payload,
            idempotency_key=_retraction_key(original.idempotency_key),
            trigger_id=original.trigger_id,
            match_id=original.match_id,
            event_id=original.event_id,
            retracts=original,
        )
    return RetractOutcome("retraction", retraction)


def _retraction_key(key: str) -> str:
    retraction_key = "retract:" + key
    if len(retraction_key) > 200:
        retraction_key = "retract:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return retraction_key


def destination_test(
    *,
    destination: Destination,
    template: Any = None,
    context: dict[str, Any] | None = None,
    trigger_id: int | None = None,
    trigger_name: str = "",
) -> Delivery:
    """Queue a ``test`` delivery with a sample event (the "send a test" button).

    With ``template`` (a trigger action's) and the ``context`` a real match would
    give it (triggers builds one from a sample event), the test sends exactly what
    that action would; ``trigger_id`` files the delivery under the trigger. A
    template that cannot render raises ``PayloadError`` before anything is queued."""
    if context is not None:
        payload = payload_build(destination=destination, template=template or None, context=context)
        return delivery_create(
            destination=destination,
            kind=DeliveryKind.TEST,
            payload=payload,
            idempotency_key=f"test:{destination.pk}:{payload['delivery_id']}",
            trigger_id=trigger_id,
        )
    context = {
        "event": {
            "id": 0,
            "type": "Registered",
            "event_type": "Registered",
            "registry": "identity",
            "chain_id": 1,
            "block_number": 1,
            "block_hash": "0x" + "00" * 32,
            "block_timestamp": timezone.now().isoformat(),
            "transaction_hash": "0x" + "00" * 32,
            "tx_hash": "0x" + "00" * 32,
            "log_index": 0,
            "agent_id": "1",
            "args": {"agentId": 1},
        },
        "agent": {"chain_id": 1, "agent_id": 1, "name": "Test agent (this is a test message)"},
        "trigger": {"id": trigger_id or 0, "name": trigger_name or f"Test of {destination.name}"},
        "chain": {"chain_id": 1, "name": "test"},
    }
    payload = payload_build(destination=destination, template=template or None, context=context)
    return delivery_create(
        destination=destination,
        kind=DeliveryKind.TEST,
        payload=payload,
        idempotency_key=f"test:{destination.pk}:{payload['delivery_id']}",
        trigger_id=trigger_id,
    )


#
# Sending
#


def _lease_seconds(destination: Destination) -> float:
    timeout = float(destination.config.get("timeout") or settings.ACTIONS_DEFAULT_TIMEOUT)
    return timeout + settings.ACTIONS_RATE_LIMIT_MAX_WAIT + settings.ACTIONS_LEASE_MARGIN_SECONDS


def _destination_bucket(destination: Destination) -> Bucket | None:
    """A destination's own pacing bucket, when it has a rate limit. Without one there
    is no bucket to ask (a Redis round trip per send saved); a receiver's Retry-After
    is kept on the row (``blocked_until``) instead."""
    per_minute = destination.rate_limit_per_minute
    if per_minute:
        return Bucket(bucket_key("dest", str(destination.pk)), per_second=per_minute / 60.0)
    return None


_send_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_send_pool_lock = threading.Lock()


def _send_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The process's send threads (created after a fork)."""
    global _send_pool
    with _send_pool_lock:
        if _send_pool is None or _send_pool[0] != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(settings.ACTIONS_SEND_THREADS, thread_name_prefix="send")
            _send_pool = (os.getpid(), pool)
        return _send_pool[1]


def send_threads_shutdown() -> None:
    """Stop this process's send threads (their database connections close as the
    threads' locals are collected): for a worker's shutdown and the test suite."""
    global _send_pool
    with _send_pool_lock:
        pool, _send_pool = _send_pool, None
    if pool is not None:
        pool[1].shutdown(wait=True)


def _delivery_send_on_thread(delivery_id: int) -> str:
    """``delivery_send`` on a send thread: that thread's database connection is
    checked like a Celery task's (CONN_MAX_AGE, errors) before and after."""
    close_old_connections()
    try:
        return delivery_send(delivery_id=delivery_id)
    except Exception:  # the row stays "sending"; the sweeper recovers it after its lease
        logger.exception("sending delivery %s crashed", delivery_id)
        return "crashed"
    finally:
        close_old_connections()


def deliveries_send(*, delivery_ids: Sequence[int]) -> dict[str, int]:
    """Send several deliveries at once (one ``send_deliveries`` message): each is
    claimed, sent and recorded on its own (``delivery_send``), concurrently, so one
    slow receiver delays none of the others. Returns outcome → count."""
    if len(delivery_ids) == 1:
        return {delivery_send(delivery_id=delivery_ids[0]): 1}
    pool = _send_threads()
    futures = [pool.submit(_delivery_send_on_thread, delivery_id) for delivery_id in delivery_ids]
    return dict(Counter(future.result() for future in futures))


def delivery_send(*, delivery_id: int) -> str:
    """Attempt one delivery if it is waiting and due; returns what happened
    (``succeeded``, ``retrying``, ``dead``, or why nothing was sent). Every log line
    written meanwhile carries the delivery's id and those of its trigger and event."""
    delivery = Delivery.objects.select_related("destination").filter(pk=delivery_id).first()
    if delivery is None:
        return "missing"
    with log_context(
        delivery=str(delivery.uuid),
        delivery_id=delivery.pk,
        destination_id=delivery.destination_id,
        channel=delivery.destination.channel,
        trigger_id=delivery.trigger_id,
        event_id=delivery.event_id,
    ):
        return _delivery_send(delivery)


def _delivery_send(delivery: Delivery) -> str:
    now = timezone.now()
    delivery_id = delivery.pk
    if delivery.status not in WAITING_STATUSES:
        return f"skipped-{delivery.status}"
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        return "skipped-not-due"
    destination = delivery.destination
    previous_status = delivery.status
    attempt_no = delivery.attempt_count + 1
    # The claim: only one sender moves the row from what it read to "sending".
    claimed = Delivery.objects.filter(
        pk=delivery_id, status=previous_status, attempt_count=delivery.attempt_count
    ).update(
        status=DeliveryStatus.SENDING,
        attempt_count=attempt_no,
        locked_until=now + timedelta(seconds=_lease_seconds(destination)),
        updated_at=now,
    )
    if not claimed:
        return "skipped-claimed-elsewhere"
    delivery.status, delivery.attempt_count = DeliveryStatus.SENDING, attempt_no

    def release(when: datetime, why: str) -> str:
        """Give the row back without spending an attempt."""
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.SENDING, attempt_count=attempt_no).update(
            status=previous_status,
            attempt_count=attempt_no - 1,
            locked_until=None,
            next_attempt_at=when,
            dispatched_at=None,
            updated_at=timezone.now(),
        )
        return why

    if not destination.enabled:
        return release(now, "destination-disabled")

    if delivery.kind == DeliveryKind.RETRACTION:
        verdict = _retraction_gate(delivery)
        if verdict == "wait":
            return release(now + timedelta(seconds=2), "retraction-waits-for-original")
        if verdict == "cancel":
            Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.SENDING, attempt_count=attempt_no).update(
                status=DeliveryStatus.CANCELLED,
                attempt_count=attempt_no - 1,
                locked_until=None,
                next_attempt_at=None,
                last_error="nothing to retract: the original never reached the receiver",
            )
            metrics.DELIVERIES.labels(destination.channel, "cancelled").inc()
            return "cancelled"

    if destination.blocked_until and destination.blocked_until > now:
        metrics.DELIVERY_RATE_LIMITED.labels(destination.channel, "receiver").inc()
        return release(destination.blocked_until, "rate-limited")
    module = channel_module(destination.channel)
    own = _destination_bucket(destination)
    buckets = [*module.rate_buckets(delivery=delivery, destination=destination), *([own] if own else [])]
    max_wait = settings.ACTIONS_RATE_LIMIT_MAX_WAIT
    try:
        reserved, wait = rate_reserve(buckets, max_wait=max_wait)
    except Exception:
        logger.exception("rate limiter unavailable; delivery %s rescheduled", delivery_id)
        return release(now + timedelta(seconds=1), "rate-limiter-unavailable")
    if not reserved:
        metrics.DELIVERY_RATE_LIMITED.labels(destination.channel, "pacing").inc()
        return release(now + timedelta(seconds=max(0.2, wait - max_wait / 2)), "rate-limited")

    if not _breaker_admit(destination, now):
        # Due now, held back by the dispatcher's gate on the destination's
        # breaker_retry_at instead: the row goes out on the first tick after the breaker
        # lets sends through — the cooldown's end, a probe's success (retry_at cleared),
        # or breaker_reset — not at a time copied from the breaker (a half-open breaker's
        # retry_at is the probe's lease, ~40 s, which the rows used to wait out after a
        # successful probe had already closed it).
        return release(now, "breaker-open")

    if wait > 0:
        time.sleep(wait)
    started = timezone.now()
    t0 = time.monotonic()
    try:
        result = module.send(delivery=delivery, destination=destination)
    except Exception as exc:  # a bug of ours must not lose the row: retry, and say so
        logger.exception("channel %s crashed on delivery %s", destination.channel, delivery_id)
        result = ChannelResult(ok=False, retryable=True, error=f"internal error: {type(exc).__name__}: {exc}")
    duration_ms = int((time.monotonic() - t0) * 1000)
    return _record(
        delivery=delivery,
        destination=destination,
        attempt_no=attempt_no,
        result=result,
        started=started,
        duration_ms=duration_ms,
    )


def _retraction_gate(retraction: Delivery) -> str:
    """``send``, ``wait`` (original in flight) or ``cancel`` (nothing reached the receiver)."""
    original = retraction.retracts
    if original is None:
        return "cancel"
    if original.status == DeliveryStatus.SENDING:
        return "wait"
    if original.status in WAITING_STATUSES:
        # It failed at least once and waits for a retry: stop it here.
        if not Delivery.objects.filter(pk=original.pk, status__in=WAITING_STATUSES).update(
            status=DeliveryStatus.CANCELLED, last_error="retracted", next_attempt_at=None
        ):
            return "wait"
        original.refresh_from_db()
    if original.attempt_count == 0:
        return "cancel"
    if retraction.destination.channel == Channel.TELEGRAM and not (original.response_data or {}).get("message_id"):
        return "cancel"
    return "send"


def _breaker_admit(destination: Destination, now: datetime) -> bool:
    """Closed: yes. Open past its cooldown, or half-open with a lost probe: the one
    sender that wins the conditional UPDATE becomes the probe. Otherwise no."""
    state, retry_at = destination.breaker_state, destination.breaker_retry_at
    if state == BreakerState.CLOSED:
        return True
    if retry_at is None or retry_at > now:
        return False
    probe_until = now + timedelta(seconds=_lease_seconds(destination))
    won = Destination.objects.filter(pk=destination.pk, breaker_state=state, breaker_retry_at=retry_at).update(
        breaker_state=BreakerState.HALF_OPEN, breaker_retry_at=probe_until
    )
    if won and state == BreakerState.OPEN:
        metrics.BREAKER_TRANSITIONS.labels(destination.channel, BreakerState.HALF_OPEN).inc()
    return bool(won)


def _next_delay(*, attempt_in_ladder: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt, or None when the ladder is exhausted."""
    ladder = settings.ACTIONS_RETRY_LADDER
    if attempt_in_ladder > len(ladder):
        return None
    delay = ladder[attempt_in_ladder - 1] * random.uniform(0.8, 1.2)
    if retry_after:
        delay = max(delay, min(float(retry_after), settings.ACTIONS_RETRY_AFTER_MAX))
    return delay


def _record(
    *,
    delivery: Delivery,
    destination: Destination,
    attempt_no: int,
    result: ChannelResult,
    started: datetime,
    duration_ms: int,
) -> str:
    now = timezone.now()
    channel = destination.channel
    metrics.DELIVERY_ATTEMPTS.labels(channel, "success" if result.ok else "failure").inc()
    attempt_fields = {
        "started_at": started,
        "duration_ms": duration_ms,
        "outcome": AttemptOutcome.SUCCESS if result.ok else AttemptOutcome.FAILURE,
        "retryable": result.retryable,
        "response_code": result.status_code,
        "response_excerpt": (result.response_excerpt or "")[:1000],
        "error": result.error[:4000],
    }
    try:
        if result.ok and connection.vendor == "postgresql" and not connection.in_atomic_block:
            # The common case in one statement (no BEGIN/COMMIT round trips): the hot
            # path of every fan-out. Same effects as the transaction below. (Inside a
            # caller's transaction the savepoint below keeps a failure from breaking it.)
            updated = _success_record_fused(delivery, attempt_no, attempt_fields, result, now)
            outcome = _record_success(delivery, destination, attempt_no, result, now, updated=updated)
            return _record_logged(delivery, destination, attempt_no, result, now, outcome)
        with transaction.atomic():
            # One INSERT … ON CONFLICT: the sweeper may have written this attempt as "sender lost".
            Attempt.objects.bulk_create(
                [Attempt(delivery=delivery, number=attempt_no, **attempt_fields)],
                update_conflicts=True,
                unique_fields=("delivery", "number"),
                update_fields=tuple(attempt_fields),
            )
            if result.ok:
                outcome = _record_success(delivery, destination, attempt_no, result, now)
            else:
                outcome = _record_failure(delivery, destination, attempt_no, result, now)
    except IntegrityError:
        # The row was deleted while we were sending (its organization was deleted).
        logger.warning("delivery %s disappeared during its attempt; nothing recorded", delivery.uuid)
        return "missing"
    return _record_logged(delivery, destination, attempt_no, result, now, outcome)


def _record_logged(
    delivery: Delivery, destination: Destination, attempt_no: int, result: ChannelResult, now: datetime, outcome: str
) -> str:
    channel = destination.channel
    if result.retry_after:
        until = now + timedelta(seconds=min(result.retry_after, settings.ACTIONS_RETRY_AFTER_MAX))
        Destination.objects.filter(pk=destination.pk).filter(
            Q(blocked_until__isnull=True) | Q(blocked_until__lt=until)
        ).update(blocked_until=until)
    log = logger.debug if result.ok else logger.warning  # successes are counted in metrics, not logged one by one
    log(
        "delivery %s attempt %s to %s #%s: %s%s",
        delivery.uuid,
        attempt_no,
        channel,
        destination.pk,
        outcome,
        f" ({result.error})" if result.error else "",
    )
    return outcome


def _success_record_fused(
    delivery: Delivery, attempt_no: int, attempt_fields: dict[str, Any], result: ChannelResult, now: datetime
) -> int:
    """The attempt row (upserted: the sweeper may have written it as "sender lost")
    and the delivery's success (fenced by the attempt number; a late success still
    counts if the row was swept but not yet re-claimed) in one PostgreSQL statement,
    atomic by itself. Returns how many delivery rows it moved (0 or 1)."""
    attempt_table, delivery_table = Attempt._meta.db_table, Delivery._meta.db_table
    names = tuple(attempt_fields)  # the same fields the transaction path writes
    columns = ", ".join(names)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names)
    sql = f"""
        WITH attempt AS (
            INSERT INTO {attempt_table} (delivery_id, number, {columns})
            VALUES (%s, %s, {", ".join(["%s"] * len(names))})
            ON CONFLICT (delivery_id, number) DO UPDATE SET {updates}
            RETURNING 1
        ), done AS (
            UPDATE {delivery_table}
            SET status = %s, sent_at = %s, locked_until = NULL, next_attempt_at = NULL,
                dispatched_at = NULL, last_error = '', response_data = %s::jsonb, updated_at = %s
            WHERE id = %s AND attempt_count = %s AND status IN (%s, %s)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM attempt)
    """  # noqa: S608 (table and column names are the models' own, values are parameters)
    params = [
        delivery.pk,
        attempt_no,
        *(attempt_fields[name] for name in names),
        DeliveryStatus.SUCCEEDED,
        now,
        json.dumps(result.response_data or {}),
        now,
        delivery.pk,
        attempt_no,
        DeliveryStatus.SENDING,
        DeliveryStatus.RETRYING,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        done, _ = cursor.fetchone()
    return int(done)


def _record_success(
    delivery: Delivery,
    destination: Destination,
    attempt_no: int,
    result: ChannelResult,
    now: datetime,
    *,
    updated: int | None = None,
) -> str:
    """The delivery's success (unless ``updated`` says it was already written) and
    what follows for its destination and the metrics."""
    if updated is None:
        # A late success still counts if the row was swept but not yet re-claimed.
        updated = Delivery.objects.filter(
            pk=delivery.pk,
            attempt_count=attempt_no,
            status__in=(DeliveryStatus.SENDING, DeliveryStatus.RETRYING),
        ).update(
            status=DeliveryStatus.SUCCEEDED,
            sent_at=now,
            locked_until=None,
            next_attempt_at=None,
            dispatched_at=None,
            last_error="",
            response_data=result.response_data,
            updated_at=now,
        )
    # Reset the failure streak; the WHERE keeps this from writing (and locking) the
    # destination row on every success of a busy destination — and when the row read
    # with the delivery shows nothing to change, the statement is not even sent.
    stamp_due = now - timedelta(seconds=SUCCESS_STAMP_SECONDS)
    if (
        destination.consecutive_failures
        or destination.last_success_at is None
        or destination.last_success_at < stamp_due
    ):
        Destination.objects.filter(
            Q(consecutive_failures__gt=0) | Q(last_success_at__isnull=True) | Q(last_success_at__lt=stamp_due),
            pk=destination.pk,
        ).update(consecutive_failures=0, last_success_at=now)
    # Closed as far as we saw: skip the query (a success never opens it).
    if destination.breaker_state != BreakerState.CLOSED and (
        Destination.objects.filter(pk=destination.pk)
        .exclude(breaker_state=BreakerState.CLOSED)
        .update(breaker_state=BreakerState.CLOSED, breaker_opened_at=None, breaker_retry_at=None)
    ):
        metrics.BREAKER_TRANSITIONS.labels(destination.channel, BreakerState.CLOSED).inc()
    if not updated:
        return "succeeded-stale"
    metrics.DELIVERIES.labels(destination.channel, "succeeded").inc()
    if delivery.event_block_timestamp and delivery.kind == DeliveryKind.NOTIFICATION:
        metrics.DELIVERY_LATENCY.labels(destination.channel).observe(
            max(0.0, (now - delivery.event_block_timestamp).total_seconds())
        )
    return "succeeded"


def _record_failure(
    delivery: Delivery, destination: Destination, attempt_no: int, result: ChannelResult, now: datetime
) -> str:
    delay = (
        _next_delay(attempt_in_ladder=attempt_no - delivery.ladder_start, retry_after=result.retry_after)
        if result.retryable
        else None
    )
    if delay is None:
        status = DeliveryStatus.DEAD
        reason = "exhausted" if result.retryable else "permanent"
        fields: dict[str, Any] = {"next_attempt_at": None}
    else:
        status = DeliveryStatus.RETRYING
        fields = {"next_attempt_at": now + timedelta(seconds=delay)}
    updated = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempt_count=attempt_no).update(
        status=status,
        locked_until=None,
        dispatched_at=None,
        last_error=result.error[:4000],
        updated_at=now,
        **fields,
    )
    counters: dict[str, Any] = {
        "failure_count": F("failure_count") + 1,
        "last_failure_at": now,
        "last_error": result.error[:1000],
    }
    if result.counts_for_breaker:
        counters["consecutive_failures"] = F("consecutive_failures") + 1
    Destination.objects.filter(pk=destination.pk).update(**counters)
    if result.counts_for_breaker:
        _breaker_on_failure(destination, now)
    if not updated:
        return "failed-stale"
    metrics.DELIVERIES.labels(destination.channel, status).inc()
    if status == DeliveryStatus.DEAD:
        metrics.DELIVERY_DEAD_LETTERS.labels(destination.channel, reason).inc()
    return str(status)


def _breaker_on_failure(destination: Destination, now: datetime) -> None:
    reopen_at = now + timedelta(seconds=destination.cooldown_seconds)
    opened = Destination.objects.filter(
        Q(breaker_state=BreakerState.HALF_OPEN)
        | Q(breaker_state=BreakerState.CLOSED, consecutive_failures__gte=F("failure_threshold")),
        pk=destination.pk,
    ).update(breaker_state=BreakerState.OPEN, breaker_opened_at=now, breaker_retry_at=reopen_at)
    if opened:
        metrics.BREAKER_TRANSITIONS.labels(destination.channel, BreakerState.OPEN).inc()
        logger.warning("breaker of destination %s opened until %s", destination.pk, reopen_at.isoformat())


#
# Beat: dispatcher and sweeper
#


def deliveries_dispatch_due(*, now: datetime | None = None) -> int:
    """Publish due waiting rows, up to the actions queue's free capacity.

    Rows whose destination is disabled or whose breaker is not letting sends
    through are left alone (they are not due for *this* destination yet). Runs
    every ``ACTIONS_DISPATCH_INTERVAL``; overlapping runs are safe (skip-locked rows,
    ``dispatched_at`` marks what was published)."""
    now = now or timezone.now()
    free = settings.ACTIONS_QUEUE_LIMIT - queue_depth(settings.ACTIONS_QUEUE)
    stale = now - timedelta(seconds=settings.ACTIONS_DISPATCH_GRACE_SECONDS)
    published = 0
    while free > 0:
        batch = min(free * _batch_size(), settings.ACTIONS_DISPATCH_BATCH)
        with transaction.atomic():
            ids = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(status__in=WAITING_STATUSES, next_attempt_at__lte=now, destination__enabled=True)
                .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=stale))
                .filter(Q(destination__breaker_retry_at__isnull=True) | Q(destination__breaker_retry_at__lte=now))
                .order_by("next_attempt_at", "id")
                .values_list("id", flat=True)[:batch]
            )
            if ids:
                Delivery.objects.filter(pk__in=ids).update(dispatched_at=now)
        _publish(ids)
        published += len(ids)
        free -= _messages_for(len(ids))
        if len(ids) < batch:
            return published
    if _due_rows_exist(now=now, stale=stale):
        metrics.DELIVERY_BACKPRESSURE.inc()
    return published


def _due_rows_exist(*, now: datetime, stale: datetime) -> bool:
    return (
        Delivery.objects.filter(status__in=WAITING_STATUSES, next_attempt_at__lte=now, destination__enabled=True)
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=stale))
        .exists()
    )


def deliveries_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Rows whose sending lease ran out: the sender crashed (or was killed) mid-attempt.

    The attempt is recorded as a retryable failure ("sender lost") and the row is
    retried at once — or dead-lettered if that was its last rung — so a delivery
    that crashes its sender every time cannot loop forever. The receiver may have
    received the lost attempt: the retry carries the same webhook-id /
    Idempotency-Key, which is what receivers deduplicate on."""
    now = now or timezone.now()
    expired = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, locked_until__lt=now)
        .select_related("destination")
        .order_by("locked_until")[:limit]
    )
    recovered = 0
    for delivery in expired:
        in_ladder = delivery.attempt_count - delivery.ladder_start
        status = DeliveryStatus.RETRYING if in_ladder <= len(settings.ACTIONS_RETRY_LADDER) else DeliveryStatus.DEAD
        error = "lease expired: the sender was lost mid-attempt (crash or kill); the receiver may have it"
        with transaction.atomic():
            updated = Delivery.objects.filter(
                pk=delivery.pk,
                status=DeliveryStatus.SENDING,
                attempt_count=delivery.attempt_count,
                locked_until__lt=now,
            ).update(
                status=status,
                locked_until=None,
                next_attempt_at=now if status == DeliveryStatus.RETRYING else None,
                dispatched_at=None,
                last_error=error,
                updated_at=now,
            )
            if not updated:
                continue
            Attempt.objects.get_or_create(
                delivery=delivery,
                number=delivery.attempt_count,
                defaults={
                    "started_at": delivery.updated_at,
                    "outcome": AttemptOutcome.FAILURE,
                    "retryable": True,
                    "error": error,
                },
            )
        recovered += 1
        metrics.DELIVERIES.labels(delivery.destination.channel, status).inc()
        if status == DeliveryStatus.DEAD:
            metrics.DELIVERY_DEAD_LETTERS.labels(delivery.destination.channel, "exhausted").inc()
        logger.warning("delivery %s: %s → %s", delivery.uuid, error, status)
    return recovered
