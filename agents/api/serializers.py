"""Response shapes of the read API (also the OpenAPI schema and the browsable API).

Conventions, the same in every response (docs/api.md):

* uint256/int128 numbers (agent ids, raw feedback values, on-chain summary values)
  are decimal **strings** — JSON numbers lose precision past 2^53;
* averages and normalised values are decimal strings with exactly 18 places;
* addresses are EIP-55 checksummed; hashes and hex bytes are lower-case ``0x``;
* public ids are ``{chain_id}:{agent_id}`` (see agents/api/selectors.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from indexing.models import ChainEvent

from ..models import Agent, AgentMetadata, Feedback, FeedbackResponse, Validation
from .selectors import IdentityDirectory

__all__ = (
    "AgentDetailSerializer",
    "AgentSerializer",
    "EventSerializer",
    "FeedbackDetailSerializer",
    "FeedbackResponseSerializer",
    "FeedbackSerializer",
    "ValidationSerializer",
)

DECIMAL_18 = {"max_digits": 60, "decimal_places": 18, "read_only": True}

# List rows are rendered by hand-written ``to_representation`` methods (the declared
# fields still define the schema and the browsable API): DRF's generic field walk costs
# ~0.5 ms a row, which alone would be 25 ms for a page of 50. tests/agents/api/
# test_serializers.py checks each fast path against DRF's generic output.


def _dt(value: datetime | None) -> str | None:
    """As DRF's DateTimeField renders it (UTC, ``Z``)."""
    if value is None:
        return None
    text = timezone.localtime(value, UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _dec(value: Decimal | None, places: int = 18) -> str | None:
    return None if value is None else f"{value:.{places}f}"


def related_or_none(obj: Any, name: str) -> Any:
    """A reverse one-to-one that may be missing (select_related caches the absence)."""
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


def _directory(serializer: serializers.Field) -> IdentityDirectory:
    return serializer.context["directory"]


@extend_schema_field({"type": "string", "pattern": "^-?[0-9]+$", "example": "22"})
class BigIntegerStringField(serializers.Field):
    """uint256 / int128 as a decimal string."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return str(int(value))


@extend_schema_field({"type": "string", "example": "8453:22"})
class AgentPublicIdField(serializers.Field):
    """The agent's public id, from an Agent (``source`` pointing at one)."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, agent: Agent) -> str:
        return _directory(self).agent_public_id(agent.chain_id, agent.identity_address, agent.agent_id)


def _registration_file_summary(file: Any) -> dict | None:
    if file is None:
        return None
    return {
        "uri": file.uri,
        "status": file.status,
        "error": file.error,
        "fetched_at": _dt(file.fetched_at),
        "next_refetch_at": _dt(file.next_refetch_at),
    }


class RegistrationFileSummarySerializer(serializers.Serializer):
    uri = serializers.CharField(help_text="The agentURI this state is about")
    status = serializers.CharField(help_text="pending, ok, error or unsupported")
    error = serializers.CharField()
    fetched_at = serializers.DateTimeField(allow_null=True)
    next_refetch_at = serializers.DateTimeField(allow_null=True)


class RegistrationFileSerializer(RegistrationFileSummarySerializer):
    attempts = serializers.IntegerField()
    requested_at = serializers.DateTimeField(allow_null=True)
    source_url = serializers.CharField(help_text="Where the bytes came from (gateway or final URL)")
    content_type = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    content_hash = serializers.CharField(help_text="keccak-256 of the bytes")
    parsed = serializers.JSONField(allow_null=True, help_text="The normalised registration (agents/registration.py)")
    raw = serializers.CharField(help_text="The file as fetched (UTF-8 text, at most 1 MiB)")


class AgentSerializer(serializers.ModelSerializer):
    """An agent as lists show it."""

    id = AgentPublicIdField(source="*")
    chain_id = serializers.IntegerField(read_only=True)
    agent_id = BigIntegerStringField()
    feedback_average = serializers.DecimalField(
        **DECIMAL_18, allow_null=True, help_text="Exact mean of value/10^decimals over non-revoked feedback"
    )
    validation_average = serializers.DecimalField(max_digits=6, decimal_places=2, read_only=True, allow_null=True)
    supported_trust = serializers.ListField(child=serializers.CharField(), read_only=True)
    services = serializers.ListField(child=serializers.DictField(), read_only=True)
    file = serializers.SerializerMethodField(help_text="Registration file fetch/parse state (null: never scheduled)")

    class Meta:
        model = Agent
        fields = (
            "id",
            "chain_id",
            "identity_address",
            "agent_id",
            "owner",
            "agent_wallet",
            "agent_uri",
            "name",
            "description",
            "image",
            "active",
            "x402_support",
            "supported_trust",
            "services",
            "has_mcp",
            "has_a2a",
            "has_web",
            "registrations_backlink",
            "feedback_count",
            "feedback_clients",
            "feedback_average",
            "validation_count",
            "validation_average",
            "registered_block",
            "registered_at",
            "last_activity_at",
            "file",
        )
        read_only_fields = fields

    @extend_schema_field(RegistrationFileSummarySerializer(allow_null=True))
    def get_file(self, agent: Agent) -> dict | None:
        return _registration_file_summary(related_or_none(agent, "registration_file"))

    def to_representation(self, agent: Agent) -> dict[str, Any]:
        return {
            "id": _directory(self).agent_public_id(agent.chain_id, agent.identity_address, agent.agent_id),
            "chain_id": agent.chain_id,
            "identity_address": agent.identity_address,
            "agent_id": str(int(agent.agent_id)),
            "owner": agent.owner,
            "agent_wallet": agent.agent_wallet,
            "agent_uri": agent.agent_uri,
            "name": agent.name,
            "description": agent.description,
            "image": agent.image,
            "active": agent.active,
            "x402_support": agent.x402_support,
            "supported_trust": agent.supported_trust,
            "services": agent.services,
            "has_mcp": agent.has_mcp,
            "has_a2a": agent.has_a2a,
            "has_web": agent.has_web,
            "registrations_backlink": agent.registrations_backlink,
            "feedback_count": agent.feedback_count,
            "feedback_clients": agent.feedback_clients,
            "feedback_average": _dec(agent.feedback_average),
            "validation_count": agent.validation_count,
            "validation_average": _dec(agent.validation_average, 2),
            "registered_block": agent.registered_block,
            "registered_at": _dt(agent.registered_at),
            "last_activity_at": _dt(agent.last_activity_at),
            "file": self.get_file(agent),
        }


class MetadataSerializer(serializers.ModelSerializer):
    """On-chain metadata: ``value`` is the UTF-8 text when the bytes are valid UTF-8,
    else the hex; both forms are always available."""

    value = serializers.SerializerMethodField()
    encoding = serializers.SerializerMethodField(help_text="utf-8 or hex: what ``value`` holds")
    value_hex = serializers.CharField(source="value", help_text="The raw bytes, 0x hex")
    value_text = serializers.SerializerMethodField(help_text="The bytes as UTF-8, or null when not valid UTF-8")

    class Meta:
        model = AgentMetadata
        fields = ("key", "value", "encoding", "value_hex", "value_text", "updated_block", "updated_at")
        read_only_fields = fields

    @staticmethod
    def _text(row: AgentMetadata) -> str | None:
        try:
            return bytes.fromhex(row.value[2:]).decode("utf-8").replace("\x00", "\ufffd")
        except (ValueError, UnicodeDecodeError):
            return None

    def get_value(self, row: AgentMetadata) -> str:
        text = self._text(row)
        return row.value if text is None else text

    def get_encoding(self, row: AgentMetadata) -> str:
        return "hex" if self._text(row) is None else "utf-8"

    @extend_schema_field(OpenApiTypes.STR)
    def get_value_text(self, row: AgentMetadata) -> str | None:
        return self._text(row)


class SummaryFieldsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Non-revoked feedback counted")
    average = serializers.DecimalField(**DECIMAL_18, allow_null=True, help_text="Exact mean, 18 places")
    summary_value = BigIntegerStringField(help_text="getSummary's summaryValue (int128)")
    summary_value_decimals = serializers.IntegerField(help_text="getSummary's summaryValueDecimals")


class TagSummarySerializer(serializers.Serializer):
    tag1 = serializers.CharField()
    count = serializers.IntegerField(source="summary.count")
    average = serializers.DecimalField(**DECIMAL_18, allow_null=True, source="summary.average")
    summary_value = BigIntegerStringField(source="summary.summary_value")
    summary_value_decimals = serializers.IntegerField(source="summary.summary_value_decimals")


class ReputationSerializer(serializers.Serializer):
    """``getSummary(agentId, clients, tag1, tag2)`` plus the exact mean, overall and per tag1."""

    clients = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="The clients= filter; null means every client"
    )
    tag1 = serializers.CharField()
    tag2 = serializers.CharField()
    count = serializers.IntegerField(source="overall.count")
    average = serializers.DecimalField(**DECIMAL_18, allow_null=True, source="overall.average")
    summary_value = BigIntegerStringField(source="overall.summary_value")
    summary_value_decimals = serializers.IntegerField(source="overall.summary_value_decimals")
    by_tag1 = TagSummarySerializer(many=True)
    tags_truncated = serializers.BooleanField(help_text="by_tag1 lists only the most used tags")


