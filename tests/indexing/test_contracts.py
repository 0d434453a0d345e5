"""The devnet contracts: ABI parity with the official ERC-8004 2.0.0 registries, fresh artifacts, and the
behaviour indexers rely on, exercised on a real anvil chain."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from indexing.devnet.contracts import (
    CONTRACT_NAMES,
    DevnetDeployment,
    artifact_load,
    artifacts_dir,
    devnet_contract,
    devnet_deploy,
)
from indexing.devnet.workload import ANVIL_MNEMONIC

ZERO = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\x00" * 32
AGENT_WALLET_TOPIC = "0x2ac6109326e720d1435c0db66f7e35eda7839f52b6f1f5520a60788e132b4e39"

#
# ABI parity and artifacts (no chain needed)
#

OFFICIAL = ("IdentityRegistry", "ReputationRegistry", "ValidationRegistry")
# Proxy plumbing of the official UUPS deployment; our devnet contracts are not upgradeable.
PROXY_ONLY_FUNCTIONS = {"initialize", "proxiableUUID", "upgradeToAndCall", "UPGRADE_INTERFACE_VERSION"}

# topic0 and selectors as published in the reference notes (computed there with keccak-256).
TOPIC0 = {
    "IdentityRegistry": {
        "Registered": "0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a",
        "MetadataSet": "0x2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b",
        "URIUpdated": "0x3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb",
        "Transfer": "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "Approval": "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
        "ApprovalForAll": "0x17307eab39ab6107e8899845ad3d59bd9653f200f220920489ca2b5937696c31",
        "MetadataUpdate": "0xf8e1a15aba9398e019f0b49df1a4fde98ee17ae345cb5f6b5e2c27f5033e8ce7",
        "BatchMetadataUpdate": "0x6bd5c950a8d8df17f772f5af37cb3655737899cbf903264b9795592da439661c",
        "EIP712DomainChanged": "0x0a6387c9ea3628b88a633bb4f3b151770f70085117a15f9bf3787cda53f13d31",
        "OwnershipTransferred": "0x8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0",
        "Upgraded": "0xbc7cd75a20ee27fd9adebab32041f755214dbc6bffa90cc0225b39da2e5c2d3b",
        "Initialized": "0xc7f505b2f371ae2175ee4913f4499e1f2633a7b5936321eed1cdaeb6115181d2",
    },
    "ReputationRegistry": {
        "NewFeedback": "0x6a4a61743519c9d648a14e6493f47dbe3ff1aa29e7785c96c8326a205e58febc",
        "FeedbackRevoked": "0x25156fd3288212246d8b008d5921fde376c71ed14ac2e072a506eb06fde6d09d",
        "ResponseAppended": "0xb1c6be0b5b8aef6539e2fac0fd131a2faa7b49edf8e505b5eb0ad487d56051d4",
    },
    "ValidationRegistry": {
        "ValidationRequest": "0x530436c3634a98e1e626b0898be2f1e9980cc1bd2a78c07a0aba52d0a48a5059",
        "ValidationResponse": "0xafddf629e874ccc3963b6a888c477bd464a6c8525024fc88759ea3b2326349ae",
    },
    "LegacyReputationRegistry": {
        "NewFeedback": "0x54b3254e4cc01969e70376d20390cc2f6af90539d9adaa78a53ebcda17f78154",
        "FeedbackRevoked": "0x25156fd3288212246d8b008d5921fde376c71ed14ac2e072a506eb06fde6d09d",
        "ResponseAppended": "0xb1c6be0b5b8aef6539e2fac0fd131a2faa7b49edf8e505b5eb0ad487d56051d4",
    },
    "LegacyValidationRegistry": {
        "ValidationRequest": "0x530436c3634a98e1e626b0898be2f1e9980cc1bd2a78c07a0aba52d0a48a5059",
        "ValidationResponse": "0xf224d3d5ad74301be48e4d51ca5f1b24c7946875887327585becc59165297dcf",
    },
}
SELECTORS = {
    "IdentityRegistry": {
        "register()": "0x1aa3a008",
        "register(string)": "0xf2c298be",
        "register(string,(string,bytes)[])": "0x8ea42286",
        "getMetadata(uint256,string)": "0xcb4799f2",
        "setMetadata(uint256,string,bytes)": "0x466648da",
        "setAgentURI(uint256,string)": "0x0af28bd3",
        "getAgentWallet(uint256)": "0x00339509",
        "setAgentWallet(uint256,address,uint256,bytes)": "0x2d1ef5ae",
        "unsetAgentWallet(uint256)": "0x3fddcf19",
        "isAuthorizedOrOwner(address,uint256)": "0xd95e72be",
    },
    "ReputationRegistry": {
        "giveFeedback(uint256,int128,uint8,string,string,string,string,bytes32)": "0x3c036a7e",
        "revokeFeedback(uint256,uint64)": "0x4ab3ca99",
        "appendResponse(uint256,address,uint64,string,bytes32)": "0xc2349ab2",
        "readFeedback(uint256,address,uint64)": "0x232b0810",
        "getSummary(uint256,address[],string,string)": "0x81bbba58",
        "readAllFeedback(uint256,address[],string,string,bool)": "0xd9d84224",
        "getResponseCount(uint256,address,uint64,address[])": "0x6e04cacd",
        "getClients(uint256)": "0x42dd519c",
        "getLastIndex(uint256,address)": "0xf2d81759",
        "getIdentityRegistry()": "0xbc4d861b",
    },
    "ValidationRegistry": {
        "validationRequest(address,uint256,string,bytes32)": "0xaaf400c4",
        "validationResponse(bytes32,uint8,string,bytes32,string)": "0x3d659a96",
        "getValidationStatus(bytes32)": "0xff2febfc",
        "getSummary(uint256,address[],string)": "0x1b7cabd6",
        "getAgentValidations(uint256)": "0x8d5d0c2d",
        "getValidatorRequests(address)": "0x4bf3158c",
    },
    "LegacyReputationRegistry": {
        "giveFeedback(uint256,uint8,bytes32,bytes32,string,bytes32,bytes)": "0x155e5bbd",
    },
}


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


def _signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(_canonical_type(p) for p in entry['inputs'])})"


def _events(abi: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Event name -> inputs (type, name, indexed) and topic0, the parts an indexer depends on."""
    return {
        e["name"]: {
            "inputs": [(_canonical_type(p), p["name"], p["indexed"]) for p in e["inputs"]],
            "anonymous": e.get("anonymous", False),
            "topic0": "0x" + keccak(text=_signature(e)).hex(),
        }
        for e in abi
        if e["type"] == "event"
    }


