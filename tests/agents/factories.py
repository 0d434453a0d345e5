"""Read-model rows built directly with the ORM (no chain needed): the API and admin
tests describe agents, feedback and validations as data."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from eth_utils import keccak, to_checksum_address

from agents.models import Agent, Feedback, FeedbackResponse, Validation, text_hash
from indexing.models import Chain, ChainEvent, ContractDeployment

CHAIN_ID = 31337
IDENTITY = to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")
REPUTATION = to_checksum_address("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512")
VALIDATION = to_checksum_address("0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0")
OTHER_IDENTITY = to_checksum_address("0x8004a6090cd10a7288092483047b097295fb8847")
T0 = datetime(2026, 2, 1, tzinfo=UTC)

_seq = itertools.count(1)


def address(n: int) -> str:
    return to_checksum_address("0x" + keccak(text=f"address {n}").hex()[:40])


def chain_make(chain_id: int = CHAIN_ID, *, name: str = "devnet", with_deployments: bool = True) -> Chain:
    chain, _ = Chain.objects.get_or_create(chain_id=chain_id, defaults={"name": name})
    if with_deployments:
        for registry, addr in (("identity", IDENTITY), ("reputation", REPUTATION), ("validation", VALIDATION)):
            ContractDeployment.objects.get_or_create(
                chain=chain,
                address=addr,
                defaults={"registry": registry, "identity_address": "" if registry == "identity" else IDENTITY},
            )
    return chain


def agent_make(chain: Chain, agent_id: int, *, identity: str = IDENTITY, **fields) -> Agent:
    defaults = {
        "owner": address(1000 + agent_id),
        "registration_seen": True,
        "registered_block": 100 + agent_id,
        "registered_at": T0 + timedelta(minutes=agent_id),
        "last_activity_at": T0 + timedelta(minutes=agent_id),
        "agent_uri": f"https://agents.example/{agent_id}.json",
    }
    defaults.update(fields)
    return Agent.objects.create(chain=chain, identity_address=identity, agent_id=agent_id, **defaults)


def feedback_make(
    agent: Agent,
    client: str,
    index: int,
    value: int,
    decimals: int = 0,
    *,
    tag1: str = "",
    tag2: str = "",
    revoked: bool = False,
    created_at: datetime | None = None,
    **fields,
) -> Feedback:
    n = next(_seq)
    return Feedback.objects.create(
        agent=agent,
        reputation_address=REPUTATION,
        client_address=client,
        feedback_index=index,
        value=Decimal(value),
        value_decimals=decimals,
        value_normalized=Decimal(f"{value}e-{decimals}"),
        tag1=tag1,
        tag1_hash=text_hash(tag1),
        tag2=tag2,
        tag2_hash=text_hash(tag2),
        revoked=revoked,
        created_block=1000 + n,
        created_at=created_at or T0 + timedelta(seconds=n),
        tx_hash="0x" + f"{n:064x}",
        **fields,
    )


def response_make(feedback: Feedback, responder: str, uri: str = "ipfs://response") -> FeedbackResponse:
    n = next(_seq)
    event = event_make(feedback.agent.chain, "ResponseAppended", agent_id=int(feedback.agent.agent_id), block=5000 + n)
    return FeedbackResponse.objects.create(
        agent=feedback.agent,
        feedback=feedback,
        reputation_address=feedback.reputation_address,
        client_address=feedback.client_address,
        feedback_index=feedback.feedback_index,
        responder=responder,
        response_uri=uri,
        response_hash="0x" + "00" * 32,
        created_block=5000 + n,
        created_at=T0 + timedelta(hours=1, seconds=n),
        event=event,
    )


def validation_make(agent: Agent, validator: str, *, response: int | None = None, tag: str = "") -> Validation:
    n = next(_seq)
    return Validation.objects.create(
        chain=agent.chain,
        agent=agent,
        validation_address=VALIDATION,
        request_hash="0x" + keccak(text=f"request {n}").hex(),
        validator_address=validator,
        request_uri=f"ipfs://request-{n}",
        response=response,
        tag=tag,
        tag_hash=text_hash(tag) if tag else "",
        status=Validation.Status.PENDING if response is None else Validation.Status.RESPONDED,
        response_count=0 if response is None else 1,
        requested_block=2000 + n,
        requested_at=T0 + timedelta(seconds=n),
    )


def event_make(
    chain: Chain,
    event_type: str,
    *,
    agent_id: int | None = None,
    block: int = 1,
    log_index: int | None = None,
    address_: str = IDENTITY,
    registry: str = "identity",
    args: dict | None = None,
    removed: bool = False,
) -> ChainEvent:
    n = next(_seq)
    return ChainEvent.objects.create(
        chain=chain,
        block_number=block,
        block_hash="0x" + keccak(text=f"block {block}").hex(),
        block_timestamp=T0 + timedelta(seconds=block),
        tx_hash="0x" + keccak(text=f"tx {n}").hex(),
        tx_index=0,
        log_index=n if log_index is None else log_index,
        address=address_,
        registry=registry,
        event_type=event_type,
        agent_id=agent_id,
        args=args or ({"agentId": str(agent_id)} if agent_id is not None else {}),
        removed=removed,
    )