class ValidationSummarySerializer(serializers.Serializer):
    """``ValidationRegistry.getSummary(agentId, validators, tag)`` plus context."""

    validators = serializers.ListField(child=serializers.CharField(), allow_null=True)
    tag = serializers.CharField()
    count = serializers.IntegerField(help_text="Requests with a response")
    average_response = serializers.IntegerField(help_text="getSummary's avgResponse (integer division)")
    average = serializers.DecimalField(**DECIMAL_18, allow_null=True, help_text="Exact mean response")
    requests = serializers.IntegerField(help_text="All requests (by the validator filter)")
    pending = serializers.IntegerField()


class AgentDetailSerializer(AgentSerializer):
    """Everything about one agent; the extra parts are attached by the view."""

    file = serializers.SerializerMethodField(help_text="Registration file: state, parsed and raw")
    metadata = MetadataSerializer(many=True, source="detail_metadata", read_only=True)
    operators = serializers.ListField(child=serializers.CharField(), source="detail_operators", read_only=True)
    reputation = ReputationSerializer(source="detail_reputation", read_only=True)
    validation = ValidationSummarySerializer(source="detail_validation", read_only=True)

    class Meta(AgentSerializer.Meta):
        fields = (
            *AgentSerializer.Meta.fields,
            "approved",
            "registration_seen",
            "registered_tx",
            "updated_block",
            "updated_at",
            "metadata",
            "operators",
            "reputation",
            "validation",
        )
        read_only_fields = fields

    @extend_schema_field(RegistrationFileSerializer(allow_null=True))
    def get_file(self, agent: Agent) -> dict | None:
        file = related_or_none(agent, "registration_file")
        return RegistrationFileSerializer(file).data if file is not None else None

    def to_representation(self, agent: Agent) -> dict[str, Any]:
        data = super().to_representation(agent)
        data["file"] = self.get_file(agent)
        data.update(
            approved=agent.approved,
            registration_seen=agent.registration_seen,
            registered_tx=agent.registered_tx,
            updated_block=agent.updated_block,
            updated_at=_dt(agent.updated_at),
            metadata=[_metadata(row) for row in agent.detail_metadata],
            operators=list(agent.detail_operators),
            reputation=_reputation(agent.detail_reputation),
            validation=_validation_summary(agent.detail_validation),
        )
        return data


