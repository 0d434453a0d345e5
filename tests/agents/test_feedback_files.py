"""agents/feedback_files.py: feedback files parse in current and legacy shapes; the
hash check says match / mismatch / absent."""

from __future__ import annotations

import json

import pytest
from eth_utils import keccak

from agents.feedback_files import FeedbackDocument, feedback_file_parse, feedback_hash_status
from agents.registration import ParseError

CURRENT = {
    "agentRegistry": "eip155:1:0x8004A169FB4a3325136EB29fA0ceB6D2e539a432",
    "agentId": 22,
    "clientAddress": "eip155:1:0x70997970C51812dc3A010C7d01b50e20d4dc79C8",
    "createdAt": "2026-02-01T10:00:00Z",
    "value": 87,
    "valueDecimals": 0,
    "tag1": "starred",
    "text": "Fast and correct.",
    "mcp": {"tool": "get_weather"},
    "a2a": {"skills": ["forecast"], "contextId": "c1", "taskId": "t1"},
    "oasf": {"skills": ["nlp"], "domains": ["weather"]},
    "proofOfPayment": {"fromAddress": "0x1", "toAddress": "0x2", "chainId": "8453", "txHash": "0xabc"},
}


def test_current_shape():
    doc = feedback_file_parse(json.dumps(CURRENT).encode())
    assert isinstance(doc, FeedbackDocument)
    assert doc.text == "Fast and correct."
    assert doc.mcp == {"tool": "get_weather"}
    assert doc.a2a["taskId"] == "t1"
    assert doc.oasf["domains"] == ["weather"]
    assert doc.proof_of_payment["txHash"] == "0xabc"
    assert doc.fields["value"] == 87
    assert doc.fields["tag1"] == "starred"


def test_legacy_flat_fields_fold_into_groups():
    doc = feedback_file_parse(
        json.dumps(
            {
                "score": 90,
                "skill": "s",
                "context": "c",
                "task": "t",
                "capability": "tools",
                "name": "get_weather",
                "domain": "finance",
                "proof_of_payment": {"txHash": "0x1"},
                "reasoning": "why",
            }
        ).encode()
    )
    assert isinstance(doc, FeedbackDocument)
    assert doc.a2a == {"skill": "s", "context": "c", "task": "t"}
    assert doc.mcp == {"capability": "tools", "name": "get_weather"}
    assert doc.oasf == {"domains": ["finance"]}
    assert doc.proof_of_payment == {"txHash": "0x1"}
    assert doc.text == "why"
    assert doc.fields["score"] == 90


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff", "not valid UTF-8"),
        (json.dumps({"text": 5}).encode(), "text must be a string"),
        (json.dumps({"mcp": "tool"}).encode(), "mcp must be an object"),
        (json.dumps({"proofOfPayment": []}).encode(), "proofOfPayment must be an object"),
    ],
)
def test_bad_files(data, reason):
    result = feedback_file_parse(data)
    assert isinstance(result, ParseError)
    assert reason in result.reason


def test_hash_status():
    data = json.dumps(CURRENT).encode()
    good = "0x" + keccak(data).hex()
    assert feedback_hash_status(data=data, feedback_hash=good) == "match"
    assert feedback_hash_status(data=data, feedback_hash=good.upper().replace("0X", "0x")) == "match"
    assert feedback_hash_status(data=data + b" ", feedback_hash=good) == "mismatch"
    assert feedback_hash_status(data=data, feedback_hash="0x" + "00" * 32) == "absent"
    assert feedback_hash_status(data=data, feedback_hash="") == "absent"
