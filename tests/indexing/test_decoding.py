"""indexing/decoding.py: every event shape decodes to its canonical arguments, and bad
logs are refused with a reason instead of crashing the poller."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.decoding import EVENT_SPECS, LogDecodeError, known_topics, log_decode, spec_for_topic

ALICE = to_checksum_address("0x70997970c51812dc3a010c7d01b50e20d4dc79c8")
BOB = to_checksum_address("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
REGISTRY = to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")


def _topic_uint(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _topic_address(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def _spec(name: str, version: str = "v1"):
    return next(s for s in EVENT_SPECS if s.name == name and s.abi_version == version)


def _log(spec, topics: list[str], data_types: list[str], data_values: list, **over) -> dict:
    log = {
        "address": REGISTRY.lower(),
        "topics": [spec.topic0, *topics],
        "data": "0x" + encode(data_types, data_values).hex(),
        "blockNumber": "0x10",
        "blockHash": "0x" + "ab" * 32,
        "transactionHash": "0x" + "cd" * 32,
        "transactionIndex": "0x1",
        "logIndex": "0x3",
    }
    log.update(over)
    return log


#
# Topics
#


def test_topic0_values_match_the_standard_notes():
    assert _spec("Registered").topic0 == "0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a"
    assert _spec("NewFeedback").topic0 == "0x6a4a61743519c9d648a14e6493f47dbe3ff1aa29e7785c96c8326a205e58febc"
    assert _spec("NewFeedback", "v0.4").topic0 == "0x54b3254e4cc01969e70376d20390cc2f6af90539d9adaa78a53ebcda17f78154"
    assert (
        _spec("ValidationResponse", "v0.4").topic0
        == "0xf224d3d5ad74301be48e4d51ca5f1b24c7946875887327585becc59165297dcf"
    )
    assert _spec("UriUpdated", "v0.4").topic0 == "0xb41beef75d9f8d55b985319b459e96f82453580af381391f1ad531eb8f8b5a3a"


def test_every_topic_is_asked_for_once():
    topics = known_topics()
    assert len(topics) == len(set(topics)) == len(EVENT_SPECS)
    assert all(spec_for_topic(t) is not None for t in topics)


#
# Canonical arguments
#


def test_registered_with_agent_id_zero():
    spec = _spec("Registered")
    decoded = log_decode(_log(spec, [_topic_uint(0), _topic_address(ALICE)], ["string"], ["ipfs://cid"]))
    assert decoded.event_type == "Registered"
    assert decoded.agent_id == 0
    assert decoded.args == {"agentId": "0", "agentURI": "ipfs://cid", "owner": ALICE}
    assert (decoded.block_number, decoded.tx_index, decoded.log_index) == (16, 1, 3)
    assert decoded.address == REGISTRY


def test_new_feedback_v1_keeps_raw_value_and_normalises():
    spec = _spec("NewFeedback")
    tag_hash = "0x" + keccak(text="uptime").hex()
    decoded = log_decode(
        _log(
            spec,
            [_topic_uint(7), _topic_address(BOB), tag_hash],
            ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"],
            [2, -9977, 2, "uptime", "week", "https://agent.example/mcp", "ipfs://fb", b"\x11" * 32],
        )
    )
    assert decoded.args["feedbackIndex"] == 2
    assert decoded.args["value"] == "-9977"
    assert decoded.args["valueDecimals"] == 2
    assert decoded.args["valueNormalized"] == "-99.77"
    assert decoded.args["tag1"] == "uptime"
    assert decoded.args["indexedTag1"] == tag_hash
    assert decoded.args["feedbackHash"] == "0x" + "11" * 32
    assert decoded.args["clientAddress"] == BOB


def test_new_feedback_int128_extremes_stay_exact():
    spec = _spec("NewFeedback")
    value = -(2**127)
    decoded = log_decode(
        _log(
            spec,
            [_topic_uint(1), _topic_address(BOB), "0x" + "00" * 32],
            ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"],
            [1, value, 18, "", "", "", "", b"\x00" * 32],
        )
    )
    assert decoded.args["value"] == str(value)
    assert decoded.args["valueNormalized"] == "-170141183460469231731.687303715884105728"


def test_legacy_v04_feedback_maps_score_and_bytes32_tags():
    spec = _spec("NewFeedback", "v0.4")
    tag1 = b"starred".ljust(32, b"\x00")
    decoded = log_decode(
        _log(
            spec,
            [_topic_uint(3), _topic_address(ALICE), "0x" + tag1.hex()],
            ["uint8", "bytes32", "string", "bytes32"],
            [87, b"quality".ljust(32, b"\x00"), "ipfs://old", b"\x22" * 32],
        )
    )
    assert decoded.abi_version == "v0.4"
    assert decoded.event_type == "NewFeedback"
    assert decoded.args["feedbackIndex"] is None
    assert (decoded.args["value"], decoded.args["valueDecimals"]) == ("87", 0)
    assert (decoded.args["tag1"], decoded.args["tag2"]) == ("starred", "quality")
    assert decoded.args["feedbackURI"] == "ipfs://old"
    assert decoded.args["endpoint"] == ""


def test_legacy_v04_validation_response_tag_is_text():
    spec = _spec("ValidationResponse", "v0.4")
    decoded = log_decode(
        _log(
            spec,
            [_topic_address(BOB), _topic_uint(3), "0x" + "33" * 32],
            ["uint8", "string", "bytes32", "bytes32"],
            [0, "ipfs://resp", b"\x44" * 32, b"zkml".ljust(32, b"\x00")],
        )
    )
    assert decoded.args["response"] == 0
    assert decoded.args["tag"] == "zkml"
    assert decoded.args["requestHash"] == "0x" + "33" * 32
    assert decoded.args["validatorAddress"] == BOB


def test_legacy_uri_updated_becomes_uri_updated():
    spec = _spec("UriUpdated", "v0.4")
    decoded = log_decode(_log(spec, [_topic_uint(5), _topic_address(ALICE)], ["string"], ["https://x"]))
    assert decoded.event_type == "URIUpdated"
    assert decoded.args["newURI"] == "https://x"


def test_metadata_set_keeps_bytes_as_hex():
    spec = _spec("MetadataSet")
    decoded = log_decode(
        _log(
            spec,
            [_topic_uint(1), "0x" + keccak(text="agentWallet").hex()],
            ["string", "bytes"],
            ["agentWallet", bytes.fromhex(ALICE[2:])],
        )
    )
    assert decoded.args["metadataKey"] == "agentWallet"
    assert decoded.args["metadataValue"] == "0x" + ALICE[2:].lower()


def test_transfer_and_approval_for_all():
    transfer = log_decode(
        _log(_spec("Transfer"), [_topic_address("0x" + "00" * 20), _topic_address(ALICE), _topic_uint(9)], [], [])
    )
    assert transfer.args == {"from": "0x0000000000000000000000000000000000000000", "to": ALICE, "tokenId": "9"}
    assert transfer.agent_id == 9
    approval = log_decode(_log(_spec("ApprovalForAll"), [_topic_address(ALICE), _topic_address(BOB)], ["bool"], [True]))
    assert approval.args == {"owner": ALICE, "operator": BOB, "approved": True}
    assert approval.agent_id is None


#
# Hostile input
#


def test_invalid_utf8_and_nul_are_replaced_not_fatal():
    spec = _spec("Registered")
    log = _log(spec, [_topic_uint(1), _topic_address(ALICE)], ["bytes"], [b"ok\xff\xfe\x00end"])
    decoded = log_decode(log)
    assert decoded.args["agentURI"] == "ok\ufffd\ufffd\ufffdend"
    assert "\x00" not in decoded.args["agentURI"]


def test_wrong_topic_count_is_a_decode_error():
    spec = _spec("Registered")
    with pytest.raises(LogDecodeError, match="expects 3 topics"):
        log_decode(_log(spec, [_topic_uint(1)], ["string"], ["x"]))


def test_truncated_data_is_a_decode_error():
    spec = _spec("Registered")
    log = _log(spec, [_topic_uint(1), _topic_address(ALICE)], ["string"], ["hello"])
    log["data"] = log["data"][:40]
    with pytest.raises(LogDecodeError, match="does not decode"):
        log_decode(log)


def test_unknown_topic_is_a_decode_error():
    log = _log(_spec("Registered"), [], [], [])
    log["topics"] = ["0x" + "99" * 32]
    with pytest.raises(LogDecodeError, match="unknown topic0"):
        log_decode(log)


def test_dirty_address_padding_is_refused():
    spec = _spec("Transfer")
    dirty = "0x" + "ff" * 12 + ALICE[2:].lower()
    with pytest.raises(LogDecodeError, match="padding"):
        log_decode(_log(spec, [dirty, _topic_address(BOB), _topic_uint(1)], [], []))


def test_small_normalised_values_print_without_exponent():
    spec = _spec("NewFeedback")
    decoded = log_decode(
        _log(
            spec,
            [_topic_uint(1), _topic_address(BOB), "0x" + "00" * 32],
            ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"],
            [1, 5, 10, "", "", "", "", b"\x00" * 32],
        )
    )
    assert decoded.args["valueNormalized"] == "0.0000000005"


#
# The fast decoder agrees with eth-abi
#

LAYOUTS = [
    ["uint64", "int128", "uint8", "bytes", "bytes", "bytes", "bytes", "bytes32"],  # NewFeedback v1
    ["uint8", "bytes", "bytes32", "bytes"],  # ValidationResponse v1
    ["bytes", "bytes"],  # MetadataSet
    ["bool"],  # ApprovalForAll
    ["uint8", "bytes32", "bytes", "bytes32"],  # NewFeedback v0.4
]


def _reference(types, data):
    from eth_abi import decode

    try:
        return ("ok", list(decode(types, data, strict=True)))
    except Exception:
        return ("error", None)


def _ours(types, data):
    from indexing.decoding import abi_decode_strict

    try:
        values = abi_decode_strict(types, data)
    except LogDecodeError:
        return ("error", None)
    return ("ok", values)


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_fast_decoder_matches_eth_abi_on_valid_data(data):
    types = data.draw(st.sampled_from(LAYOUTS))
    strategies = {
        "uint64": st.integers(0, 2**64 - 1),
        "uint8": st.integers(0, 255),
        "int128": st.integers(-(2**127), 2**127 - 1),
        "bool": st.booleans(),
        "bytes32": st.binary(min_size=32, max_size=32),
        "bytes": st.binary(max_size=200),
    }
    values = [data.draw(strategies[t]) for t in types]
    encoded = encode(types, values)
    assert _ours(types, encoded) == _reference(types, encoded) == ("ok", values)


@given(data=st.data())
@settings(max_examples=500, deadline=None)
def test_fast_decoder_refuses_what_eth_abi_refuses(data):
    types = data.draw(st.sampled_from(LAYOUTS))
    raw = bytearray(
        encode(
            types,
            [
                0 if t.startswith(("u", "i")) else False if t == "bool" else b"" if t == "bytes" else b"\0" * 32
                for t in types
            ],
        )
    )
    raw += data.draw(st.binary(max_size=64))
    for _ in range(data.draw(st.integers(1, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mangled = bytes(raw[:cut])
    ours, reference = _ours(types, mangled), _reference(types, mangled)
    assert ours[0] == reference[0], (ours, reference)
    if ours[0] == "ok":
        assert ours == reference