def _functions(abi: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {_signature(e): [_canonical_type(o) for o in e["outputs"]] for e in abi if e["type"] == "function"}


def _official_abi(name: str) -> list[dict[str, Any]]:
    shared = Path(os.environ.get("ERC8004_SHARED_DIR") or Path(settings.BASE_DIR).parent / "shared")
    path = shared / "erc8004" / "abis" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"official ERC-8004 ABI not found at {path}: set ERC8004_SHARED_DIR to the shared notes")
    data = json.loads(path.read_text())
    return data["abi"] if isinstance(data, dict) else data


@pytest.mark.parametrize("name", OFFICIAL)
def test_event_set_matches_official_abi(name: str) -> None:
    ours = _events(artifact_load(name=name)["abi"])
    official = _events(_official_abi(name))
    assert ours == official


@pytest.mark.parametrize("name", OFFICIAL)
def test_every_official_function_exists_with_same_types(name: str) -> None:
    ours = _functions(artifact_load(name=name)["abi"])
    for signature, outputs in _functions(_official_abi(name)).items():
        if signature.split("(")[0] in PROXY_ONLY_FUNCTIONS:
            continue
        assert signature in ours, signature
        assert ours[signature] == outputs, signature


@pytest.mark.parametrize("name", sorted(TOPIC0))
def test_topic0_values_from_the_notes(name: str) -> None:
    events = _events(artifact_load(name=name)["abi"])
    for event, topic0 in TOPIC0[name].items():
        assert events[event]["topic0"] == topic0, event


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_function_selectors_from_the_notes(name: str) -> None:
    functions = _functions(artifact_load(name=name)["abi"])
    for signature, selector in SELECTORS[name].items():
        assert signature in functions, signature
        assert "0x" + function_signature_to_4byte_selector(signature).hex() == selector, signature


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_is_fresh(name: str) -> None:
    """Stale artifacts fail here without a compiler: rebuild with `make contracts`."""
    artifact = artifact_load(name=name)
    source = Path(settings.BASE_DIR) / "contracts" / "src" / f"{name}.sol"
    assert artifact["contractName"] == name
    assert artifact["sourceSha256"] == hashlib.sha256(source.read_bytes()).hexdigest(), "run `make contracts`"
    package = json.loads((Path(settings.BASE_DIR) / "package.json").read_text())
    assert artifact["compiler"].startswith(f"solc-{package['devDependencies']['solc']}+")
    assert artifact["bytecode"].startswith("0x")
    assert len(artifact["bytecode"]) > 2


