"""Destinations, the delivery outbox and its attempts.

A ``Destination`` is where things are sent (a Telegram chat, a webhook endpoint, an
MCP server): reusable by many triggers, owning its secret, circuit breaker and
optional rate limit. A ``Delivery`` is one thing to send there, written to
PostgreSQL *before* any Redis message exists (the outbox): its payload is frozen,
so every retry sends the same bytes under the same idempotency key. Each try is an
``Attempt``.

Deliveries point at triggers, matches and events with plain integers, not foreign
keys: ``actions`` is on floor 2 and never imports ``triggers`` (DESIGN.md).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from erc8004.crypto import EncryptedTextField, secret_hint
from erc8004.models import Organization

__all__ = ("Attempt", "BreakerState", "Channel", "Delivery", "DeliveryKind", "DeliveryStatus", "Destination")


class Channel(models.TextChoices):
    TELEGRAM = "telegram", "Telegram"
    WEBHOOK = "webhook", "Webhook"
    MCP = "mcp", "MCP"


class BreakerState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half_open", "Half-open"


SUCCESS_STAMP_SECONDS = 5


class Destination(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="destinations")
    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings, validated per channel")
    # Telegram: bot token (else settings.TELEGRAM_BOT_TOKEN); webhook: Standard Webhooks
    # signing secret (whsec_…); MCP: optional bearer token.
    secret = EncryptedTextField()
    # Webhook key rotation: the previous key keeps signing until it expires.
    previous_secret = EncryptedTextField()
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True, help_text="Disabled: deliveries wait (nothing is lost)")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Optional pacing for this destination (evenly spaced sends)"
    )

    # Circuit breaker: consecutive delivery failures open it; after the cooldown one
    # probe is let through (half-open); its success closes it, its failure re-opens it.
    breaker_state = models.CharField(max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    # When the breaker next lets a send through: open → opened_at + cooldown; half-open →
    # when the probe is presumed lost. Null while closed. The dispatcher filters on it.
    breaker_retry_at = models.DateTimeField(null=True, blank=True)
    # A receiver's Retry-After: no send before this (every worker reads it with the
    # delivery, so honouring it costs no extra round trip).
    blocked_until = models.DateTimeField(null=True, blank=True)
    failure_threshold = models.PositiveIntegerField(default=5)
    cooldown_seconds = models.PositiveIntegerField(default=60)

    # Health, for the admin and the API. Failures are counted; successes are counted by
    # the metrics and the deliveries themselves — a counter written on every success
    # would make this row a hot spot all workers queue on — and last_success_at is
    # refreshed at most every SUCCESS_STAMP_SECONDS.
    failure_count = models.PositiveBigIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("organization_id", "name")
        constraints = [models.UniqueConstraint(fields=("organization", "name"), name="destination_unique_org_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"

    @property
    def secret_hint(self) -> str:
        return secret_hint(self.secret.reveal()) if self.secret else ""


class DeliveryKind(models.TextChoices):
    NOTIFICATION = "notification", "Notification"
    RETRACTION = "retraction", "Retraction"
    TEST = "test", "Test"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    RETRYING = "retrying", "Retrying"
    DEAD = "dead", "Dead"
    CANCELLED = "cancelled", "Cancelled"


WAITING_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
FINAL_STATUSES = (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD, DeliveryStatus.CANCELLED)


class Delivery(models.Model):
    # Public id; the Standard Webhooks `webhook-id`, stable across retries.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="deliveries")
    # Deleting a destination deletes its outbox and history: disable it to keep them.
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=12, choices=DeliveryKind.choices, default=DeliveryKind.NOTIFICATION)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # Built by the caller, e.g. "match:<match id>:dest:<destination id>": the database
    # refuses a second delivery for the same thing.
    idempotency_key = models.CharField(max_length=200, unique=True)
    # Exactly what will be sent (see actions/templates.py and docs/actions.md).
    payload = models.JSONField()
    retracts = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retractions")
    # Upward references as plain integers (no FK to triggers; see module docstring).
    trigger_id = models.BigIntegerField(null=True, blank=True)
    match_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    event_id = models.BigIntegerField(null=True, blank=True)
    event_block_timestamp = models.DateTimeField(null=True, blank=True)

    # Attempts made, and the attempt count when the current retry ladder started (0,
    # or the count at the last replay): the ladder step is their difference.
    attempt_count = models.PositiveIntegerField(default=0)
    ladder_start = models.PositiveIntegerField(default=0)
    # Not attempted before this (retry ladder, Retry-After, rate limit, breaker).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a Redis message for it was last published. The dispatcher publishes again
    # only after ACTIONS_DISPATCH_GRACE_SECONDS: then the message is presumed lost.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Sending lease: a sender holds the row until then; past it the sweeper presumes it crashed.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    response_data = models.JSONField(default=dict, blank=True)  # e.g. Telegram message_id

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "deliveries"
        indexes = [
            # The dispatcher's (status, next_attempt_at): due rows among the waiting ones
            # only — a partial index stays small however long the history grows.
            models.Index(
                fields=("next_attempt_at",),
                condition=Q(status__in=("pending", "retrying")),
                name="delivery_due_idx",
            ),
            # The sweeper: leases of rows being sent.
            models.Index(fields=("locked_until",), condition=Q(status="sending"), name="delivery_lease_idx"),
            # Dead letters: counted at every metrics scrape and listed for replay; a few
            # rows among millions of succeeded ones.
            models.Index(fields=("destination",), condition=Q(status="dead"), name="delivery_dead_idx"),
            models.Index(fields=("organization", "-created_at"), name="delivery_org_created_idx"),
            models.Index(fields=("destination", "-created_at"), name="delivery_dest_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.uuid} → {self.destination_id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices)
    retryable = models.BooleanField(default=False)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=1000, blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("delivery_id", "number")
        constraints = [models.UniqueConstraint(fields=("delivery", "number"), name="attempt_unique_delivery_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.outcome}"