def _metadata(row: AgentMetadata) -> dict[str, Any]:
    text = MetadataSerializer._text(row)
    return {
        "key": row.key,
        "value": row.value if text is None else text,
        "encoding": "hex" if text is None else "utf-8",
        "value_hex": row.value,
        "value_text": text,
        "updated_block": row.updated_block,
        "updated_at": _dt(row.updated_at),
    }


def _summary(summary: Any) -> dict[str, Any]:
    return {
        "count": summary.count,
        "average": _dec(summary.average),
        "summary_value": str(summary.summary_value),
        "summary_value_decimals": summary.summary_value_decimals,
    }


def _reputation(report: Any) -> dict[str, Any]:
    return {
        "clients": report.clients,
        "tag1": report.tag1,
        "tag2": report.tag2,
        **_summary(report.overall),
        "by_tag1": [{"tag1": t.tag1, **_summary(t.summary)} for t in report.by_tag1],
        "tags_truncated": report.tags_truncated,
    }


def _validation_summary(summary: Any) -> dict[str, Any]:
    return {
        "validators": summary.validators,
        "tag": summary.tag,
        "count": summary.count,
        "average_response": summary.average_response,
        "average": _dec(summary.average),
        "requests": summary.requests,
        "pending": summary.pending,
    }


class FeedbackFileSummarySerializer(serializers.Serializer):
    uri = serializers.CharField()
    status = serializers.CharField(help_text="pending, ok, error or unsupported")
    hash_status = serializers.CharField(help_text="match, mismatch, absent (no hash on-chain) or unknown")
    error = serializers.CharField()
    fetched_at = serializers.DateTimeField(allow_null=True)
    text = serializers.CharField()