def test_every_source_has_an_artifact() -> None:
    sources = {p.stem for p in (Path(settings.BASE_DIR) / "contracts" / "src").glob("*.sol")}
    assert sources == {p.stem for p in artifacts_dir().glob("*.json")} == set(CONTRACT_NAMES)


#
# Behaviour on anvil
#


class Registries:
    """A fresh set of the five contracts on the session chain, plus helpers to send and read."""

    def __init__(self, w3: Web3, deployment: DevnetDeployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.identity = devnet_contract(w3=w3, deployment=deployment, role="identity")
        self.reputation = devnet_contract(w3=w3, deployment=deployment, role="reputation")
        self.validation = devnet_contract(w3=w3, deployment=deployment, role="validation")
        self.legacy_reputation = devnet_contract(w3=w3, deployment=deployment, role="legacy_reputation")
        self.legacy_validation = devnet_contract(w3=w3, deployment=deployment, role="legacy_validation")
        self.accounts = w3.eth.accounts
        self._names: dict[str, str] = {}
        for name in CONTRACT_NAMES:
            suffix = "@v0.4" if name.startswith("Legacy") else ""
            for event, spec in _events(artifact_load(name=name)["abi"]).items():
                self._names.setdefault(spec["topic0"], event + (suffix if spec["topic0"] in _V04_ONLY else ""))

    def send(self, call: Any, sender: str) -> Any:
        tx_hash = call.transact({"from": sender, "gas": 3_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def names(self, receipt: Any) -> list[str]:
        return [self._names["0x" + log["topics"][0].hex()] for log in receipt["logs"]]

    def register(self, owner: str, uri: str = "ipfs://agent") -> int:
        receipt = self.send(self.identity.functions.register(uri), owner)
        return int.from_bytes(receipt["logs"][0]["topics"][3], "big")


_V04_ONLY = {
    TOPIC0["LegacyReputationRegistry"]["NewFeedback"],
    TOPIC0["LegacyValidationRegistry"]["ValidationResponse"],
}


@pytest.fixture(scope="module")
def reg(w3: Web3) -> Registries:
    return Registries(w3, devnet_deploy(w3=w3))


def _wallet_key(index: int = 0) -> bytes:
    Account.enable_unaudited_hdwallet_features()
    return bytes(Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{2000 + index}").key)


def _wallet_signature(reg: Registries, key: bytes, agent_id: int, owner: str, deadline: int) -> bytes:
    wallet = Account.from_key(key).address
    message = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "AgentWalletSet": [
                {"name": "agentId", "type": "uint256"},
                {"name": "newWallet", "type": "address"},
                {"name": "owner", "type": "address"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "AgentWalletSet",
        "domain": {
            "name": "ERC8004IdentityRegistry",
            "version": "1",
            "chainId": reg.w3.eth.chain_id,
            "verifyingContract": reg.identity.address,
        },
        "message": {"agentId": agent_id, "newWallet": wallet, "owner": owner, "deadline": deadline},
    }
    return bytes(Account.sign_typed_data(key, full_message=message).signature)


def _now(reg: Registries) -> int:
    return reg.w3.eth.get_block("latest")["timestamp"]


def _reverts(reason: str) -> Any:
    return pytest.raises(ContractLogicError, match=reason)


# Identity


def test_first_agent_id_is_zero(w3: Web3) -> None:
    fresh = Registries(w3, devnet_deploy(w3=w3))
    assert fresh.register(fresh.accounts[1]) == 0
    assert fresh.register(fresh.accounts[2]) == 1
    assert fresh.identity.functions.name().call() == "AgentIdentity"
    assert fresh.identity.functions.symbol().call() == "AGENT"
    assert fresh.identity.functions.getVersion().call() == "2.0.0"


@pytest.mark.parametrize(
    ("overload", "expected"),
    [
        ("register()", ["Transfer", "Registered", "MetadataSet"]),
        ("register(string)", ["Transfer", "MetadataUpdate", "Registered", "MetadataSet"]),
        (
            "register(string,(string,bytes)[])",
            ["Transfer", "MetadataUpdate", "Registered", "MetadataSet", "MetadataSet", "MetadataSet"],
        ),
    ],
)
def test_register_overloads_emit_in_order(reg: Registries, overload: str, expected: list[str]) -> None:
    owner = reg.accounts[1]
    fn = reg.identity.get_function_by_signature(overload)
    args = {"register()": (), "register(string)": ("ipfs://a",)}.get(
        overload, ("ipfs://a", [("category", b"defi"), ("pubkey", b"\x02\x01")])
    )
    receipt = reg.send(fn(*args), owner)
    assert reg.names(receipt) == expected
    registered = reg.identity.events.Registered().process_log(receipt["logs"][expected.index("Registered")])
    assert registered["args"]["agentURI"] == (args[0] if args else "")
    assert registered["args"]["owner"] == owner
    wallet_log = receipt["logs"][expected.index("Registered") + 1]
    assert "0x" + wallet_log["topics"][2].hex() == AGENT_WALLET_TOPIC
    wallet_set = reg.identity.events.MetadataSet().process_log(wallet_log)["args"]
    assert wallet_set["metadataKey"] == "agentWallet"
    assert wallet_set["metadataValue"] == bytes.fromhex(owner[2:])  # 20 bytes, abi.encodePacked
    agent_id = registered["args"]["agentId"]
    assert reg.identity.functions.getAgentWallet(agent_id).call() == owner
    if len(expected) > 4:
        assert reg.identity.functions.getMetadata(agent_id, "pubkey").call() == b"\x02\x01"


def test_reserved_key_and_authorization(reg: Registries) -> None:
    owner, outsider, operator = reg.accounts[1], reg.accounts[7], reg.accounts[2]
    with _reverts("reserved key"):
        reg.identity.functions.register("ipfs://x", [("agentWallet", b"\x01" * 20)]).call({"from": owner})
    agent_id = reg.register(owner)
    with _reverts("reserved key"):
        reg.identity.functions.setMetadata(agent_id, "agentWallet", b"\x01" * 20).call({"from": owner})
    with _reverts("not authorized"):
        reg.identity.functions.setMetadata(agent_id, "k", b"v").call({"from": outsider})
    reg.send(reg.identity.functions.setApprovalForAll(operator, True), owner)
    receipt = reg.send(reg.identity.functions.setMetadata(agent_id, "k", b"v"), operator)
    assert reg.names(receipt) == ["MetadataSet"]
    assert reg.identity.functions.getMetadata(agent_id, "k").call() == b"v"
    reg.send(reg.identity.functions.setApprovalForAll(operator, False), owner)


def test_set_agent_uri_emits_metadata_update_then_uri_updated(reg: Registries) -> None:
    owner, approved = reg.accounts[1], reg.accounts[3]
    agent_id = reg.register(owner)
    reg.send(reg.identity.functions.approve(approved, agent_id), owner)
    receipt = reg.send(reg.identity.functions.setAgentURI(agent_id, "https://new"), approved)
    assert reg.names(receipt) == ["MetadataUpdate", "URIUpdated"]
    updated = reg.identity.events.URIUpdated().process_log(receipt["logs"][1])["args"]
    assert (updated["newURI"], updated["updatedBy"]) == ("https://new", approved)
    assert reg.identity.functions.tokenURI(agent_id).call() == "https://new"


def test_set_agent_wallet_needs_a_fresh_signature_of_the_new_wallet(reg: Registries) -> None:
    owner = reg.accounts[1]
    agent_id = reg.register(owner)
    key = _wallet_key()
    wallet = Account.from_key(key).address
    deadline = _now(reg) + 120
    good = _wallet_signature(reg, key, agent_id, owner, deadline)
    wrong_signer = _wallet_signature(reg, _wallet_key(1), agent_id, owner, deadline)
    with _reverts("invalid wallet signature"):
        reg.identity.functions.setAgentWallet(agent_id, wallet, deadline, wrong_signer).call({"from": owner})
    with _reverts("invalid wallet signature"):  # signed for another owner
        bad = _wallet_signature(reg, key, agent_id, reg.accounts[9], deadline)
        reg.identity.functions.setAgentWallet(agent_id, wallet, deadline, bad).call({"from": owner})
    far = _now(reg) + 3600
    with _reverts("deadline too far"):
        sig = _wallet_signature(reg, key, agent_id, owner, far)
        reg.identity.functions.setAgentWallet(agent_id, wallet, far, sig).call({"from": owner})
    past = _now(reg) - 10
    with _reverts("expired"):
        sig = _wallet_signature(reg, key, agent_id, owner, past)
        reg.identity.functions.setAgentWallet(agent_id, wallet, past, sig).call({"from": owner})
    with _reverts("not authorized"):
        reg.identity.functions.setAgentWallet(agent_id, wallet, deadline, good).call({"from": reg.accounts[7]})

    receipt = reg.send(reg.identity.functions.setAgentWallet(agent_id, wallet, deadline, good), owner)
    assert reg.names(receipt) == ["MetadataSet"]
    assert reg.identity.events.MetadataSet().process_log(receipt["logs"][0])["args"]["metadataValue"] == bytes.fromhex(
        wallet[2:]
    )
    assert reg.identity.functions.getAgentWallet(agent_id).call() == wallet

    receipt = reg.send(reg.identity.functions.unsetAgentWallet(agent_id), owner)
    assert reg.names(receipt) == ["MetadataSet"]
    assert reg.identity.functions.getAgentWallet(agent_id).call() == ZERO
    assert reg.identity.functions.getMetadata(agent_id, "agentWallet").call() == b""


def test_transfer_clears_the_wallet_before_the_transfer_event(reg: Registries) -> None:
    owner, new_owner, approved = reg.accounts[1], reg.accounts[8], reg.accounts[3]
    agent_id = reg.register(owner)
    reg.send(reg.identity.functions.approve(approved, agent_id), owner)
    receipt = reg.send(reg.identity.functions.transferFrom(owner, new_owner, agent_id), approved)
    assert reg.names(receipt) == ["MetadataSet", "Transfer"]
    cleared = reg.identity.events.MetadataSet().process_log(receipt["logs"][0])["args"]
    assert (cleared["metadataKey"], cleared["metadataValue"]) == ("agentWallet", b"")
    assert reg.identity.functions.getAgentWallet(agent_id).call() == ZERO
    assert reg.identity.functions.ownerOf(agent_id).call() == new_owner
    assert reg.identity.functions.getApproved(agent_id).call() == ZERO  # cleared without an Approval event


def test_is_authorized_or_owner(reg: Registries) -> None:
    owner, operator, approved, outsider = reg.accounts[1], reg.accounts[2], reg.accounts[3], reg.accounts[7]
    agent_id = reg.register(owner)
    reg.send(reg.identity.functions.setApprovalForAll(operator, True), owner)
    reg.send(reg.identity.functions.approve(approved, agent_id), owner)
    check = reg.identity.functions.isAuthorizedOrOwner
    assert [check(a, agent_id).call() for a in (owner, operator, approved, outsider)] == [True, True, True, False]
    with pytest.raises(ContractLogicError):
        check(owner, 10**9).call()
    reg.send(reg.identity.functions.setApprovalForAll(operator, False), owner)


# Reputation


def _feedback(
    value: int = 87, decimals: int = 0, tag1: str = "starred", tag2: str = "", uri: str = "ipfs://f"
) -> tuple[Any, ...]:
    return (value, decimals, tag1, tag2, "https://agent/mcp", uri, keccak(text=uri))


def test_feedback_rejects_self_feedback_and_bad_values(reg: Registries) -> None:
    owner, operator, approved, client = reg.accounts[1], reg.accounts[2], reg.accounts[3], reg.accounts[4]
    agent_id = reg.register(owner)
    reg.send(reg.identity.functions.setApprovalForAll(operator, True), owner)
    reg.send(reg.identity.functions.approve(approved, agent_id), owner)
    give = reg.reputation.functions.giveFeedback
    for sender in (owner, operator, approved):
        with _reverts("self-feedback not allowed"):
            give(agent_id, *_feedback()).call({"from": sender})
        with _reverts("self-feedback not allowed"):
            reg.legacy_reputation.functions.giveFeedback(agent_id, 90, ZERO32, ZERO32, "", ZERO32, b"").call(
                {"from": sender}
            )
    with _reverts("agent not found"):
        give(10**9, *_feedback()).call({"from": client})
    with _reverts("too many decimals"):
        give(agent_id, *_feedback(1, 19)).call({"from": client})
    with _reverts("value too large"):
        give(agent_id, *_feedback(10**38 + 1)).call({"from": client})
    with _reverts("value too large"):
        give(agent_id, *_feedback(-(10**38) - 1)).call({"from": client})
    give(agent_id, *_feedback(-(10**38), 18)).call({"from": client})  # the bounds themselves are allowed
    reg.send(reg.identity.functions.setApprovalForAll(operator, False), owner)


def test_feedback_index_is_one_based_per_client(reg: Registries) -> None:
    owner, alice, bob = reg.accounts[1], reg.accounts[4], reg.accounts[5]
    agent_id = reg.register(owner)
    give = reg.reputation.functions.giveFeedback
    indexes = []
    for client in (alice, alice, bob, alice):
        receipt = reg.send(give(agent_id, *_feedback(-32, 1, "tradingYield", "week")), client)
        assert reg.names(receipt) == ["NewFeedback"]
        log = receipt["logs"][0]
        assert log["topics"][3] == keccak(text="tradingYield")  # indexedTag1 is the hash of tag1
        event = reg.reputation.events.NewFeedback().process_log(log)["args"]
        fields = (event["value"], event["valueDecimals"], event["tag1"], event["tag2"])
        assert fields == (-32, 1, "tradingYield", "week")
        assert event["endpoint"] == "https://agent/mcp"
        indexes.append(event["feedbackIndex"])
    assert indexes == [1, 2, 1, 3]
    assert reg.reputation.functions.getLastIndex(agent_id, alice).call() == 3
    assert reg.reputation.functions.getClients(agent_id).call() == [alice, bob]
    assert reg.reputation.functions.readFeedback(agent_id, bob, 1).call() == [-32, 1, "tradingYield", "week", False]


def test_revoke_and_response_rules(reg: Registries) -> None:
    owner, alice, bob, carol = reg.accounts[1], reg.accounts[4], reg.accounts[5], reg.accounts[6]
    agent_id = reg.register(owner)
    rep = reg.reputation.functions
    reg.send(rep.giveFeedback(agent_id, *_feedback()), alice)
    with _reverts("index out of bounds"):  # only the client's own index space
        rep.revokeFeedback(agent_id, 1).call({"from": bob})
    with _reverts("index must be > 0"):
        rep.revokeFeedback(agent_id, 0).call({"from": alice})
    receipt = reg.send(rep.revokeFeedback(agent_id, 1), alice)
    assert reg.names(receipt) == ["FeedbackRevoked"]
    with _reverts("already revoked"):
        rep.revokeFeedback(agent_id, 1).call({"from": alice})
    assert rep.readFeedback(agent_id, alice, 1).call()[4] is True

    with _reverts("empty URI"):
        rep.appendResponse(agent_id, alice, 1, "", ZERO32).call({"from": owner})
    with _reverts("index out of bounds"):
        rep.appendResponse(agent_id, alice, 2, "ipfs://r", ZERO32).call({"from": owner})
    for responder in (owner, owner, carol):  # repeatable, anyone, on revoked feedback
        receipt = reg.send(rep.appendResponse(agent_id, alice, 1, "ipfs://r", keccak(text="r")), responder)
        assert reg.names(receipt) == ["ResponseAppended"]
    assert rep.getResponseCount(agent_id, alice, 1, []).call() == 3
    assert rep.getResponseCount(agent_id, alice, 1, [owner]).call() == 2
    assert rep.getResponseCount(agent_id, ZERO, 0, []).call() == 3
    assert rep.getResponseCount(agent_id, alice, 0, [carol]).call() == 1


def test_get_summary_scales_to_the_mode_of_decimals(reg: Registries) -> None:
    owner, a, b, c = reg.accounts[1], reg.accounts[4], reg.accounts[5], reg.accounts[6]
    rep = reg.reputation.functions
    agent_id = reg.register(owner)
    with _reverts("clientAddresses required"):
        rep.getSummary(agent_id, [], "", "").call()
    assert rep.getSummary(agent_id, [a], "", "").call() == [0, 0, 0]
    reg.send(rep.giveFeedback(agent_id, *_feedback(1, 0, "x")), a)  # 1.00
    reg.send(rep.giveFeedback(agent_id, *_feedback(250, 2, "x")), b)  # 2.50
    reg.send(rep.giveFeedback(agent_id, *_feedback(350, 2, "y")), c)  # 3.50
    # mean 7/3 = 2.333..., expressed in the most frequent decimals (2), truncated.
    assert rep.getSummary(agent_id, [a, b, c], "", "").call() == [3, 233, 2]
    # a tie between 0 and 2 decimals goes to the smaller: (1 + 2.5) / 2 = 1.75 -> 1
    assert rep.getSummary(agent_id, [a, b], "", "").call() == [2, 1, 0]
    assert rep.getSummary(agent_id, [a, b, c], "x", "").call() == [2, 1, 0]
    # revoked feedback is skipped
    reg.send(rep.revokeFeedback(agent_id, 1), c)
    assert rep.getSummary(agent_id, [a, b, c], "", "").call() == [2, 1, 0]

    negative = reg.register(owner)
    reg.send(rep.giveFeedback(negative, *_feedback(-1, 0)), a)
    reg.send(rep.giveFeedback(negative, *_feedback(-2, 0)), b)
    assert rep.getSummary(negative, [a, b], "", "").call() == [2, -1, 0]  # -1.5 truncates toward zero
    everything = rep.readAllFeedback(agent_id, [], "", "", True).call()
    assert everything[0] == [a, b, c]
    assert everything[6] == [False, False, True]
    assert rep.readAllFeedback(agent_id, [], "", "", False).call()[2] == [1, 250]


# Validation


def test_validation_request_and_response_rules(reg: Registries) -> None:
    owner, validator, outsider = reg.accounts[1], reg.accounts[6], reg.accounts[7]
    agent_id = reg.register(owner)
    val = reg.validation.functions
    request_hash = keccak(text=f"request-{agent_id}")
    with _reverts("not authorized"):
        val.validationRequest(validator, agent_id, "ipfs://req", request_hash).call({"from": outsider})
    with _reverts("bad validator"):
        val.validationRequest(ZERO, agent_id, "ipfs://req", request_hash).call({"from": owner})
    receipt = reg.send(val.validationRequest(validator, agent_id, "ipfs://req", request_hash), owner)
    assert reg.names(receipt) == ["ValidationRequest"]
    with _reverts("exists"):
        val.validationRequest(validator, agent_id, "ipfs://other", request_hash).call({"from": owner})
    with _reverts("unknown"):
        val.getValidationStatus(keccak(text="nope")).call()
    status = val.getValidationStatus(request_hash).call()
    assert status[:5] == [validator, agent_id, 0, ZERO32, ""]
    assert val.getSummary(agent_id, [], "").call() == [0, 0]  # pending requests do not count

    with _reverts("not validator"):
        val.validationResponse(request_hash, 50, "", ZERO32, "").call({"from": owner})
    with _reverts("response > 100"):
        val.validationResponse(request_hash, 101, "", ZERO32, "").call({"from": validator})
    reg.send(val.validationResponse(request_hash, 80, "ipfs://resp", keccak(text="a"), "soft-finality"), validator)
    receipt = reg.send(val.validationResponse(request_hash, 0, "", keccak(text="b"), "hard-finality"), validator)
    assert reg.names(receipt) == ["ValidationResponse"]
    status = val.getValidationStatus(request_hash).call()
    assert status[:5] == [validator, agent_id, 0, keccak(text="b"), "hard-finality"]  # overwritten; 0 is valid

    second = keccak(text=f"request2-{agent_id}")
    reg.send(val.validationRequest(validator, agent_id, "https://req", second), owner)
    reg.send(val.validationResponse(second, 75, "", ZERO32, "zkml"), validator)
    assert val.getSummary(agent_id, [], "").call() == [2, 37]  # (0 + 75) / 2, integer
    assert val.getSummary(agent_id, [], "zkml").call() == [1, 75]
    assert val.getSummary(agent_id, [outsider], "").call() == [0, 0]
    assert val.getAgentValidations(agent_id).call() == [request_hash, second]
    assert val.getValidatorRequests(validator).call()[-2:] == [request_hash, second]


# Legacy (v0.4-shaped)


def test_legacy_reputation_emits_v04_shapes(reg: Registries) -> None:
    owner, client = reg.accounts[1], reg.accounts[4]
    agent_id = reg.register(owner)
    legacy = reg.legacy_reputation.functions
    tag1 = b"starred".ljust(32, b"\x00")
    for expected_index in (1, 2):
        receipt = reg.send(
            legacy.giveFeedback(agent_id, 91, tag1, ZERO32, "ipfs://old", keccak(text="old"), b"\x01" * 97), client
        )
        assert reg.names(receipt) == ["NewFeedback@v0.4"]
        log = receipt["logs"][0]
        assert log["topics"][3] == tag1  # a bytes32 indexed tag is the value itself
        score, tag2, uri, digest = abi_decode(["uint8", "bytes32", "string", "bytes32"], bytes(log["data"]))
        assert (score, tag2, uri, digest) == (91, ZERO32, "ipfs://old", keccak(text="old"))  # no feedbackIndex
        assert legacy.getLastIndex(agent_id, client).call() == expected_index
    with _reverts("score>100"):
        legacy.giveFeedback(agent_id, 101, tag1, ZERO32, "", ZERO32, b"").call({"from": client})
    receipt = reg.send(legacy.revokeFeedback(agent_id, 2), client)
    assert "0x" + receipt["logs"][0]["topics"][0].hex() == TOPIC0["ReputationRegistry"]["FeedbackRevoked"]
    receipt = reg.send(legacy.appendResponse(agent_id, client, 2, "ipfs://r", ZERO32), owner)
    assert "0x" + receipt["logs"][0]["topics"][0].hex() == TOPIC0["ReputationRegistry"]["ResponseAppended"]
    assert legacy.getSummary(agent_id, [], ZERO32, ZERO32).call() == [1, 91]
    assert legacy.readFeedback(agent_id, client, 2).call() == [91, tag1, ZERO32, True]


def test_legacy_validation_emits_bytes32_tag(reg: Registries) -> None:
    owner, validator = reg.accounts[1], reg.accounts[6]
    agent_id = reg.register(owner)
    legacy = reg.legacy_validation.functions
    request_hash = keccak(text=f"legacy-{agent_id}")
    receipt = reg.send(legacy.validationRequest(validator, agent_id, "ipfs://req", request_hash), owner)
    assert "0x" + receipt["logs"][0]["topics"][0].hex() == TOPIC0["ValidationRegistry"]["ValidationRequest"]
    tag = b"zkml".ljust(32, b"\x00")
    receipt = reg.send(legacy.validationResponse(request_hash, 0, "https://resp", ZERO32, tag), validator)
    assert reg.names(receipt) == ["ValidationResponse@v0.4"]
    data = bytes(receipt["logs"][0]["data"])
    assert abi_decode(["uint8", "string", "bytes32", "bytes32"], data) == (0, "https://resp", ZERO32, tag)
    assert legacy.getValidationStatus(request_hash).call()[:5] == [validator, agent_id, 0, ZERO32, tag]
    assert legacy.getSummary(agent_id, [], ZERO32).call() == [1, 0]


def test_registries_point_at_the_shared_identity(reg: Registries) -> None:
    identity = reg.identity.address
    contracts: list[Contract] = [reg.reputation, reg.validation, reg.legacy_reputation, reg.legacy_validation]
    assert [c.functions.getIdentityRegistry().call() for c in contracts] == [identity] * 4
    versions: list[Callable[[], Any]] = [c.functions.getVersion for c in contracts]
    assert [v().call() for v in versions] == ["2.0.0", "2.0.0", "1.0.0", "1.0.0"]
