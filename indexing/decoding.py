"""Decode registry logs by topic0 into canonical event arguments.

Every event shape we know — the current v1 (contracts 2.0.0) events and the older
v0.4 / v1.1 testnet shapes — is declared once below by its Solidity signature. The
decoder maps each shape onto one *canonical* argument set per event type, so the
projections and triggers above see ``NewFeedback`` with ``value``/``valueDecimals``
whether the log came from a 2026 contract or an Oct-2025 testnet one.

Canonical JSON conventions (also documented in docs/architecture.md):

* ``uint256`` / ``int128`` values are decimal **strings** (they exceed JSON's exact
  integer range); small integers (uint8, uint64 indexes) are JSON numbers;
* addresses are EIP-55 checksummed; ``bytes``/``bytes32`` are ``0x`` hex;
* ``string`` values are decoded as UTF-8 with replacement and NUL characters
  replaced, so a hostile string can never break JSON or PostgreSQL.

A log whose topic0 is known but whose topics or data do not fit is a
:class:`LogDecodeError` — the caller records it and moves on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from eth_utils import keccak, to_checksum_address

__all__ = (
    "EVENT_SPECS",
    "EVENT_TYPES",
    "DecodedLog",
    "EventSpec",
    "LogDecodeError",
    "abi_decode_strict",
    "known_topics",
    "log_decode",
    "spec_for_topic",
)

_SIGNATURE_RE = re.compile(r"^(\w+)\((.*)\)$")


class LogDecodeError(ValueError):
    """The log matched a known topic0 but could not be decoded; the message says why."""


@dataclass(frozen=True)
class EventInput:
    name: str
    type: str
    indexed: bool


@dataclass(frozen=True)
class EventSpec:
    """One on-chain event shape, declared by its Solidity signature."""

    name: str
    registry: str  # identity | reputation | validation | any
    abi_version: str  # v1 | v1.1 | v0.4
    inputs: tuple[EventInput, ...]
    topic0: str = field(init=False)

    def __post_init__(self) -> None:
        types = ",".join(i.type for i in self.inputs)
        object.__setattr__(self, "topic0", "0x" + keccak(text=f"{self.name}({types})").hex())

    @property
    def indexed(self) -> tuple[EventInput, ...]:
        return tuple(i for i in self.inputs if i.indexed)

    @property
    def data_inputs(self) -> tuple[EventInput, ...]:
        return tuple(i for i in self.inputs if not i.indexed)

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(i.type for i in self.inputs)})"


def _spec(registry: str, abi_version: str, declaration: str) -> EventSpec:
    """Build a spec from ``Name(type [indexed] name, ...)`` as written in Solidity."""
    match = _SIGNATURE_RE.match(declaration.strip())
    if not match:
        raise ValueError(declaration)
    name, body = match.groups()
    inputs = []
    for part in filter(None, (p.strip() for p in body.split(","))):
        words = part.split()
        inputs.append(EventInput(name=words[-1], type=words[0], indexed="indexed" in words[1:-1]))
    return EventSpec(name=name, registry=registry, abi_version=abi_version, inputs=tuple(inputs))


EVENT_SPECS: tuple[EventSpec, ...] = (
    # Identity registry, v1 (contracts 2.0.0).
    _spec("identity", "v1", "Registered(uint256 indexed agentId, string agentURI, address indexed owner)"),
    _spec(
        "identity",
        "v1",
        "MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, "
        "bytes metadataValue)",
    ),
    _spec("identity", "v1", "URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy)"),
    _spec("identity", "v1", "Transfer(address indexed from, address indexed to, uint256 indexed tokenId)"),
    _spec("identity", "v1", "Approval(address indexed owner, address indexed approved, uint256 indexed tokenId)"),
    _spec("identity", "v1", "ApprovalForAll(address indexed owner, address indexed operator, bool approved)"),
    # Reputation registry, v1.
    _spec(
        "reputation",
        "v1",
        "NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, int128 value, "
        "uint8 valueDecimals, string indexed indexedTag1, string tag1, string tag2, string endpoint, "
        "string feedbackURI, bytes32 feedbackHash)",
    ),
    _spec(
        "reputation",
        "v1",
        "FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex)",
    ),
    _spec(
        "reputation",
        "v1",
        "ResponseAppended(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, "
        "address indexed responder, string responseURI, bytes32 responseHash)",
    ),
    # Validation registry, v1.
    _spec(
        "validation",
        "v1",
        "ValidationRequest(address indexed validatorAddress, uint256 indexed agentId, string requestURI, "
        "bytes32 indexed requestHash)",
    ),
    _spec(
        "validation",
        "v1",
        "ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, "
        "uint8 response, string responseURI, bytes32 responseHash, string tag)",
    ),
    # Every UUPS proxy: an implementation change is worth seeing in the event feed.
    _spec("any", "v1", "Upgraded(address indexed implementation)"),
    # Oct-2025 testnet contracts ("v0.4"). Registered, MetadataSet, FeedbackRevoked,
    # ResponseAppended and ValidationRequest had the same shape as v1.
    _spec("identity", "v0.4", "UriUpdated(uint256 indexed agentId, string newUri, address indexed updatedBy)"),
    _spec(
        "reputation",
        "v0.4",
        "NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint8 score, bytes32 indexed tag1, "
        "bytes32 tag2, string feedbackUri, bytes32 feedbackHash)",
    ),
    _spec(
        "validation",
        "v0.4",
        "ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, "
        "uint8 response, string responseUri, bytes32 responseHash, bytes32 tag)",
    ),
    # Nov-2025 contracts ("v1.1"): string tags, uint8 score, string metadata values.
    _spec(
        "reputation",
        "v1.1",
        "NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint8 score, string indexed tag1, "
        "string tag2, string feedbackUri, bytes32 feedbackHash)",
    ),
    _spec(
        "identity",
        "v1.1",
        "MetadataSet(uint256 indexed agentId, string indexed indexedKey, string metadataKey, string metadataValue)",
    ),
)

# The canonical event types every shape above decodes to (v0.4's UriUpdated is
# URIUpdated): the one list the API filters and trigger conditions validate against.
EVENT_TYPES: tuple[str, ...] = (
    "Registered",
    "URIUpdated",
    "MetadataSet",
    "Transfer",
    "Approval",
    "ApprovalForAll",
    "NewFeedback",
    "FeedbackRevoked",
    "ResponseAppended",
    "ValidationRequest",
    "ValidationResponse",
    "Upgraded",
)
assert {"URIUpdated" if s.name == "UriUpdated" else s.name for s in EVENT_SPECS} == set(EVENT_TYPES)

_BY_TOPIC: dict[str, EventSpec] = {spec.topic0: spec for spec in EVENT_SPECS}
assert len(_BY_TOPIC) == len(EVENT_SPECS), "two specs share a topic0"


def spec_for_topic(topic0: str) -> EventSpec | None:
    return _BY_TOPIC.get(topic0.lower())


def known_topics() -> list[str]:
    """Every topic0 the poller asks the node for (one eth_getLogs filter position)."""
    return [spec.topic0 for spec in EVENT_SPECS]


@dataclass(frozen=True)
class DecodedLog:
    """A decoded log: canonical event type, arguments, and where it came from."""

    event_type: str
    registry: str
    abi_version: str
    args: dict[str, Any]
    agent_id: int | None
    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    address: str


@lru_cache(maxsize=65536)
def _checksum(address_hex40: str) -> str:
    return to_checksum_address("0x" + address_hex40)


def _text(raw: bytes) -> str:
    """Registry strings are attacker-controlled: never let them fail decoding or storage."""
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _bytes32_text(raw: bytes) -> str:
    """v0.4 tags were bytes32: the text is the bytes up to the first NUL."""
    return _text(raw.rstrip(b"\x00"))


def _topic_value(inp: EventInput, topic: str) -> Any:
    if len(topic) != 66:
        raise LogDecodeError(f"topic for {inp.name} is not 32 bytes")
    body = topic[2:]
    if inp.type == "address":
        if body[:24].strip("0"):
            raise LogDecodeError(f"indexed address {inp.name} has non-zero padding")
        return _checksum(body[24:])
    if inp.type.startswith("uint"):
        return int(body, 16)
    if inp.type == "bool":
        return int(body, 16) != 0
    # bytes32, and the keccak hash standing in for an indexed string/bytes.
    return "0x" + body.lower()


def _data_value(inp: EventInput, value: Any) -> Any:
    if inp.type == "string":
        return _text(value)
    if inp.type == "address":
        return _checksum(value[2:].lower())
    if inp.type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    return value


_WORD = 32


def _word_uint(data: bytes, offset: int) -> int:
    if offset + _WORD > len(data):
        raise LogDecodeError("data ends inside a word")
    return int.from_bytes(data[offset : offset + _WORD], "big")


def abi_decode_strict(types: list[str], data: bytes) -> list[Any]:
    """Decode the non-indexed part of a log for the types registry events use.

    Equivalent to ``eth_abi.decode(types, data, strict=True)`` with strings taken as
    bytes (tests/indexing/test_decoding.py checks both agree, also on malformed
    data), about five times faster: eth-abi builds a decoder object graph per call,
    which was a quarter of the indexer's time. Values out of range, non-zero
    padding, and offsets or lengths outside the data are errors, as in eth-abi's
    strict mode.
    """
    out: list[Any] = []
    head = len(types) * _WORD
    if len(data) < head:
        raise LogDecodeError(f"data is {len(data)} bytes; the head alone needs {head}")
    for i, kind in enumerate(types):
        at = i * _WORD
        word = data[at : at + _WORD]
        if kind == "bytes":
            offset = int.from_bytes(word, "big")
            if offset < head or offset % _WORD or offset + _WORD > len(data):
                raise LogDecodeError(f"dynamic value {i} has a bad offset {offset}")
            length = _word_uint(data, offset)
            start = offset + _WORD
            end = start + length
            padded = start + -(-length // _WORD) * _WORD
            if padded > len(data):
                raise LogDecodeError(f"dynamic value {i} runs past the data")
            if any(data[end:padded]):
                raise LogDecodeError(f"dynamic value {i} has non-zero padding")
            out.append(data[start:end])
        elif kind == "bytes32":
            out.append(bytes(word))
        elif kind == "address":
            if any(word[:12]):
                raise LogDecodeError(f"address {i} has non-zero padding")
            out.append("0x" + word[12:].hex())
        elif kind == "bool":
            value = int.from_bytes(word, "big")
            if value > 1:
                raise LogDecodeError(f"bool {i} is {value}")
            out.append(bool(value))
        elif kind.startswith("uint"):
            value = int.from_bytes(word, "big")
            if value >= 1 << int(kind[4:]):
                raise LogDecodeError(f"{kind} {i} is out of range")
            out.append(value)
        elif kind.startswith("int"):
            value = int.from_bytes(word, "big", signed=True)
            bits = int(kind[3:])
            if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise LogDecodeError(f"{kind} {i} is out of range")
            out.append(value)
        else:  # pragma: no cover - every spec type is handled above
            raise LogDecodeError(f"unsupported type {kind}")
    return out


def _decode_raw(spec: EventSpec, topics: list[str], data: str) -> dict[str, Any]:
    if len(topics) != len(spec.indexed) + 1:
        raise LogDecodeError(
            f"{spec.name} ({spec.abi_version}) expects {len(spec.indexed) + 1} topics, got {len(topics)}"
        )
    values: dict[str, Any] = {}
    for inp, topic in zip(spec.indexed, topics[1:], strict=True):
        values[inp.name] = _topic_value(inp, topic.lower())
    data_inputs = spec.data_inputs
    if data_inputs:
        # Decode strings as bytes (same ABI encoding) so invalid UTF-8 is replaced, not fatal.
        types = ["bytes" if i.type == "string" else i.type for i in data_inputs]
        try:
            decoded = abi_decode_strict(types, bytes.fromhex(data[2:] if data.startswith("0x") else data))
        except (LogDecodeError, ValueError) as exc:
            raise LogDecodeError(f"{spec.name} ({spec.abi_version}) data does not decode: {exc}") from exc
        for inp, value in zip(data_inputs, decoded, strict=True):
            values[inp.name] = _data_value(inp, value)
    elif data not in ("0x", ""):
        raise LogDecodeError(f"{spec.name} expects no data")
    return values


def _normalised(value: int, decimals: int) -> str:
    """value / 10**decimals, exact: built from a string (no context rounding at 28
    digits, which int128 values exceed) and printed without an exponent."""
    return format(Decimal(f"{value}e-{decimals}"), "f")


def _canonical(spec: EventSpec, raw: dict[str, Any]) -> tuple[str, dict[str, Any], int | None]:
    """Map a raw decoded shape onto the canonical arguments of its event type."""
    name = spec.name
    if name == "Registered":
        return (
            name,
            {"agentId": str(raw["agentId"]), "agentURI": raw["agentURI"], "owner": raw["owner"]},
            raw["agentId"],
        )
    if name in ("URIUpdated", "UriUpdated"):
        uri = raw.get("newURI", raw.get("newUri"))
        return (
            "URIUpdated",
            {"agentId": str(raw["agentId"]), "newURI": uri, "updatedBy": raw["updatedBy"]},
            raw["agentId"],
        )
    if name == "MetadataSet":
        value = raw["metadataValue"]
        if spec.abi_version == "v1.1":  # string values then
            value = "0x" + value.encode().hex()
        args = {
            "agentId": str(raw["agentId"]),
            "metadataKey": raw["metadataKey"],
            "metadataValue": value,
            "indexedMetadataKey": raw.get("indexedMetadataKey", raw.get("indexedKey")),
        }
        return name, args, raw["agentId"]
    if name == "Transfer":
        return name, {"from": raw["from"], "to": raw["to"], "tokenId": str(raw["tokenId"])}, raw["tokenId"]
    if name == "Approval":
        args = {"owner": raw["owner"], "approved": raw["approved"], "tokenId": str(raw["tokenId"])}
        return name, args, raw["tokenId"]
    if name == "ApprovalForAll":
        return name, {"owner": raw["owner"], "operator": raw["operator"], "approved": raw["approved"]}, None
    if name == "NewFeedback":
        if spec.abi_version == "v1":
            value, decimals = raw["value"], raw["valueDecimals"]
            args = {
                "agentId": str(raw["agentId"]),
                "clientAddress": raw["clientAddress"],
                "feedbackIndex": raw["feedbackIndex"],
                "value": str(value),
                "valueDecimals": decimals,
                "valueNormalized": _normalised(value, decimals),
                "tag1": raw["tag1"],
                "tag2": raw["tag2"],
                "endpoint": raw["endpoint"],
                "feedbackURI": raw["feedbackURI"],
                "feedbackHash": raw["feedbackHash"],
                "indexedTag1": raw["indexedTag1"],
            }
        else:
            # Older shapes carry a 0-100 score and no index: the projection numbers
            # feedback per (agent, client) in chain order, as the contract did.
            tag1 = raw["tag1"]
            tag1_text = "" if spec.abi_version == "v1.1" else None
            args = {
                "agentId": str(raw["agentId"]),
                "clientAddress": raw["clientAddress"],
                "feedbackIndex": None,
                "value": str(raw["score"]),
                "valueDecimals": 0,
                "valueNormalized": str(raw["score"]),
                # v0.4 tag1 is an indexed bytes32 (its text is recoverable); v1.1's is a
                # hashed string whose text is lost.
                "tag1": _bytes32_text(bytes.fromhex(tag1[2:])) if tag1_text is None else tag1_text,
                "tag2": _bytes32_text(bytes.fromhex(raw["tag2"][2:])) if spec.abi_version == "v0.4" else raw["tag2"],
                "endpoint": "",
                "feedbackURI": raw["feedbackUri"],
                "feedbackHash": raw["feedbackHash"],
                "indexedTag1": tag1,
            }
        return name, args, raw["agentId"]
    if name == "FeedbackRevoked":
        args = {
            "agentId": str(raw["agentId"]),
            "clientAddress": raw["clientAddress"],
            "feedbackIndex": raw["feedbackIndex"],
        }
        return name, args, raw["agentId"]
    if name == "ResponseAppended":
        args = {
            "agentId": str(raw["agentId"]),
            "clientAddress": raw["clientAddress"],
            "feedbackIndex": raw["feedbackIndex"],
            "responder": raw["responder"],
            "responseURI": raw["responseURI"],
            "responseHash": raw["responseHash"],
        }
        return name, args, raw["agentId"]
    if name == "ValidationRequest":
        args = {
            "validatorAddress": raw["validatorAddress"],
            "agentId": str(raw["agentId"]),
            "requestURI": raw["requestURI"],
            "requestHash": raw["requestHash"],
        }
        return name, args, raw["agentId"]
    if name == "ValidationResponse":
        tag = raw["tag"]
        if spec.abi_version == "v0.4":
            tag = _bytes32_text(bytes.fromhex(tag[2:]))
        args = {
            "validatorAddress": raw["validatorAddress"],
            "agentId": str(raw["agentId"]),
            "requestHash": raw["requestHash"],
            "response": raw["response"],
            "responseURI": raw.get("responseURI", raw.get("responseUri")),
            "responseHash": raw["responseHash"],
            "tag": tag,
        }
        return name, args, raw["agentId"]
    if name == "Upgraded":
        return name, {"implementation": raw["implementation"]}, None
    raise LogDecodeError(f"no canonical form for {name}")  # pragma: no cover - guarded by EVENT_SPECS


def log_decode(log: dict[str, Any]) -> DecodedLog:
    """Decode one raw ``eth_getLogs`` entry (hex-string fields, as the node sends them)."""
    topics = log.get("topics") or []
    if not topics:
        raise LogDecodeError("log has no topics")
    spec = spec_for_topic(topics[0])
    if spec is None:
        raise LogDecodeError(f"unknown topic0 {topics[0]}")
    raw = _decode_raw(spec, topics, log.get("data", "0x"))
    event_type, args, agent_id = _canonical(spec, raw)
    return DecodedLog(
        event_type=event_type,
        registry=spec.registry,
        abi_version=spec.abi_version,
        args=args,
        agent_id=agent_id,
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"].lower(),
        tx_hash=log["transactionHash"].lower(),
        tx_index=int(log["transactionIndex"], 16),
        log_index=int(log["logIndex"], 16),
        address=_checksum(log["address"][2:].lower()),
    )