class FeedbackFileSerializer(FeedbackFileSummarySerializer):
    attempts = serializers.IntegerField()
    source_url = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    content_hash = serializers.CharField(help_text="keccak-256 of the bytes")
    mcp = serializers.JSONField(allow_null=True)
    a2a = serializers.JSONField(allow_null=True)
    oasf = serializers.JSONField(allow_null=True)
    proof_of_payment = serializers.JSONField(allow_null=True)
    parsed = serializers.JSONField(allow_null=True)
    raw = serializers.CharField()


class FeedbackSerializer(serializers.ModelSerializer):
    id = serializers.SerializerMethodField(help_text="{agent id}:{client}:{feedback index}")
    agent = AgentPublicIdField()
    chain_id = serializers.IntegerField(source="agent.chain_id", read_only=True)
    value = BigIntegerStringField(help_text="Raw int128 value")
    value_normalized = serializers.DecimalField(**DECIMAL_18, help_text="value / 10^value_decimals")
    response_count = serializers.IntegerField(read_only=True)
    file = serializers.SerializerMethodField(help_text="Feedback file state (null: no feedbackURI)")

    class Meta:
        model = Feedback
        fields = (
            "id",
            "agent",
            "chain_id",
            "reputation_address",
            "client_address",
            "feedback_index",
            "value",
            "value_decimals",
            "value_normalized",
            "tag1",
            "tag2",
            "endpoint",
            "feedback_uri",
            "feedback_hash",
            "revoked",
            "revoked_at",
            "response_count",
            "created_block",
            "created_at",
            "tx_hash",
            "abi_version",
            "file",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_id(self, feedback: Feedback) -> str:
        agent = feedback.agent
        agent_id = _directory(self).agent_public_id(agent.chain_id, agent.identity_address, agent.agent_id)
        return f"{agent_id}:{feedback.client_address}:{feedback.feedback_index}"

    @extend_schema_field(FeedbackFileSummarySerializer(allow_null=True))
    def get_file(self, feedback: Feedback) -> dict | None:
        file = related_or_none(feedback, "file")
        if file is None:
            return None
        return {
            "uri": file.uri,
            "status": file.status,
            "hash_status": file.hash_status,
            "error": file.error,
            "fetched_at": _dt(file.fetched_at),
            "text": file.text,
        }

    def to_representation(self, feedback: Feedback) -> dict[str, Any]:
        agent = feedback.agent
        agent_id = _directory(self).agent_public_id(agent.chain_id, agent.identity_address, agent.agent_id)
        return {
            "id": f"{agent_id}:{feedback.client_address}:{feedback.feedback_index}",
            "agent": agent_id,
            "chain_id": agent.chain_id,
            "reputation_address": feedback.reputation_address,
            "client_address": feedback.client_address,
            "feedback_index": feedback.feedback_index,
            "value": str(int(feedback.value)),
            "value_decimals": feedback.value_decimals,
            "value_normalized": _dec(feedback.value_normalized),
            "tag1": feedback.tag1,
            "tag2": feedback.tag2,
            "endpoint": feedback.endpoint,
            "feedback_uri": feedback.feedback_uri,
            "feedback_hash": feedback.feedback_hash,
            "revoked": feedback.revoked,
            "revoked_at": _dt(feedback.revoked_at),
            "response_count": feedback.response_count,
            "created_block": feedback.created_block,
            "created_at": _dt(feedback.created_at),
            "tx_hash": feedback.tx_hash,
            "abi_version": feedback.abi_version,
            "file": self.get_file(feedback),
        }


class FeedbackDetailSerializer(FeedbackSerializer):
    @extend_schema_field(FeedbackFileSerializer(allow_null=True))
    def get_file(self, feedback: Feedback) -> dict | None:
        file = related_or_none(feedback, "file")
        return FeedbackFileSerializer(file).data if file is not None else None

    def to_representation(self, feedback: Feedback) -> dict[str, Any]:
        return serializers.ModelSerializer.to_representation(self, feedback)


class FeedbackResponseSerializer(serializers.ModelSerializer):
    tx_hash = serializers.CharField(source="event.tx_hash", read_only=True)

    class Meta:
        model = FeedbackResponse
        fields = ("responder", "response_uri", "response_hash", "created_block", "created_at", "tx_hash")
        read_only_fields = fields


class ValidationSerializer(serializers.ModelSerializer):
    id = serializers.SerializerMethodField(help_text="{chain_id}:{request_hash}")
    agent = AgentPublicIdField()

    class Meta:
        model = Validation
        fields = (
            "id",
            "chain_id",
            "agent",
            "validation_address",
            "request_hash",
            "validator_address",
            "request_uri",
            "status",
            "response",
            "response_uri",
            "response_hash",
            "tag",
            "response_count",
            "requested_block",
            "requested_at",
            "responded_at",
            "abi_version",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_id(self, validation: Validation) -> str:
        return f"{validation.chain_id}:{validation.request_hash}"

    def to_representation(self, v: Validation) -> dict[str, Any]:
        agent = v.agent
        return {
            "id": self.get_id(v),
            "chain_id": v.chain_id,
            "agent": _directory(self).agent_public_id(agent.chain_id, agent.identity_address, agent.agent_id),
            "validation_address": v.validation_address,
            "request_hash": v.request_hash,
            "validator_address": v.validator_address,
            "request_uri": v.request_uri,
            "status": v.status,
            "response": v.response,
            "response_uri": v.response_uri,
            "response_hash": v.response_hash,
            "tag": v.tag,
            "response_count": v.response_count,
            "requested_block": v.requested_block,
            "requested_at": _dt(v.requested_at),
            "responded_at": _dt(v.responded_at),
            "abi_version": v.abi_version,
        }


class EventSerializer(serializers.ModelSerializer):
    key = serializers.CharField(read_only=True, help_text="{chain_id}:{block_hash}:{log_index}")
    agent_id = BigIntegerStringField(allow_null=True)
    agent = serializers.SerializerMethodField(help_text="Public id of the agent the event concerns, if any")
    args = serializers.JSONField(read_only=True, help_text="Decoded arguments (big integers as strings)")

    class Meta:
        model = ChainEvent
        fields = (
            "id",
            "key",
            "chain_id",
            "block_number",
            "block_hash",
            "block_timestamp",
            "tx_hash",
            "tx_index",
            "log_index",
            "address",
            "registry",
            "event_type",
            "abi_version",
            "agent_id",
            "agent",
            "args",
            "removed",
            "removed_at",
            "is_backfill",
            "indexed_at",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_agent(self, event: ChainEvent) -> str | None:
        return _directory(self).event_agent_public_id(event)

    def to_representation(self, e: ChainEvent) -> dict[str, Any]:
        return {
            "id": e.id,
            "key": e.key,
            "chain_id": e.chain_id,
            "block_number": e.block_number,
            "block_hash": e.block_hash,
            "block_timestamp": _dt(e.block_timestamp),
            "tx_hash": e.tx_hash,
            "tx_index": e.tx_index,
            "log_index": e.log_index,
            "address": e.address,
            "registry": e.registry,
            "event_type": e.event_type,
            "abi_version": e.abi_version,
            "agent_id": None if e.agent_id is None else str(int(e.agent_id)),
            "agent": self.get_agent(e),
            "args": e.args,
            "removed": e.removed,
            "removed_at": _dt(e.removed_at),
            "is_backfill": e.is_backfill,
            "indexed_at": _dt(e.indexed_at),
        }
