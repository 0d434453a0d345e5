"""Parse an off-chain feedback file (what ``feedbackURI`` points to) and check it
against the on-chain ``feedbackHash``. Pure: bytes in, a :class:`FeedbackDocument`
or a :class:`~agents.registration.ParseError` out — never an exception.

The Jan-2026 shape (erc8004 notes §2.2) has ``agentRegistry``, ``agentId``,
``clientAddress``, ``createdAt``, ``value``, ``valueDecimals``, optional tags and
``endpoint``, and the grouped ``mcp`` / ``a2a`` / ``oasf`` / ``proofOfPayment``
objects. Older files used ``score``, flat ``skill``/``context``/``task``/
``capability``/``name`` and ``proof_of_payment``; the community profile adds
``reasoning``. We keep the grouped objects as written and fold the flat legacy
fields into them, so one API field answers "what skill was this about".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from .jsondoc import MAX_DOCUMENT_BYTES, DocumentError, json_document_load
from .registration import ParseError

__all__ = ("FeedbackDocument", "feedback_file_parse", "feedback_hash_status")

ZERO_HASH = "0x" + "00" * 32
MAX_TEXT = 20_000


@dataclass(frozen=True)
class FeedbackDocument:
    text: str = ""
    mcp: dict[str, Any] | None = None
    a2a: dict[str, Any] | None = None
    oasf: dict[str, Any] | None = None
    proof_of_payment: dict[str, Any] | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # the scalar MUST/optional fields as written
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "mcp": self.mcp,
            "a2a": self.a2a,
            "oasf": self.oasf,
            "proof_of_payment": self.proof_of_payment,
            "fields": self.fields,
            "warnings": self.warnings,
        }


class _Invalid(Exception):
    pass


def _object(doc: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    for key in keys:
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise _Invalid(f"{key} must be an object")
        return value
    return None


_SCALARS = (
    "agentRegistry",
    "agentId",
    "clientAddress",
    "createdAt",
    "value",
    "valueDecimals",
    "score",
    "tag1",
    "tag2",
    "endpoint",
)


def feedback_file_parse(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> FeedbackDocument | ParseError:
    """Parse the bytes of a feedback file."""
    try:
        document = json_document_load(data, max_bytes=max_bytes)
    except DocumentError as exc:
        return ParseError(str(exc))
    warnings: list[str] = []
    try:
        text = ""
        for key in ("text", "comment", "reasoning"):
            value = document.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _Invalid(f"{key} must be a string")
            text = value
            break
        if len(text) > MAX_TEXT:
            warnings.append(f"text truncated to {MAX_TEXT} characters (was {len(text)})")
            text = text[:MAX_TEXT]
        mcp = _object(document, "mcp")
        a2a = _object(document, "a2a")
        oasf = _object(document, "oasf")
        proof = _object(document, "proofOfPayment", "proof_of_payment")
        # Legacy flat fields (Nov 2025 files, 8004scan profile) folded into the groups.
        legacy_mcp = {k: document[k] for k in ("capability", "name") if isinstance(document.get(k), str)}
        if legacy_mcp and mcp is None:
            mcp = legacy_mcp
        legacy_a2a = {k: document[k] for k in ("skill", "context", "task") if isinstance(document.get(k), str)}
        if legacy_a2a and a2a is None:
            a2a = legacy_a2a
        if isinstance(document.get("domain"), str) and oasf is None:
            oasf = {"domains": [document["domain"]]}
        fields = {k: document[k] for k in _SCALARS if k in document and isinstance(document[k], str | int | float)}
        return FeedbackDocument(
            text=text, mcp=mcp, a2a=a2a, oasf=oasf, proof_of_payment=proof, fields=fields, warnings=warnings
        )
    except _Invalid as exc:
        return ParseError(str(exc))


def feedback_hash_status(*, data: bytes, feedback_hash: str) -> str:
    """``absent`` when the feedback committed to no hash (empty or zero — allowed for
    content-addressed URIs), else ``match`` or ``mismatch`` of keccak-256(bytes)."""
    wanted = (feedback_hash or "").lower()
    if not wanted or wanted == ZERO_HASH:
        return "absent"
    return "match" if "0x" + keccak(data).hex() == wanted else "mismatch"
