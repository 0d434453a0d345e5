"""The ERC-8004 read model: what every agent looks like now, projected from the
indexed events (``indexing.ChainEvent``) inside the indexer's transaction.

Identity: an agent is (chain, identity registry address, agent id) — the spec's
global identity ``eip155:{chainId}:{identityRegistry}`` + ``agentId``. Agent ids
start at 0 and are uint256, stored as NUMERIC(78, 0).

On-chain strings (tags, metadata keys, URIs) are unbounded and attacker-chosen, so
they are never put in a B-tree index directly (PostgreSQL refuses entries over
~2.7 kB): lookups go through a short hash column instead.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from indexing.models import AGENT_ID_FIELD_KWARGS, Chain, ChainEvent

__all__ = (
    "ORDER_SENTINEL_AVERAGE",
    "ORDER_SENTINEL_TIME",
    "Agent",
    "AgentMetadata",
    "AgentTagStat",
    "Feedback",
    "FeedbackFile",
    "FeedbackResponse",
    "FileStatus",
    "OperatorApproval",
    "RegistrationFile",
    "Validation",
    "text_hash",
)

# int128 has 39 digits; normalised values keep 18 decimal places.
NORMALISED_FIELD_KWARGS = {"max_digits": 60, "decimal_places": 18}


# Keyset pagination needs non-null sort keys (a row comparison cannot step over NULLs
# with an index range), so nullable orderings sort on COALESCE(column, sentinel): the
# sentinel sits below every real value, which puts "no value" last in descending order.
# Queries must use exactly these expressions for PostgreSQL to match the indexes.
ORDER_SENTINEL_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # block times are all after 2015
ORDER_SENTINEL_AVERAGE = Decimal("-1e39")  # |value| <= 1e38 on-chain, so every average is above


def order_key_time(field: str) -> Coalesce:
    return Coalesce(F(field), Value(ORDER_SENTINEL_TIME), output_field=models.DateTimeField())


def order_key_average(field: str) -> Coalesce:
    return Coalesce(F(field), Value(ORDER_SENTINEL_AVERAGE), output_field=models.DecimalField())


class FileStatus(models.TextChoices):
    """Where fetching and parsing an off-chain file (registration or feedback) stands."""

    PENDING = "pending", "Pending"
    OK = "ok", "OK"
    ERROR = "error", "Error"
    UNSUPPORTED = "unsupported", "Unsupported URI"


def text_hash(value: str) -> str:
    """The index key for an unbounded on-chain string."""
    return hashlib.sha256(value.encode("utf-8", errors="replace")).hexdigest()[:32]


class Agent(models.Model):
    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="agents", db_index=False)
    identity_address = models.CharField(max_length=42, help_text="Identity registry (checksummed)")
    agent_id = models.DecimalField(**AGENT_ID_FIELD_KWARGS)
    owner = models.CharField(max_length=42, blank=True, default="")
    approved = models.CharField(max_length=42, blank=True, default="", help_text="ERC-721 approved address")
    agent_uri = models.TextField(blank=True, default="")
    agent_wallet = models.CharField(max_length=42, blank=True, default="", help_text="From the agentWallet metadata")
    # False when we saw activity for an agent whose registration predates our start block.
    registration_seen = models.BooleanField(default=False)
    registered_block = models.BigIntegerField(null=True, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True, help_text="Block time of registration")
    registered_tx = models.CharField(max_length=66, blank=True, default="")
    updated_block = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True, help_text="Block time of the last identity change")
    last_activity_at = models.DateTimeField(null=True, blank=True, help_text="Block time of the last event")
    # Reputation over non-revoked feedback of every reputation registry of this agent.
    feedback_count = models.PositiveIntegerField(default=0)
    feedback_average = models.DecimalField(null=True, blank=True, **NORMALISED_FIELD_KWARGS)
    feedback_clients = models.PositiveIntegerField(default=0)
    # Validation over requests that have a response.
    validation_count = models.PositiveIntegerField(default=0)
    validation_average = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    # From the registration file (agents/registration.py), written by the fetcher; blank
    # until a file parses. These are what lists filter and show, so they live on the
    # agent row; the bytes and fetch state live in RegistrationFile (see there why).
    name = models.TextField(blank=True, default="")
    description = models.TextField(blank=True, default="")
    image = models.TextField(blank=True, default="")
    active = models.BooleanField(null=True, blank=True)
    x402_support = models.BooleanField(null=True, blank=True)
    supported_trust = models.JSONField(default=list, blank=True)
    services = models.JSONField(default=list, blank=True, help_text="Parsed services (name, endpoint, version, ...)")
    has_mcp = models.BooleanField(default=False)
    has_a2a = models.BooleanField(default=False)
    has_web = models.BooleanField(default=False)
    registrations_backlink = models.BooleanField(
        null=True, blank=True, help_text="The file's registrations name this agent back (null: no parsed file)"
    )

    class Meta:
        ordering = ("chain_id", "agent_id")
        constraints = [
            models.UniqueConstraint(
                fields=("chain", "identity_address", "agent_id"), name="agent_unique_chain_registry_id"
            ),
        ]
        indexes = [
            models.Index(fields=("owner",), name="agent_owner"),
            models.Index(fields=("agent_wallet",), name="agent_wallet"),
            # The read API's keyset orderings (agents/api): unique with id, NULLs last.
            models.Index(order_key_time("registered_at").desc(), F("id").desc(), name="agent_newest"),
            models.Index(order_key_average("feedback_average").desc(), F("id").desc(), name="agent_best"),
            models.Index(fields=("-feedback_count", "-id"), name="agent_most_feedback"),
            models.Index(order_key_time("last_activity_at").desc(), F("id").desc(), name="agent_active"),
            models.Index(fields=("id",), name="agent_has_mcp", condition=Q(has_mcp=True)),
            models.Index(fields=("id",), name="agent_has_a2a", condition=Q(has_a2a=True)),
            models.Index(fields=("id",), name="agent_has_web", condition=Q(has_web=True)),
        ]

    def __str__(self) -> str:
        return f"agent {self.chain_id}:{self.agent_id}"

    @property
    def public_id(self) -> str:
        return f"{self.chain_id}:{self.agent_id}"


class FetchedFile(models.Model):
    """Fetch state of one off-chain JSON file (what a URI pointed to when we read it).

    Kept beside, not inside, the row the URI belongs to: the projector rewrites agent
    and feedback rows on every event and the fetcher writes these on its own clock, so
    neither waits on the other's row lock, and list queries never drag up to 1 MiB of
    raw text along. ``uri`` is the URI this state is about — when the on-chain URI
    changes, a differing ``uri`` is how the scheduler knows to fetch again.
    """

    uri = models.TextField(blank=True, default="")
    status = models.CharField(max_length=12, choices=FileStatus.choices, default=FileStatus.PENDING)
    error = models.TextField(blank=True, default="", help_text="Why the last fetch or parse failed")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Fetch attempts for this URI")
    requested_at = models.DateTimeField(null=True, blank=True, help_text="When it was last marked pending")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Pending: when to try (again)")
    fetched_at = models.DateTimeField(null=True, blank=True, help_text="Last fetch that returned bytes")
    source_url = models.TextField(blank=True, default="", help_text="Where the bytes came from (gateway, final URL)")
    content_type = models.CharField(max_length=200, blank=True, default="")
    size = models.PositiveIntegerField(null=True, blank=True)
    content_hash = models.CharField(max_length=66, blank=True, default="", help_text="keccak-256 of the bytes")
    raw = models.TextField(blank=True, default="", help_text="The bytes as text (UTF-8, at most 1 MiB)")
    parsed = models.JSONField(null=True, blank=True)
    next_refetch_at = models.DateTimeField(null=True, blank=True, help_text="Mutable (http/https) files: re-read then")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class RegistrationFile(FetchedFile):
    """The agent's registration file (``agentURI``), fetched and parsed.

    One-to-one with Agent instead of columns on it: the parsed fields that lists
    filter on (name, services, has_mcp, ...) *are* copied onto Agent so lists need no
    join, but the fetch bookkeeping and the raw/parsed document stay here (see
    FetchedFile for why).
    """

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, primary_key=True, related_name="registration_file")

    class Meta:
        indexes = [
            models.Index(fields=("next_attempt_at",), name="regfile_pending", condition=Q(status="pending")),
            models.Index(
                fields=("next_refetch_at",), name="regfile_refetch", condition=Q(next_refetch_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"registration file of {self.agent_id}: {self.status}"


class AgentMetadata(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="metadata", db_index=False)
    key = models.TextField()
    key_hash = models.CharField(max_length=32)
    value = models.TextField(help_text="0x hex of the raw bytes")
    updated_block = models.BigIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ("agent_id", "key")
        constraints = [models.UniqueConstraint(fields=("agent", "key_hash"), name="agentmetadata_unique_agent_key")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.key[:40]}"


class OperatorApproval(models.Model):
    """ERC-721 ``setApprovalForAll``: operators may act for every agent of an owner."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="operator_approvals")
    identity_address = models.CharField(max_length=42)
    owner = models.CharField(max_length=42)
    operator = models.CharField(max_length=42)
    approved = models.BooleanField()
    updated_block = models.BigIntegerField()

    class Meta:
        ordering = ("chain_id", "owner", "operator")
        constraints = [
            models.UniqueConstraint(
                fields=("chain", "identity_address", "owner", "operator"), name="operatorapproval_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.operator} for {self.owner}"


class Feedback(models.Model):
    """One ``giveFeedback``. Key: (agent, reputation registry, client, 1-based index)."""

    # Indexes (and the unique key) on feedback all start with agent: no separate one.
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="feedback", db_index=False)
    reputation_address = models.CharField(max_length=42)
    client_address = models.CharField(max_length=42)
    feedback_index = models.PositiveBigIntegerField(help_text="1-based per (agent, client)")
    value = models.DecimalField(max_digits=40, decimal_places=0, help_text="Raw int128 value")
    value_decimals = models.PositiveSmallIntegerField()
    value_normalized = models.DecimalField(**NORMALISED_FIELD_KWARGS, help_text="value / 10^value_decimals")
    tag1 = models.TextField(blank=True, default="")
    tag1_hash = models.CharField(max_length=32)
    tag2 = models.TextField(blank=True, default="")
    tag2_hash = models.CharField(max_length=32)
    endpoint = models.TextField(blank=True, default="")
    feedback_uri = models.TextField(blank=True, default="")
    feedback_hash = models.CharField(max_length=66, blank=True, default="")
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    abi_version = models.CharField(max_length=8, default="v1")
    created_block = models.BigIntegerField()
    created_at = models.DateTimeField(help_text="Block time")
    tx_hash = models.CharField(max_length=66)
    # Events are never deleted (a reorg marks them removed), so no index for deletes.
    event = models.ForeignKey(
        ChainEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("agent", "reputation_address", "client_address", "feedback_index"),
                name="feedback_unique_key",
            ),
        ]
        indexes = [
            models.Index(fields=("agent", "revoked"), name="feedback_agent_revoked"),
            models.Index(fields=("agent", "-created_at", "-id"), name="feedback_agent_recent"),
            models.Index(fields=("agent", "tag1_hash"), name="feedback_agent_tag1"),
            models.Index(fields=("client_address",), name="feedback_client"),
            models.Index(fields=("-created_at", "-id"), name="feedback_recent"),
            models.Index(fields=("tag1_hash",), name="feedback_tag1"),
            models.Index(fields=("tag2_hash",), name="feedback_tag2"),
        ]

    def __str__(self) -> str:
        return f"feedback {self.agent_id}/{self.client_address}#{self.feedback_index}"


