"""Serializers of the destinations and deliveries API. Secrets are write-only: a
destination shows ``secret_hint`` (``…ab12``) and ``has_secret``, never the secret."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..models import Attempt, Channel, Delivery, Destination


class BreakerSerializer(serializers.Serializer):
    """A destination's circuit breaker and its counters."""

    state = serializers.CharField(source="breaker_state")
    consecutive_failures = serializers.IntegerField()
    failure_threshold = serializers.IntegerField()
    cooldown_seconds = serializers.IntegerField()
    opened_at = serializers.DateTimeField(source="breaker_opened_at", allow_null=True)
    retry_at = serializers.DateTimeField(
        source="breaker_retry_at", allow_null=True, help_text="When the breaker next lets a send through"
    )
    failure_count = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


class DestinationSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=4096,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="Telegram: bot token (empty = the server's); webhook: whsec_… signing secret (empty on "
        "create = generated and returned once as generated_secret); MCP: optional bearer token. Write-only.",
    )
    secret_hint = serializers.SerializerMethodField(help_text="The last characters of the secret, or empty")
    has_secret = serializers.SerializerMethodField()
    breaker = BreakerSerializer(source="*", read_only=True)

    class Meta:
        model = Destination
        fields = (
            "id",
            "name",
            "channel",
            "config",
            "secret",
            "secret_hint",
            "has_secret",
            "enabled",
            "rate_limit_per_minute",
            "failure_threshold",
            "cooldown_seconds",
            "breaker",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "secret_hint", "has_secret", "breaker", "created_at", "updated_at")
        extra_kwargs = {"name": {"validators": []}}

    def get_secret_hint(self, destination: Destination) -> str:
        return destination.secret_hint

    def get_has_secret(self, destination: Destination) -> bool:
        return bool(destination.secret)

    def validate_channel(self, value: str) -> str:
        if self.instance is not None and value != self.instance.channel:
            raise serializers.ValidationError("the channel of a destination is fixed; create another destination")
        return value

    def validate_config(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("an object of channel settings")
        return value


class DestinationCreatedSerializer(DestinationSerializer):
    generated_secret = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Webhooks created without a secret: the generated signing secret. Shown in this response only.",
    )

    class Meta(DestinationSerializer.Meta):
        fields = (*DestinationSerializer.Meta.fields, "generated_secret")


class SecretRotatedSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret; shown once. The old one signs for 24 h more.")
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = (
            "number",
            "started_at",
            "duration_ms",
            "outcome",
            "retryable",
            "response_code",
            "response_excerpt",
            "error",
        )
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True, help_text="Public id (the webhook-id header)")
    destination_name = serializers.CharField(source="destination.name", read_only=True)
    channel = serializers.ChoiceField(source="destination.channel", choices=Channel.choices, read_only=True)
    trigger = serializers.IntegerField(source="trigger_id", read_only=True, allow_null=True)
    match = serializers.IntegerField(source="match_id", read_only=True, allow_null=True)
    event = serializers.IntegerField(source="event_id", read_only=True, allow_null=True)
    retracts = serializers.UUIDField(source="retracts.uuid", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Delivery
        fields = (
            "id",
            "kind",
            "status",
            "destination",
            "destination_name",
            "channel",
            "trigger",
            "match",
            "event",
            "retracts",
            "attempt_count",
            "next_attempt_at",
            "last_error",
            "created_at",
            "sent_at",
            "updated_at",
        )
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = (*DeliverySerializer.Meta.fields, "payload", "response_data", "attempts")
        read_only_fields = fields
