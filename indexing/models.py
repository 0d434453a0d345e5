"""Chain ingestion state: what to index (chains, RPC endpoints, deployments), how far
we got (cursors and recent block hashes), and what we found (ChainEvent).

Big on-chain integers (agent ids are uint256, feedback values int128) are stored as
NUMERIC(78, 0) so that no value a contract can emit is ever truncated.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

__all__ = (
    "AGENT_ID_FIELD_KWARGS",
    "BlockRecord",
    "Chain",
    "ChainCursor",
    "ChainEvent",
    "ContractDeployment",
    "Registry",
    "RpcEndpoint",
    "UnknownLog",
)

# uint256 fits in 78 decimal digits.
AGENT_ID_FIELD_KWARGS = {"max_digits": 78, "decimal_places": 0}


class Registry(models.TextChoices):
    IDENTITY = "identity", "Identity"
    REPUTATION = "reputation", "Reputation"
    VALIDATION = "validation", "Validation"


class Chain(models.Model):
    """An EVM chain we index, with its polling policy.

    ``confirmations`` sets the safe head (``head - confirmations``); 0 indexes the tip
    and relies on reorg detection (retractions) for correctness.
    """

    chain_id = models.PositiveBigIntegerField(primary_key=True, help_text="EIP-155 chain id")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    is_testnet = models.BooleanField(default=False)
    confirmations = models.PositiveIntegerField(
        default=0, help_text="Blocks behind the head before an event is indexed (0 = index the tip)."
    )
    poll_interval_seconds = models.FloatField(default=2.0, help_text="Seconds between polls when caught up.")
    max_block_range = models.PositiveIntegerField(
        default=2000, help_text="Largest eth_getLogs range; the poller shrinks it when the node refuses."
    )
    reorg_window = models.PositiveIntegerField(
        default=128, help_text="Recent blocks whose hashes are re-checked on every poll."
    )
    notify_max_age_seconds = models.PositiveIntegerField(
        default=3600,
        help_text="Events older than this when indexed count as backfill: indexed, not notified "
        "unless a trigger asks for history.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("chain_id",)

    def __str__(self) -> str:
        return f"{self.name} ({self.chain_id})"


class RpcEndpoint(models.Model):
    """One JSON-RPC URL of a chain. The poller uses the enabled endpoints in priority
    order and rotates to the next on errors, timeouts and HTTP 429."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="rpc_endpoints")
    url = models.URLField(max_length=500)
    ws_url = models.CharField(
        max_length=500,
        blank=True,
        default="",
        validators=[RegexValidator(r"^wss?://\S+$", "a ws:// or wss:// URL")],
        help_text="Optional ws:// or wss:// URL of the same node: manage.py head_listener subscribes to newHeads "
        "there and polls at once on each new block (polling stays the source of truth).",
    )
    priority = models.PositiveIntegerField(default=0, help_text="Lower is tried first.")
    enabled = models.BooleanField(default=True)
    # Health as last observed by the poller (shown in the admin and the chains API).
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("chain_id", "priority", "id")
        constraints = [models.UniqueConstraint(fields=("chain", "url"), name="rpcendpoint_unique_chain_url")]

    def __str__(self) -> str:
        return self.url


class ContractDeployment(models.Model):
    """A registry contract on a chain. ``abi_version`` selects which event shapes
    the decoder expects (v1 = contracts 2.0.0; v0.4 = the Oct-2025 testnet contracts);
    both are decoded by topic0, so one address may emit either."""

    class AbiVersion(models.TextChoices):
        V1 = "v1", "v1 (contracts 2.0.0, Jan 2026)"
        V0_4 = "v0.4", "v0.4 (Oct 2025 testnets)"

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="deployments")
    registry = models.CharField(max_length=20, choices=Registry.choices)
    address = models.CharField(max_length=42, help_text="Checksummed 0x address")
    start_block = models.PositiveBigIntegerField(default=0)
    abi_version = models.CharField(max_length=8, choices=AbiVersion.choices, default=AbiVersion.V1)
    identity_address = models.CharField(
        max_length=42,
        blank=True,
        default="",
        help_text="For reputation and validation registries: the identity registry their agent ids "
        "refer to (getIdentityRegistry()). Blank for an identity registry (its own address).",
    )
    enabled = models.BooleanField(default=True)
    label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("chain_id", "registry", "address")
        constraints = [
            models.UniqueConstraint(fields=("chain", "address"), name="deployment_unique_chain_address"),
        ]

    def __str__(self) -> str:
        return f"{self.registry}@{self.address} on {self.chain_id}"


