"""Serializers of the trigger management API.

Input serializers check the *shape* of a request (types, ranges); what the values
mean (conditions, filters, destinations, templates) is checked by
``triggers.services`` — the one validation path shared with the admin.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from actions.models import Channel

from ..conditions import EVENT_TYPES
from ..models import Trigger, TriggerAction

MAX_CHAIN_IDS = 20
MAX_ACTIONS = 20
_INT32 = 2**31 - 1


class IndexedListSerializer(serializers.ListSerializer):
    """A list whose item errors are keyed by index — ``{"1": {"destination": [...]}}`` —
    instead of DRF's positional list padded with ``{}`` for valid items."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise serializers.ValidationError("expected a list of items")
        if len(data) > MAX_ACTIONS:
            raise serializers.ValidationError(f"at most {MAX_ACTIONS} items")
        values, errors = [], {}
        for index, item in enumerate(data):
            try:
                values.append(self.child.run_validation(item))
            except serializers.ValidationError as exc:
                errors[str(index)] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return values


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}, {"type": "array", "items": {}}]}
)
class TemplateField(serializers.Field):
    """A message template: text (Telegram), or a JSON document (webhook body, MCP
    arguments) given as JSON or as a JSON string. Stored as text."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, dict | list):
            return json.dumps(data, ensure_ascii=False)
        raise serializers.ValidationError("a text template, or a JSON object/array for webhook and MCP bodies")

    def to_representation(self, value: str) -> str:
        return value


class ActionInputSerializer(serializers.Serializer):
    destination = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="A destination's id")
    template = TemplateField(required=False, default="", help_text="Empty = the channel's default message")
    enabled = serializers.BooleanField(required=False, default=True)

    class Meta:
        list_serializer_class = IndexedListSerializer


def _datetime(value: Any) -> str | None:
    """What DRF's DateTimeField renders with USE_TZ and UTC: ISO 8601, ``Z``."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _action_row(row: dict[str, Any]) -> dict[str, Any]:
    """An action from a ``values()`` row (a list page), shaped like ActionSerializer's."""
    return {
        "id": row["id"],
        "position": row["position"],
        "destination": row["destination_ref"],
        "destination_name": row["destination_name"],
        "channel": row["channel"],
        "template": row["template"],
        "enabled": row["enabled"],
    }


class ActionSerializer(serializers.ModelSerializer):
    destination_name = serializers.CharField(source="destination.name", read_only=True)
    channel = serializers.ChoiceField(source="destination.channel", choices=Channel.choices, read_only=True)

    class Meta:
        model = TriggerAction
        fields = ("id", "position", "destination", "destination_name", "channel", "template", "enabled")
        read_only_fields = fields

    def to_representation(self, action: TriggerAction) -> dict[str, Any]:
        """Built by hand (the fields above document it): DRF's generic field walk was
        most of a trigger list's time (bench/api_write.py)."""
        return {
            "id": action.pk,
            "position": action.position,
            "destination": action.destination_id,
            "destination_name": getattr(action, "destination_name", None) or action.destination.name,
            "channel": getattr(action, "destination_channel", None) or action.destination.channel,
            "template": action.template,
            "enabled": action.enabled,
        }


