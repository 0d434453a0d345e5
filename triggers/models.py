"""Triggers: what to watch (chains, event types, conditions), what to do (actions =
links to destinations with their message templates) and how often (policy).

Exactly-once evaluation rests on two database facts, not on Python checks:

* ``EventEvaluation`` has one row per evaluated event, inserted in the same
  transaction as that event's matches, state changes and deliveries — a second
  evaluation of the event finds the row and does nothing;
* ``Match`` is unique per (trigger, event), and each delivery's idempotency key is
  derived from (match, destination), unique in the outbox.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from actions.models import Delivery, Destination
from erc8004.models import Organization
from indexing.models import AGENT_ID_FIELD_KWARGS, ChainEvent

__all__ = (
    "EventEvaluation",
    "Match",
    "PendingConfirmation",
    "Trigger",
    "TriggerAction",
    "TriggerKey",
    "TriggerState",
)


class Trigger(models.Model):
    class Confirmation(models.TextChoices):
        INSTANT = "instant", "Fire at once; retract if a reorg removes the event"
        CONFIRMED = "confirmed", "Fire only after the event has N confirmations"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="", max_length=2000)
    enabled = models.BooleanField(default=True)
    chain_ids = models.JSONField(default=list, blank=True, help_text="Chain ids to watch; empty = every chain")
    registries = models.JSONField(default=list, blank=True, help_text="identity/reputation/validation; empty = all")
    event_types = models.JSONField(default=list, blank=True, help_text="Event names; empty = all")
    conditions = models.JSONField(default=dict, blank=True, help_text="Condition tree (triggers/conditions.py)")
    # Notification policy.
    cooldown_seconds = models.PositiveIntegerField(default=0, help_text="Minimum time between two fires")
    max_fires = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many fires ...")
    max_fires_window_seconds = models.PositiveIntegerField(default=3600, help_text="... in this window")
    fire_on_backfill = models.BooleanField(
        default=False, help_text="Also fire for events indexed long after they happened (history)"
    )
    confirmation_mode = models.CharField(max_length=10, choices=Confirmation.choices, default=Confirmation.INSTANT)
    confirmations = models.PositiveIntegerField(default=0, help_text="For confirmed mode: blocks after the event")
    # Bookkeeping (updated under the trigger's row lock when it fires).
    fire_count = models.PositiveBigIntegerField(default=0)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    recent_fires = models.JSONField(default=list, blank=True, help_text="Fire times within the max-fires window")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("organization", "enabled"), name="trigger_org_enabled")]

    def __str__(self) -> str:
        return self.name


class TriggerAction(models.Model):
    """A trigger's link to a destination, carrying the message template for it."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="actions")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="trigger_actions")
    template = models.TextField(
        blank=True, default="", max_length=8000, help_text="Message (Telegram), JSON body (webhook) or arguments (MCP)"
    )
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("trigger_id", "position", "id")

    def __str__(self) -> str:
        return f"{self.trigger_id} → {self.destination_id}"


class TriggerKey(models.Model):
    """The candidate index: which triggers can match an event of (chain, type, agent).

    NULL means "any". Rebuilt from a trigger whenever it is saved; evaluation finds
    candidates with one indexed query per batch instead of scanning every trigger.
    """

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="keys")
    chain_id = models.PositiveBigIntegerField(null=True, blank=True)
    event_type = models.CharField(max_length=40, null=True, blank=True)
    agent_id = models.DecimalField(null=True, blank=True, **AGENT_ID_FIELD_KWARGS)

    class Meta:
        indexes = [models.Index(fields=("chain_id", "event_type", "agent_id"), name="triggerkey_lookup")]

    def __str__(self) -> str:
        return f"{self.trigger_id}: {self.chain_id}/{self.event_type}/{self.agent_id}"


class TriggerState(models.Model):
    """State of one stateful condition (EMA, rate) in one scope (an agent, or the
    whole trigger). Read and written under ``SELECT … FOR UPDATE``."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="states")
    key = models.CharField(max_length=255, help_text="condition path | scope")
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("trigger", "key"), name="triggerstate_unique")]

    def __str__(self) -> str:
        return f"{self.trigger_id}:{self.key}"


class EventEvaluation(models.Model):
    """Marks an event as evaluated (or its removal as handled): the exactly-once key."""

    class Phase(models.TextChoices):
        INDEXED = "indexed", "Evaluated"
        REMOVED = "removed", "Removal handled"

    # The unique (event, phase) key is the index.
    event = models.ForeignKey(ChainEvent, on_delete=models.CASCADE, related_name="+", db_index=False)
    phase = models.CharField(max_length=8, choices=Phase.choices)
    matches = models.PositiveIntegerField(default=0)
    evaluated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("event", "phase"), name="eventevaluation_unique")]

    def __str__(self) -> str:
        return f"{self.event_id}/{self.phase}"


class Match(models.Model):
    class Status(models.TextChoices):
        FIRED = "fired", "Fired"
        SUPPRESSED = "suppressed", "Suppressed by cooldown or max fires"
        RETRACTED = "retracted", "Retracted (event removed by a reorg)"

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="matches")
    event = models.ForeignKey(ChainEvent, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FIRED)
    reason = models.CharField(max_length=200, blank=True, default="")
    deliveries = models.ManyToManyField(Delivery, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    retracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.UniqueConstraint(fields=("trigger", "event"), name="match_unique_trigger_event")]
        indexes = [models.Index(fields=("event",), name="match_event", condition=~Q(status="retracted"))]

    def __str__(self) -> str:
        return f"match {self.trigger_id}/{self.event_id}"


class PendingConfirmation(models.Model):
    """An event waiting for a confirmed-mode trigger's confirmations."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(ChainEvent, on_delete=models.CASCADE, related_name="+")
    due_block = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("trigger", "event"), name="pendingconfirmation_unique")]
        indexes = [models.Index(fields=("due_block",), name="pendingconfirmation_due")]

    def __str__(self) -> str:
        return f"{self.trigger_id}/{self.event_id} at {self.due_block}"