class ChainCursor(models.Model):
    """How far a chain is indexed, plus what the poller last saw of the node.

    The lease fields implement the per-chain poller lock: a lease with an expiry
    survives a crashed worker (it simply runs out). Correctness does not rest on the
    lease: a batch commits only if the cursor still holds the block it started from.
    """

    chain = models.OneToOneField(Chain, on_delete=models.CASCADE, primary_key=True, related_name="cursor")
    last_block_number = models.BigIntegerField(null=True, blank=True, help_text="Highest indexed block")
    last_block_hash = models.CharField(max_length=66, blank=True, default="")
    span = models.PositiveIntegerField(default=0, help_text="eth_getLogs range learned from the node (0 = max).")
    head_block = models.BigIntegerField(null=True, blank=True)
    head_timestamp = models.DateTimeField(null=True, blank=True)
    head_seen_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    poll_requested_at = models.DateTimeField(null=True, blank=True, help_text="When beat last enqueued a poll")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    reorg_count = models.PositiveIntegerField(default=0)
    last_reorg_depth = models.PositiveIntegerField(default=0)
    last_reorg_at = models.DateTimeField(null=True, blank=True)
    unknown_log_count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cursor {self.chain_id}@{self.last_block_number}"


class BlockRecord(models.Model):
    """Hash of a block we built on: every block that held an event, and every block a
    batch ended at. Re-checked within the chain's reorg window to detect reorgs; the
    common ancestor is the highest record whose hash still matches the node."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="block_records", db_index=False)
    number = models.BigIntegerField()
    hash = models.CharField(max_length=66)
    parent_hash = models.CharField(max_length=66, blank=True, default="")
    timestamp = models.DateTimeField()

    class Meta:
        ordering = ("chain_id", "-number")
        constraints = [models.UniqueConstraint(fields=("chain", "number"), name="blockrecord_unique_chain_number")]

    def __str__(self) -> str:
        return f"block {self.chain_id}:{self.number} {self.hash[:10]}"


class ChainEvent(models.Model):
    """One decoded log of a registry contract: the fact everything else is built from.

    Unique per (chain, block hash, log index): a log re-fetched on the same block is
    the same row, while the same height on another branch is a different row. A reorg
    never deletes a row; it sets ``removed`` so consumers can retract what they did.
    """

    # No separate index on chain: every index and the unique key start with it.
    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="events", db_index=False)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    block_timestamp = models.DateTimeField()
    tx_hash = models.CharField(max_length=66)
    tx_index = models.PositiveIntegerField()
    log_index = models.PositiveIntegerField()
    address = models.CharField(max_length=42, help_text="Emitting contract (checksummed)")
    registry = models.CharField(max_length=20, choices=Registry.choices)
    event_type = models.CharField(max_length=40, help_text="Event name, e.g. NewFeedback")
    abi_version = models.CharField(max_length=8, default="v1")
    agent_id = models.DecimalField(null=True, blank=True, **AGENT_ID_FIELD_KWARGS)
    args = models.JSONField(help_text="Decoded arguments; integers as decimal strings, bytes as 0x hex")
    removed = models.BooleanField(default=False, help_text="Orphaned by a reorg")
    removed_at = models.DateTimeField(null=True, blank=True)
    is_backfill = models.BooleanField(
        default=False, help_text="Older than the chain's notify age when indexed: triggers skip it by default"
    )
    indexed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("chain_id", "block_number", "log_index")
        constraints = [
            models.UniqueConstraint(
                fields=("chain", "block_hash", "log_index"), name="chainevent_unique_chain_blockhash_logindex"
            ),
        ]
        indexes = [
            models.Index(fields=("chain", "block_number", "log_index"), name="chainevent_chain_block"),
            models.Index(fields=("chain", "agent_id", "block_number"), name="chainevent_chain_agent"),
            models.Index(fields=("event_type", "chain"), name="chainevent_type_chain"),
            models.Index(fields=("indexed_at",), name="chainevent_indexed_at"),
            models.Index(fields=("removed_at",), name="chainevent_removed_at", condition=Q(removed=True)),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.chain_id}:{self.block_number}:{self.log_index}"

    @property
    def key(self) -> str:
        """Stable, human-readable identity used in payloads and idempotency keys."""
        return f"{self.chain_id}:{self.block_hash}:{self.log_index}"


class UnknownLog(models.Model):
    """A log from a registry address that could not be decoded (unknown topic0, wrong
    data length, ...). Recorded with the reason and skipped; never fatal."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="unknown_logs")
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    address = models.CharField(max_length=42)
    topics = models.JSONField()
    data = models.TextField()
    reason = models.TextField()
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(
                fields=("chain", "block_hash", "log_index"), name="unknownlog_unique_chain_blockhash_logindex"
            ),
        ]

    def __str__(self) -> str:
        return f"unknown log {self.chain_id}:{self.block_number}:{self.log_index}"