class TriggerSerializer(serializers.ModelSerializer):
    """A trigger as the API shows it, actions included."""

    actions = ActionSerializer(many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    conditions = serializers.JSONField(help_text="Condition tree (docs/triggers-api.md); {} = every event")

    class Meta:
        model = Trigger
        fields = (
            "id",
            "organization",
            "name",
            "description",
            "enabled",
            "chain_ids",
            "registries",
            "event_types",
            "conditions",
            "actions",
            "cooldown_seconds",
            "max_fires",
            "max_fires_window_seconds",
            "fire_on_backfill",
            "confirmation_mode",
            "confirmations",
            "fire_count",
            "last_fired_at",
            "created_by",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def to_representation(self, trigger: Trigger) -> dict[str, Any]:
        """Built by hand, like ``ActionSerializer``; ``test_api`` checks it against
        the declared fields."""
        actions = ActionSerializer()
        return {
            "id": trigger.pk,
            "organization": trigger.organization_id,
            "name": trigger.name,
            "description": trigger.description,
            "enabled": trigger.enabled,
            "chain_ids": trigger.chain_ids,
            "registries": trigger.registries,
            "event_types": trigger.event_types,
            "conditions": trigger.conditions,
            "actions": (
                [_action_row(row) for row in trigger.action_rows]
                if hasattr(trigger, "action_rows")
                else [actions.to_representation(a) for a in trigger.actions.all()]
            ),
            "cooldown_seconds": trigger.cooldown_seconds,
            "max_fires": trigger.max_fires,
            "max_fires_window_seconds": trigger.max_fires_window_seconds,
            "fire_on_backfill": trigger.fire_on_backfill,
            "confirmation_mode": trigger.confirmation_mode,
            "confirmations": trigger.confirmations,
            "fire_count": trigger.fire_count,
            "last_fired_at": _datetime(trigger.last_fired_at),
            "created_by": (
                getattr(trigger, "created_by_username", None) or trigger.created_by.username
                if trigger.created_by_id
                else None
            ),
            "created_at": _datetime(trigger.created_at),
            "updated_at": _datetime(trigger.updated_at),
        }


class TriggerWriteSerializer(serializers.Serializer):
    """Create or change a trigger with its conditions and actions in one request.
    On update, ``actions`` (when given) replaces the trigger's actions."""

    name = serializers.CharField(max_length=255)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    chain_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=MAX_CHAIN_IDS,
        help_text="Chains to watch; empty = every chain",
    )
    registries = serializers.ListField(
        child=serializers.CharField(max_length=20),
        required=False,
        max_length=3,
        help_text="identity, reputation, validation; empty = all",
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        max_length=len(EVENT_TYPES),
        help_text="Event names; empty = all",
    )
    conditions = serializers.JSONField(required=False, help_text="Condition tree; {} or absent = every event")
    actions = ActionInputSerializer(many=True, required=False)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=_INT32, required=False)
    max_fires = serializers.IntegerField(min_value=1, max_value=_INT32, required=False, allow_null=True)
    max_fires_window_seconds = serializers.IntegerField(min_value=1, max_value=_INT32, required=False)
    fire_on_backfill = serializers.BooleanField(required=False)
    confirmation_mode = serializers.ChoiceField(choices=Trigger.Confirmation.choices, required=False)
    confirmations = serializers.IntegerField(min_value=0, max_value=10_000, required=False)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        """The browsable API pre-fills its PUT form from a trigger: show it as the API
        does (what it shows can be sent back as it is; read-only keys are ignored)."""
        if isinstance(instance, Trigger):
            return TriggerSerializer().to_representation(instance)
        return super().to_representation(instance)


class DryRunRequestSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="One past event (its id)"
    )
    last = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=200,
        default=20,
        help_text="Otherwise: the last N events the trigger watches (its chains, registries and event types)",
    )


class DryRunMessageSerializer(serializers.Serializer):
    destination = serializers.IntegerField()
    payload = serializers.JSONField(required=False, help_text="Exactly what would be sent")
    error = serializers.CharField(required=False, help_text="Why the template could not render")


class DryRunResultSerializer(serializers.Serializer):
    event_id = serializers.IntegerField()
    event_type = serializers.CharField()
    matched = serializers.BooleanField()
    skipped = serializers.CharField(help_text="Why the event was not evaluated (not watched), or empty")
    messages = DryRunMessageSerializer(many=True)


class DryRunSerializer(serializers.Serializer):
    events = serializers.IntegerField(help_text="Events evaluated")
    matched = serializers.IntegerField()
    results = DryRunResultSerializer(many=True)


class TestResultSerializer(serializers.Serializer):
    action = serializers.IntegerField(help_text="The action's position")
    destination = serializers.IntegerField()
    delivery = serializers.UUIDField(required=False, help_text="The test delivery (see deliveries/{id}/)")
    status = serializers.CharField(required=False)
    error = serializers.CharField(required=False)


class FollowSerializer(serializers.Serializer):
    actions = ActionInputSerializer(many=True, help_text="Where to send (at least one)")
    name = serializers.CharField(max_length=255, required=False, help_text="Default: Follow <chain>:<agent>")
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, help_text="Empty = every event of the agent"
    )