class FeedbackFile(FetchedFile):
    """The off-chain feedback file (``feedbackURI``), fetched and parsed.

    Where the on-chain ``feedbackHash`` is non-zero the keccak-256 of the bytes must
    equal it; a mismatch is stored and shown (``hash_status``), never hidden, because
    "the file changed after the feedback was given" is itself worth knowing.
    """

    class HashStatus(models.TextChoices):
        ABSENT = "absent", "No hash on-chain"
        MATCH = "match", "Matches"
        MISMATCH = "mismatch", "Does not match"
        UNKNOWN = "unknown", "Not fetched"

    feedback = models.OneToOneField(Feedback, on_delete=models.CASCADE, primary_key=True, related_name="file")
    hash_status = models.CharField(max_length=10, choices=HashStatus.choices, default=HashStatus.UNKNOWN)
    text = models.TextField(blank=True, default="")
    mcp = models.JSONField(null=True, blank=True)
    a2a = models.JSONField(null=True, blank=True)
    oasf = models.JSONField(null=True, blank=True)
    proof_of_payment = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=("next_attempt_at",), name="fbfile_pending", condition=Q(status="pending")),
            models.Index(
                fields=("next_refetch_at",), name="fbfile_refetch", condition=Q(next_refetch_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"feedback file of {self.feedback_id}: {self.status}"


class FeedbackResponse(models.Model):
    """``appendResponse``: anyone, any number of times, also on revoked feedback."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="feedback_responses")
    feedback = models.ForeignKey(Feedback, on_delete=models.CASCADE, null=True, blank=True, related_name="responses")
    reputation_address = models.CharField(max_length=42)
    client_address = models.CharField(max_length=42)
    feedback_index = models.PositiveBigIntegerField()
    responder = models.CharField(max_length=42)
    response_uri = models.TextField()
    response_hash = models.CharField(max_length=66)
    created_block = models.BigIntegerField()
    created_at = models.DateTimeField()
    event = models.OneToOneField(ChainEvent, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ("created_block", "id")
        indexes = [models.Index(fields=("responder",), name="response_responder")]

    def __str__(self) -> str:
        return f"response by {self.responder} to {self.feedback_id}"


class AgentTagStat(models.Model):
    """Per-agent reputation for one tag1 (averages only make sense within a tag)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tag_stats", db_index=False)
    tag1 = models.TextField()
    tag1_hash = models.CharField(max_length=32)
    count = models.PositiveIntegerField()
    average = models.DecimalField(**NORMALISED_FIELD_KWARGS)

    class Meta:
        ordering = ("agent_id", "tag1")
        constraints = [models.UniqueConstraint(fields=("agent", "tag1_hash"), name="agenttagstat_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.tag1[:40]}"


class Validation(models.Model):
    """A validation request and its latest response (responses overwrite; 0 is valid)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RESPONDED = "responded", "Responded"

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="validations", db_index=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="validations", db_index=False)
    validation_address = models.CharField(max_length=42)
    request_hash = models.CharField(max_length=66)
    validator_address = models.CharField(max_length=42)
    request_uri = models.TextField(blank=True, default="")
    response = models.PositiveSmallIntegerField(null=True, blank=True)
    response_uri = models.TextField(blank=True, default="")
    response_hash = models.CharField(max_length=66, blank=True, default="")
    tag = models.TextField(blank=True, default="")
    tag_hash = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    response_count = models.PositiveIntegerField(default=0)
    abi_version = models.CharField(max_length=8, default="v1")
    requested_block = models.BigIntegerField(null=True, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-requested_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("chain", "validation_address", "request_hash"), name="validation_unique_request"
            ),
        ]
        indexes = [
            models.Index(fields=("agent", "status"), name="validation_agent_status"),
            models.Index(fields=("validator_address",), name="validation_validator"),
            models.Index(fields=("tag_hash",), name="validation_tag", condition=~Q(tag_hash="")),
        ]

    def __str__(self) -> str:
        return f"validation {self.request_hash[:10]}"
