"""Project indexed events onto the read model — in batches, inside the indexer's
transaction.

Why batches: the indexer commits thousands of events at a time, and one ORM round
trip per event would cap ingestion at a few hundred events per second. A batch is
applied in memory in chain order, then persisted with a fixed number of bulk
statements (creates, upserts, updates, one aggregate refresh), whatever its size.

Why rebuild on reorg: a removed event can have changed anything about its agent
(owner, URI, wallet, feedback, validation). Instead of writing an inverse for each
event type, every agent a reorg touched is reset and re-projected from its
remaining events — the same code path as normal indexing, so both agree by
construction.

Pitfalls handled here (erc8004 notes §4.5): agent id 0; 1-based per-client feedback
index (derived in chain order for v0.4 logs that lack it); revocation flips a flag
and aggregates exclude it; responses may target revoked feedback and repeat;
agentWallet only from the ``agentWallet`` MetadataSet (20 bytes, empty = cleared,
cleared *before* Transfer in the same transaction); the initial URI comes from
Registered, later ones from URIUpdated; validation responses overwrite and 0 is a
valid response.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from django.db.models import Count, Max, Q, Sum
from eth_utils import to_checksum_address

from erc8004.bulk import bulk_insert, bulk_update, bulk_upsert, instance_fast
from indexing.models import ChainEvent, ContractDeployment, Registry

from .models import (
    Agent,
    AgentMetadata,
    AgentTagStat,
    Feedback,
    FeedbackResponse,
    OperatorApproval,
    Validation,
    text_hash,
)

__all__ = ("ProjectionResult", "agent_aggregates_refresh", "projection_apply", "projection_rebuild_agents")

logger = logging.getLogger("erc8004.agents.projections")

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
AGENT_WALLET_KEY = "agentWallet"
EIGHTEEN_PLACES = Decimal("1e-18")

AgentKey = tuple[str, int]  # (identity registry address, agent id)
FeedbackKey = tuple[AgentKey, str, str, int]  # (agent, reputation registry, client, index)

_AGENT_RESET = {
    "owner": "",
    "approved": "",
    "agent_uri": "",
    "agent_wallet": "",
    "registration_seen": False,
    "registered_block": None,
    "registered_at": None,
    "registered_tx": "",
    "updated_block": None,
    "updated_at": None,
    "last_activity_at": None,
}
_AGENT_EVENT_FIELDS = tuple(_AGENT_RESET)


@dataclass(frozen=True)
class _Emitter:
    registry: str
    identity_address: str


def _emitters(chain_id: int) -> dict[str, _Emitter]:
    """Registry address (lower-case) → its kind and the identity registry its agent ids belong to."""
    deployments = list(ContractDeployment.objects.filter(chain_id=chain_id))
    identities = [d for d in deployments if d.registry == Registry.IDENTITY]
    fallback = next((d.address for d in identities if d.enabled and d.abi_version == "v1"), None) or next(
        (d.address for d in identities), ""
    )
    out = {}
    for d in deployments:
        identity = d.address if d.registry == Registry.IDENTITY else (d.identity_address or fallback)
        out[d.address.lower()] = _Emitter(d.registry, identity)
    return out


def _wallet_from(value_hex: str) -> str:
    raw = value_hex[2:]
    if len(raw) == 40:
        return to_checksum_address("0x" + raw)
    return ""  # empty (cleared) or not an address: no wallet


def _average(total: Decimal | None, count: int) -> Decimal | None:
    if not count or total is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 100
        return (Decimal(total) / count).quantize(EIGHTEEN_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass
class _Batch:
    """In-memory state of one projection batch; ``flush`` writes it in bulk."""

    chain_id: int
    emitters: dict[str, _Emitter]
    agents: dict[AgentKey, Agent] = field(default_factory=dict)
    new_agents: dict[AgentKey, Agent] = field(default_factory=dict)
    changed_agents: set[AgentKey] = field(default_factory=set)
    reputation_dirty: set[AgentKey] = field(default_factory=set)
    validation_dirty: set[AgentKey] = field(default_factory=set)
    metadata: dict[tuple[AgentKey, str], AgentMetadata] = field(default_factory=dict)
    metadata_deleted: set[tuple[AgentKey, str]] = field(default_factory=set)
    operators: dict[tuple[str, str, str], OperatorApproval] = field(default_factory=dict)
    new_feedback: dict[FeedbackKey, Feedback] = field(default_factory=dict)
    revocations: list[tuple[FeedbackKey, Any]] = field(default_factory=list)
    responses: list[tuple[FeedbackResponse, FeedbackKey]] = field(default_factory=list)
    validations: dict[tuple[str, str], Validation] = field(default_factory=dict)
    validations_new: set[tuple[str, str]] = field(default_factory=set)
    validations_changed: set[tuple[str, str]] = field(default_factory=set)
    next_legacy_index: dict[tuple[AgentKey, str, str], int] = field(default_factory=dict)
    uri_touched: set[AgentKey] = field(default_factory=set)

    # Loading

    def load(self, events: list[ChainEvent]) -> None:
        keys = {k for k in (self._agent_key(e) for e in events) if k is not None}
        if keys and not self.agents:
            ids = {agent_id for _, agent_id in keys}
            identities = {identity for identity, _ in keys}
            for agent in Agent.objects.filter(
                chain_id=self.chain_id, agent_id__in=ids, identity_address__in=identities
            ):
                self.agents[(agent.identity_address, int(agent.agent_id))] = agent
        hashes = {(e.address, e.args["requestHash"]) for e in events if e.event_type.startswith("Validation")}
        if hashes:
            for validation in Validation.objects.filter(
                chain_id=self.chain_id,
                request_hash__in={h for _, h in hashes},
                validation_address__in={a for a, _ in hashes},
            ):
                self.validations[(validation.validation_address, validation.request_hash)] = validation
        legacy = [e for e in events if e.event_type == "NewFeedback" and e.args.get("feedbackIndex") is None]
        if legacy:
            existing_agents = {a.pk: a for a in self.agents.values() if a.pk}
            if existing_agents:
                for row in (
                    Feedback.objects.filter(
                        agent_id__in=list(existing_agents),
                        reputation_address__in={e.address for e in legacy},
                        client_address__in={e.args["clientAddress"] for e in legacy},
                    )
                    .values("agent_id", "reputation_address", "client_address")
                    .annotate(last=Max("feedback_index"))
                ):
                    agent = existing_agents[row["agent_id"]]
                    key = (
                        (agent.identity_address, int(agent.agent_id)),
                        row["reputation_address"],
                        row["client_address"],
                    )
                    self.next_legacy_index[key] = row["last"] + 1

    def _agent_key(self, event: ChainEvent) -> AgentKey | None:
        if event.agent_id is None:
            return None
        emitter = self.emitters.get(event.address.lower())
        if emitter is None:
            return None
        return (emitter.identity_address, int(event.agent_id))

    def _agent(self, key: AgentKey) -> Agent:
        agent = self.agents.get(key)
        if agent is None:
            agent = instance_fast(Agent, {"chain_id": self.chain_id, "identity_address": key[0], "agent_id": key[1]})
            self.agents[key] = agent
            self.new_agents[key] = agent
        return agent

    # Applying

    def handle(self, event: ChainEvent) -> None:
        args = event.args
        kind = event.event_type
        if kind == "ApprovalForAll":
            emitter = self.emitters.get(event.address.lower())
            identity = emitter.identity_address if emitter else event.address
            self.operators[(identity, args["owner"], args["operator"])] = OperatorApproval(
                chain_id=self.chain_id,
                identity_address=identity,
                owner=args["owner"],
                operator=args["operator"],
                approved=bool(args["approved"]),
                updated_block=event.block_number,
            )
            return
        key = self._agent_key(event)
        if key is None:
            return
        agent = self._agent(key)
        self.changed_agents.add(key)
        if agent.last_activity_at is None or event.block_timestamp >= agent.last_activity_at:
            agent.last_activity_at = event.block_timestamp
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event, key, agent, args)

    def _identity_touched(self, event: ChainEvent, agent: Agent) -> None:
        agent.updated_block = event.block_number
        agent.updated_at = event.block_timestamp

    def _on_Transfer(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        agent.owner = args["to"] if args["to"] != ZERO_ADDRESS else ""
        agent.approved = ""  # ERC-721 clears the approval on transfer without an Approval event
        self._identity_touched(event, agent)

    def _on_Registered(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        self.uri_touched.add(key)
        agent.owner = args["owner"]
        agent.agent_uri = args["agentURI"]
        agent.registration_seen = True
        agent.registered_block = event.block_number
        agent.registered_at = event.block_timestamp
        agent.registered_tx = event.tx_hash
        self._identity_touched(event, agent)

    def _on_URIUpdated(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        self.uri_touched.add(key)
        agent.agent_uri = args["newURI"]
        self._identity_touched(event, agent)

    def _on_Approval(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        agent.approved = args["approved"] if args["approved"] != ZERO_ADDRESS else ""
        self._identity_touched(event, agent)

    def _on_MetadataSet(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        meta_key, value = args["metadataKey"], args["metadataValue"]
        slot = (key, text_hash(meta_key))
        if meta_key == AGENT_WALLET_KEY:
            agent.agent_wallet = _wallet_from(value)
            if not agent.agent_wallet:
                self.metadata.pop(slot, None)
                self.metadata_deleted.add(slot)
                self._identity_touched(event, agent)
                return
        self.metadata_deleted.discard(slot)
        self.metadata[slot] = instance_fast(
            AgentMetadata,
            {
                "key": meta_key,
                "key_hash": slot[1],
                "value": value,
                "updated_block": event.block_number,
                "updated_at": event.block_timestamp,
            },
        )
        self._identity_touched(event, agent)

    def _on_NewFeedback(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        client = args["clientAddress"]
        index = args.get("feedbackIndex")
        if index is None:  # v0.4 / v1.1 logs: number them per (agent, client) as the contract did
            slot = (key, event.address, client)
            index = self.next_legacy_index.get(slot, 1)
            self.next_legacy_index[slot] = index + 1
        feedback = instance_fast(
            Feedback,
            {
                "reputation_address": event.address,
                "client_address": client,
                "feedback_index": index,
                "value": Decimal(args["value"]),
                "value_decimals": args["valueDecimals"],
                "value_normalized": Decimal(args["valueNormalized"]),
                "tag1": args["tag1"],
                "tag1_hash": text_hash(args["tag1"]),
                "tag2": args["tag2"],
                "tag2_hash": text_hash(args["tag2"]),
                "endpoint": args["endpoint"],
                "feedback_uri": args["feedbackURI"],
                "feedback_hash": args["feedbackHash"],
                "abi_version": event.abi_version,
                "created_block": event.block_number,
                "created_at": event.block_timestamp,
                "tx_hash": event.tx_hash,
                "event_id": event.pk,
            },
        )
        feedback._agent_key = key  # type: ignore[attr-defined]  # resolved to a pk at flush
        self.new_feedback[(key, event.address, client, index)] = feedback
        self.reputation_dirty.add(key)

    def _on_FeedbackRevoked(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        fkey = (key, event.address, args["clientAddress"], args["feedbackIndex"])
        feedback = self.new_feedback.get(fkey)
        if feedback is not None:
            feedback.revoked, feedback.revoked_at = True, event.block_timestamp
        else:
            self.revocations.append((fkey, event.block_timestamp))
        self.reputation_dirty.add(key)

    def _on_ResponseAppended(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        fkey = (key, event.address, args["clientAddress"], args["feedbackIndex"])
        response = instance_fast(
            FeedbackResponse,
            {
                "reputation_address": event.address,
                "client_address": args["clientAddress"],
                "feedback_index": args["feedbackIndex"],
                "responder": args["responder"],
                "response_uri": args["responseURI"],
                "response_hash": args["responseHash"],
                "created_block": event.block_number,
                "created_at": event.block_timestamp,
                "event_id": event.pk,
            },
        )
        self.responses.append((response, fkey))

    def _validation(self, event: ChainEvent, key: AgentKey, agent: Agent, request_hash: str) -> Validation:
        slot = (event.address, request_hash)
        validation = self.validations.get(slot)
        if validation is None:
            validation = instance_fast(
                Validation,
                {"chain_id": self.chain_id, "validation_address": event.address, "request_hash": request_hash},
            )
            self.validations[slot] = validation
            self.validations_new.add(slot)
        elif slot not in self.validations_new:
            self.validations_changed.add(slot)
        validation._agent_key = key  # type: ignore[attr-defined]
        return validation

    def _on_ValidationRequest(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        validation = self._validation(event, key, agent, args["requestHash"])
        validation.validator_address = args["validatorAddress"]
        validation.request_uri = args["requestURI"]
        validation.requested_block = event.block_number
        validation.requested_at = event.block_timestamp
        validation.abi_version = event.abi_version if validation.response is None else validation.abi_version

    def _on_ValidationResponse(self, event: ChainEvent, key: AgentKey, agent: Agent, args: dict) -> None:
        validation = self._validation(event, key, agent, args["requestHash"])
        if not validation.validator_address:
            validation.validator_address = args["validatorAddress"]
        validation.response = args["response"]
        validation.response_uri = args["responseURI"]
        validation.response_hash = args["responseHash"]
        validation.tag = args["tag"]
        validation.tag_hash = text_hash(args["tag"]) if args["tag"] else ""
        validation.status = Validation.Status.RESPONDED
        validation.response_count += 1
        validation.responded_at = event.block_timestamp
        validation.abi_version = event.abi_version
        self.validation_dirty.add(key)

    # Writing

    def flush(self) -> None:
        if self.new_agents:
            bulk_insert(list(self.new_agents.values()))
        existing_changed = [self.agents[k] for k in self.changed_agents if k not in self.new_agents]
        if existing_changed:
            bulk_update(existing_changed, _AGENT_EVENT_FIELDS)
        self._flush_metadata()
        if self.operators:
            bulk_upsert(
                list(self.operators.values()),
                unique_fields=("chain", "identity_address", "owner", "operator"),
                update_fields=("approved", "updated_block"),
            )
        self._flush_feedback()
        self._flush_validations()
        dirty = {self.agents[k].pk for k in self.reputation_dirty | self.validation_dirty}
        if dirty:
            agent_aggregates_refresh(agent_pks=sorted(dirty))

    def _flush_metadata(self) -> None:
        # One DELETE per metadata key (in practice: agentWallet cleared), not per agent.
        by_hash: dict[str, list[int]] = defaultdict(list)
        for key, key_hash in self.metadata_deleted:
            by_hash[key_hash].append(self.agents[key].pk)
        for key_hash, agent_pks in by_hash.items():
            AgentMetadata.objects.filter(agent_id__in=agent_pks, key_hash=key_hash).delete()
        if not self.metadata:
            return
        rows = []
        for (key, _), row in self.metadata.items():
            row.agent = self.agents[key]
            rows.append(row)
        bulk_upsert(
            rows,
            unique_fields=("agent", "key_hash"),
            update_fields=("key", "value", "updated_block", "updated_at"),
        )

    def _flush_feedback(self) -> None:
        if self.new_feedback:
            # A contract at a configured address could repeat a key; keep the first, say so.
            existing = self._feedback_pks(list(self.new_feedback))
            fresh = []
            for fkey, feedback in self.new_feedback.items():
                if fkey in existing:
                    logger.warning("feedback %s already stored; duplicate log skipped", fkey)
                    continue
                feedback.agent = self.agents[fkey[0]]
                fresh.append(feedback)
            bulk_insert(fresh)
        if self.revocations:
            # One UPDATE by id for the batch; a key revoked twice keeps its last time
            # (chain order), as the per-time updates in chain order did.
            last: dict[FeedbackKey, Any] = {}
            for fkey, revoked_at in self.revocations:
                last[fkey] = revoked_at
            stored = self._feedback_pks(list(last))
            bulk_update(
                [
                    instance_fast(Feedback, {"id": pk, "revoked": True, "revoked_at": last[fkey]})
                    for fkey, pk in stored.items()
                ],
                ("revoked", "revoked_at"),
            )
        if self.responses:
            missing = [fkey for _, fkey in self.responses if fkey not in self.new_feedback]
            known = self._feedback_pks(missing) if missing else {}
            rows = []
            for response, fkey in self.responses:
                response.agent = self.agents[fkey[0]]
                target = self.new_feedback.get(fkey)
                response.feedback_id = target.pk if target is not None and target.pk else known.get(fkey)
                rows.append(response)
            bulk_insert(rows)

    def _feedback_pks(self, fkeys: list[FeedbackKey]) -> dict[FeedbackKey, int]:
        """Stored feedback ids for keys, in one query per agent group."""
        out: dict[FeedbackKey, int] = {}
        agents = {self.agents[k[0]].pk: k[0] for k in fkeys if self.agents.get(k[0]) and self.agents[k[0]].pk}
        if not agents:
            return out
        wanted = set(fkeys)
        for pk, agent_pk, reputation, client, index in Feedback.objects.filter(
            agent_id__in=list(agents),
            client_address__in={k[2] for k in fkeys},
            feedback_index__in={k[3] for k in fkeys},
        ).values_list("pk", "agent_id", "reputation_address", "client_address", "feedback_index"):
            fkey = (agents[agent_pk], reputation, client, index)
            if fkey in wanted:
                out[fkey] = pk
        return out

    def _flush_validations(self) -> None:
        new, changed = [], []
        for slot, validation in self.validations.items():
            key = getattr(validation, "_agent_key", None)
            if key is None:
                continue
            validation.agent = self.agents[key]
            if slot in self.validations_new:
                new.append(validation)
            elif slot in self.validations_changed:
                changed.append(validation)
        if new:
            bulk_insert(new)
        if changed:
            bulk_update(
                changed,
                (
                    "validator_address",
                    "request_uri",
                    "response",
                    "response_uri",
                    "response_hash",
                    "tag",
                    "tag_hash",
                    "status",
                    "response_count",
                    "abi_version",
                    "requested_block",
                    "requested_at",
                    "responded_at",
                ),
            )


def agent_aggregates_refresh(*, agent_pks: list[int]) -> None:
    """Recompute reputation and validation aggregates of these agents from their rows.

    Sums are exact (NUMERIC in PostgreSQL); the division happens here at 100 digits and
    is rounded half-even to 18 places, so the stored average is the exact mean.
    """
    feedback = {
        row["agent_id"]: row
        for row in Feedback.objects.filter(agent_id__in=agent_pks, revoked=False)
        .values("agent_id")
        .annotate(count=Count("id"), total=Sum("value_normalized"), clients=Count("client_address", distinct=True))
    }
    validations = {
        row["agent_id"]: row
        for row in Validation.objects.filter(agent_id__in=agent_pks, status=Validation.Status.RESPONDED)
        .values("agent_id")
        .annotate(count=Count("id"), total=Sum("response"))
    }
    # Rows to UPDATE by id (no need to read them: an id that is gone updates nothing).
    agents = [instance_fast(Agent, {"id": pk}) for pk in agent_pks]
    for agent in agents:
        f = feedback.get(agent.pk)
        agent.feedback_count = f["count"] if f else 0
        agent.feedback_average = _average(f["total"], f["count"]) if f else None
        agent.feedback_clients = f["clients"] if f else 0
        v = validations.get(agent.pk)
        agent.validation_count = v["count"] if v else 0
        agent.validation_average = (
            (Decimal(v["total"]) / v["count"]).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN) if v else None
        )
    bulk_update(
        agents,
        ("feedback_count", "feedback_average", "feedback_clients", "validation_count", "validation_average"),
    )
    AgentTagStat.objects.filter(agent_id__in=agent_pks).delete()
    stats = [
        instance_fast(
            AgentTagStat,
            {
                "agent_id": row["agent_id"],
                "tag1": row["tag1"],
                "tag1_hash": row["tag1_hash"],
                "count": row["count"],
                "average": _average(row["total"], row["count"]),
            },
        )
        for row in Feedback.objects.filter(agent_id__in=agent_pks, revoked=False)
        .values("agent_id", "tag1_hash")
        .annotate(count=Count("id"), total=Sum("value_normalized"), tag1=Max("tag1"))
    ]
    bulk_insert(stats)


@dataclass(frozen=True)
class ProjectionResult:
    """What a batch changed that other work depends on: agents whose URI was set or
    changed (their registration file must be fetched) and new feedback carrying a
    file URI."""

    uri_agent_pks: list[int]
    file_feedback_uris: dict[int, str]  # new feedback pk -> its feedbackURI (only those with one)


def projection_apply(*, chain_id: int, events: list[ChainEvent]) -> ProjectionResult:
    """Apply newly indexed events (chain order) to the read model."""
    if not events:
        return ProjectionResult([], {})
    batch = _Batch(chain_id=chain_id, emitters=_emitters(chain_id))
    batch.load(events)
    for event in events:
        batch.handle(event)
    batch.flush()
    return ProjectionResult(
        uri_agent_pks=[batch.agents[k].pk for k in batch.uri_touched],
        file_feedback_uris={f.pk: f.feedback_uri for f in batch.new_feedback.values() if f.pk and f.feedback_uri},
    )


def projection_rebuild_agents(*, chain_id: int, events: list[ChainEvent]) -> list[int]:
    """Re-project every agent (and operator set) the given removed events touched;
    returns the pks of the agents that still exist (their URI may have changed)."""
    emitters = _emitters(chain_id)
    agent_keys: set[AgentKey] = set()
    owners: set[tuple[str, str]] = set()
    for event in events:
        emitter = emitters.get(event.address.lower())
        if emitter is None:
            continue
        if event.event_type == "ApprovalForAll":
            owners.add((emitter.identity_address, event.args["owner"]))
        elif event.agent_id is not None:
            agent_keys.add((emitter.identity_address, int(event.agent_id)))
    rebuilt: list[int] = []
    if agent_keys:
        rebuilt = _rebuild_agents(chain_id=chain_id, emitters=emitters, keys=agent_keys)
    if owners:
        _rebuild_operators(chain_id=chain_id, emitters=emitters, owners=owners)
    return rebuilt


def _addresses_for_identity(emitters: dict[str, _Emitter], identity: str) -> list[str]:
    return [address for address, e in emitters.items() if e.identity_address == identity]


def _rebuild_agents(*, chain_id: int, emitters: dict[str, _Emitter], keys: set[AgentKey]) -> list[int]:
    kept: list[int] = []
    by_identity: dict[str, set[int]] = defaultdict(set)
    for identity, agent_id in keys:
        by_identity[identity].add(agent_id)
    for identity, ids in by_identity.items():
        agents = list(Agent.objects.filter(chain_id=chain_id, identity_address=identity, agent_id__in=ids))
        pks = [a.pk for a in agents]
        Feedback.objects.filter(agent_id__in=pks).delete()
        FeedbackResponse.objects.filter(agent_id__in=pks).delete()
        AgentMetadata.objects.filter(agent_id__in=pks).delete()
        Validation.objects.filter(agent_id__in=pks).delete()
        AgentTagStat.objects.filter(agent_id__in=pks).delete()
        for agent in agents:
            for name, value in _AGENT_RESET.items():
                setattr(agent, name, value)
        addresses = _addresses_for_identity(emitters, identity)
        remaining = list(
            ChainEvent.objects.filter(chain_id=chain_id, agent_id__in=ids, removed=False)
            .filter(Q(address__in=[to_checksum_address(a) for a in addresses]))
            .order_by("block_number", "log_index")
        )
        batch = _Batch(chain_id=chain_id, emitters=emitters)
        batch.agents = {(a.identity_address, int(a.agent_id)): a for a in agents}
        for event in remaining:
            batch.handle(event)
        # Agents reset but not touched by the replay still need their blank state saved.
        batch.changed_agents |= set(batch.agents) - set(batch.new_agents)
        batch.reputation_dirty |= {k for k in batch.agents if k not in batch.new_agents}
        batch.flush()
        seen = {(e.address.lower(), int(e.agent_id)) for e in remaining if e.agent_id is not None}
        orphans = [a.pk for a in agents if not any((addr, int(a.agent_id)) in seen for addr in addresses)]
        if orphans:
            Agent.objects.filter(pk__in=orphans).delete()
        kept += [a.pk for a in agents if a.pk not in orphans]
    return kept


def _rebuild_operators(*, chain_id: int, emitters: dict[str, _Emitter], owners: set[tuple[str, str]]) -> None:
    for identity, owner in owners:
        OperatorApproval.objects.filter(chain_id=chain_id, identity_address=identity, owner=owner).delete()
        addresses = [to_checksum_address(a) for a in _addresses_for_identity(emitters, identity)]
        events = list(
            ChainEvent.objects.filter(
                chain_id=chain_id, event_type="ApprovalForAll", removed=False, address__in=addresses
            )
            .filter(args__owner=owner)
            .order_by("block_number", "log_index")
        )
        batch = _Batch(chain_id=chain_id, emitters=emitters)
        for event in events:
            batch.handle(event)
        batch.flush()
