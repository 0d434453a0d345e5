"""Read-side queries of the public API: parsing public ids, resolving them to rows,
and the querysets lists start from.

Public agent ids (agent0's ``chainId:agentId`` convention, extended):

* ``{chain_id}:{agent_id}`` — the agent on the chain's primary identity registry
  (its enabled v1 identity deployment);
* ``{chain_id}:{identity_address}:{agent_id}`` — any other identity registry on the
  chain (v0.4 testnet registries, a second deployment).

An optional ``eip155:`` prefix is accepted, so the spec's ``agentRegistry`` string
plus ``:agentId`` works as an id too.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete, post_save
from eth_utils import to_checksum_address

from indexing.models import ChainEvent, ContractDeployment, Registry

from ..models import Agent, AgentMetadata, Feedback, FeedbackResponse, OperatorApproval, Validation

__all__ = (
    "AgentRef",
    "IdentityDirectory",
    "agent_find",
    "agent_list_queryset",
    "agent_metadata_list",
    "agent_operators_list",
    "agent_ref_parse",
    "event_list_queryset",
    "feedback_find",
    "feedback_list_queryset",
    "feedback_ref_parse",
    "response_list_queryset",
    "validation_find",
    "validation_list_queryset",
)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
UINT256_MAX = 2**256 - 1
# Big columns lists never show; deferring them keeps list pages small and fast.
# Lists load only the columns they render: model construction is a large part of a
# list request's time, and the joined rows (agent, files) are wide.
_AGENT_KEY = ("agent__chain_id", "agent__identity_address", "agent__agent_id")
_REGISTRATION_FILE_SUMMARY = tuple(
    f"registration_file__{name}" for name in ("uri", "status", "error", "fetched_at", "next_refetch_at")
)
_FEEDBACK_FILE_SUMMARY = tuple(
    f"file__{name}" for name in ("uri", "status", "hash_status", "error", "fetched_at", "text")
)


def _own_fields(model: type) -> list[str]:
    return [f.name for f in model._meta.concrete_fields]


def address_normalize(value: str) -> str:
    """EIP-55 checksummed form of a 0x address (any case accepted); ValueError otherwise."""
    value = value.strip()
    if not _ADDRESS.match(value):
        raise ValueError(f"{value[:50]!r} is not a 0x address of 40 hex digits")
    return to_checksum_address(value)


def _uint(value: str, what: str, maximum: int) -> int:
    if not _UINT.match(value) or int(value) > maximum:
        raise ValueError(f"{what} must be a whole number between 0 and {maximum}")
    return int(value)


@dataclass(frozen=True)
class AgentRef:
    chain_id: int
    agent_id: int
    identity_address: str | None = None  # None: the chain's primary identity registry


def agent_ref_parse(value: str) -> AgentRef:
    """Parse a public agent id; ValueError with a message a client can act on."""
    parts = value.strip().split(":")
    if parts and parts[0].lower() == "eip155":
        parts = parts[1:]
    if len(parts) not in (2, 3):
        raise ValueError("an agent id is {chain_id}:{agent_id} or {chain_id}:{identity_address}:{agent_id}")
    chain_id = _uint(parts[0], "chain id", 2**63 - 1)
    agent_id = _uint(parts[-1], "agent id", UINT256_MAX)
    identity = address_normalize(parts[1]) if len(parts) == 3 else None
    return AgentRef(chain_id=chain_id, agent_id=agent_id, identity_address=identity)


@dataclass(frozen=True)
class FeedbackRef:
    agent: AgentRef
    client_address: str
    feedback_index: int


def feedback_ref_parse(value: str) -> FeedbackRef:
    """``{agent id}:{client address}:{feedback index}`` (agent0's feedback id shape)."""
    head, sep, index = value.strip().rpartition(":")
    agent_part, sep2, client = head.rpartition(":")
    if not sep or not sep2:
        raise ValueError("a feedback id is {agent id}:{client address}:{feedback index}")
    return FeedbackRef(
        agent=agent_ref_parse(agent_part),
        client_address=address_normalize(client),
        feedback_index=_uint(index, "feedback index", 2**64 - 1),
    )


@dataclass
class IdentityDirectory:
    """Which identity registry each registry address belongs to, per chain — loaded in
    one query per request (deployments are a small table), so building public ids for
    a page of rows costs no extra queries."""

    primary: dict[int, str] = field(default_factory=dict)
    emitters: dict[tuple[int, str], str] = field(default_factory=dict)  # (chain, address lower) → identity
    addresses: dict[tuple[int, str], str] = field(default_factory=dict)  # (chain, address lower) → address

    @classmethod
    def load(cls) -> IdentityDirectory:
        deployments = list(
            ContractDeployment.objects.order_by("chain_id", "registry", "address").values_list(
                "chain_id", "registry", "address", "identity_address", "enabled", "abi_version"
            )
        )
        directory = cls()
        identities: dict[int, list[tuple[str, bool, str]]] = {}
        for chain_id, registry, address, _, enabled, abi_version in deployments:
            if registry == Registry.IDENTITY:
                identities.setdefault(chain_id, []).append((address, enabled, abi_version))
        fallback: dict[int, str] = {}
        for chain_id, rows in identities.items():
            # Public ids: the enabled v1 identity registry, else a v1 one, else any.
            ranked = sorted(rows, key=lambda r: (not (r[1] and r[2] == "v1"), r[2] != "v1"))
            directory.primary[chain_id] = ranked[0][0]
            # Registries with a blank identity_address: the projector's rule, so ids agree
            # with the rows it wrote (agents/projections.py ``_emitters``).
            fallback[chain_id] = next((a for a, enabled, v in rows if enabled and v == "v1"), rows[0][0])
        for chain_id, registry, address, identity, _, _ in deployments:
            owner = address if registry == Registry.IDENTITY else identity or fallback.get(chain_id, "")
            directory.emitters[(chain_id, address.lower())] = owner
            directory.addresses[(chain_id, address.lower())] = address
        return directory

    @classmethod
    def cached(cls) -> IdentityDirectory:
        """The directory, reloaded at most every ``API_DEPLOYMENTS_CACHE_SECONDS``
        (deployments change a few times a year; loading them is a query and a
        millisecond of Python on every request otherwise). Saving or deleting a
        deployment in this process drops the cache at once."""
        ttl = getattr(settings, "API_DEPLOYMENTS_CACHE_SECONDS", 0)
        with _directory_lock:
            entry = _directory_cache.get("directory")
            if entry is not None and ttl > 0 and time.monotonic() - entry[0] < ttl:
                return entry[1]
        directory = cls.load()
        with _directory_lock:
            _directory_cache["directory"] = (time.monotonic(), directory)
        return directory

    @classmethod
    def for_request(cls, request) -> IdentityDirectory:
        """One directory per request, shared by filters, views and serializers."""
        directory = getattr(request, "_identity_directory", None)
        if directory is None:
            directory = cls.cached()
            request._identity_directory = directory
        return directory

    def identity_of(self, ref: AgentRef) -> str | None:
        return ref.identity_address or self.primary.get(ref.chain_id)

    def agent_public_id(self, chain_id: int, identity_address: str, agent_id: int) -> str:
        agent_id = int(agent_id)
        if self.primary.get(chain_id, "").lower() == identity_address.lower():
            return f"{chain_id}:{agent_id}"
        return f"{chain_id}:{identity_address}:{agent_id}"

    def event_agent_public_id(self, event: ChainEvent) -> str | None:
        if event.agent_id is None:
            return None
        identity = self.emitters.get((event.chain_id, event.address.lower()))
        return self.agent_public_id(event.chain_id, identity, int(event.agent_id)) if identity else None

    def registries_of(self, chain_id: int, identity_address: str) -> list[str]:
        """Every registry address whose agent ids refer to this identity registry."""
        return [
            self.addresses[(chain, lower)]
            for (chain, lower), identity in self.emitters.items()
            if chain == chain_id and identity.lower() == identity_address.lower()
        ]


_directory_lock = threading.Lock()
_directory_cache: dict[str, tuple[float, IdentityDirectory]] = {}


def _directory_invalidate(**kwargs) -> None:
    with _directory_lock:
        _directory_cache.clear()


post_save.connect(_directory_invalidate, sender=ContractDeployment, dispatch_uid="agents.api.directory_saved")
post_delete.connect(_directory_invalidate, sender=ContractDeployment, dispatch_uid="agents.api.directory_deleted")


def agent_find(*, ref: AgentRef, directory: IdentityDirectory) -> Agent | None:
    identity = directory.identity_of(ref)
    if identity is None:
        return None
    return (
        Agent.objects.select_related("chain", "registration_file")
        .filter(chain_id=ref.chain_id, identity_address=identity, agent_id=ref.agent_id)
        .first()
    )


def agent_pk_find(*, ref: AgentRef, directory: IdentityDirectory) -> int | None:
    identity = directory.identity_of(ref)
    if identity is None:
        return None
    return (
        Agent.objects.filter(chain_id=ref.chain_id, identity_address=identity, agent_id=ref.agent_id)
        .values_list("pk", flat=True)
        .first()
    )


def agent_list_queryset() -> QuerySet[Agent]:
    return Agent.objects.select_related("registration_file").only(*_own_fields(Agent), *_REGISTRATION_FILE_SUMMARY)


def agent_metadata_list(*, agent: Agent) -> list[AgentMetadata]:
    return list(AgentMetadata.objects.filter(agent=agent).order_by("key"))


def agent_operators_list(*, agent: Agent) -> list[str]:
    """ERC-721 operators (``setApprovalForAll``) of the agent's owner on its registry."""
    if not agent.owner:
        return []
    return list(
        OperatorApproval.objects.filter(
            chain_id=agent.chain_id, identity_address=agent.identity_address, owner=agent.owner, approved=True
        )
        .order_by("operator")
        .values_list("operator", flat=True)
    )


def _response_count() -> Coalesce:
    counts = (
        FeedbackResponse.objects.filter(feedback=OuterRef("pk"))
        .order_by()
        .values("feedback")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def feedback_list_queryset() -> QuerySet[Feedback]:
    """Feedback with its agent (for the public id) and file status; the response count
    is a correlated subquery per returned row (one query per page, not per row)."""
    return (
        Feedback.objects.select_related("agent", "file")
        .only(*_own_fields(Feedback), *_AGENT_KEY, *_FEEDBACK_FILE_SUMMARY)
        .annotate(response_count=_response_count())
    )


def feedback_find(*, ref: FeedbackRef, directory: IdentityDirectory) -> Feedback | None:
    """The feedback with this key. Two reputation registries of one identity registry
    could both hold the key; the earlier stored one is returned (its
    ``reputation_address`` is in the response)."""
    identity = directory.identity_of(ref.agent)
    if identity is None:
        return None
    return (
        Feedback.objects.select_related("agent", "file")
        .annotate(response_count=_response_count())
        .filter(
            agent__chain_id=ref.agent.chain_id,
            agent__identity_address=identity,
            agent__agent_id=ref.agent.agent_id,
            client_address=ref.client_address,
            feedback_index=ref.feedback_index,
        )
        .order_by("id")
        .first()
    )


def response_list_queryset(*, feedback: Feedback) -> QuerySet[FeedbackResponse]:
    return FeedbackResponse.objects.filter(feedback=feedback).select_related("event").defer("event__args")


def validation_list_queryset() -> QuerySet[Validation]:
    return Validation.objects.select_related("agent").only(*_own_fields(Validation), *_AGENT_KEY)


def validation_find(*, chain_id: int, request_hash: str) -> Validation | None:
    if not _HASH.match(request_hash):
        return None
    return (
        validation_list_queryset().filter(chain_id=chain_id, request_hash=request_hash.lower()).order_by("id").first()
    )


def event_list_queryset() -> QuerySet[ChainEvent]:
    return ChainEvent.objects.all()
